"""Scale benchmark: 10,000 idle stations, and a reconnect storm, against the echo on our own stack.

For each server (the appliance, and bench/peers/echo_central.py: Ampgate's websocket layer with
fixed answers) and each transport (ws, wss), on a fresh server:
- N stations connect and boot (bench/peers/station_holder.py, its own process), then stay idle;
- memory per idle connection (RSS growth / N), idle CPU over IDLE_S and the highest 1-second CPU
  (pings: the appliance pings every station once a minute, each at its own phase; the echo never);
- a probe station (this process) sends a Heartbeat every 50 ms for PROBE_S: p50/p99/max round trip;
- a storm: STORM stations drop their connection at once and reconnect; the time until all are
  booted again, and the probe's worst round trip during it;
- for the appliance, its garbage-collection pauses over the whole run (from its stop log line).

    SCALE_STATIONS=10000 SCALE_PROBE_S=60 SCALE_STORM=1000 python bench/scale.py
"""
from __future__ import annotations

import json
import os
import re
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import websocket

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import cpu_seconds, free_port, machine, rss_kb, wait_port  # noqa: E402

PY = sys.executable
STATIONS = int(os.environ.get("SCALE_STATIONS", 10000))
PROBE_S = float(os.environ.get("SCALE_PROBE_S", 60))
IDLE_S = float(os.environ.get("SCALE_IDLE_S", 20))
STORM = int(os.environ.get("SCALE_STORM", 1000))


class Server:
    def __init__(self, kind: str, tls: bool, workdir: Path):
        self.kind, self.tls, self.port = kind, tls, free_port()
        self.log = workdir / f"{kind}-{self.port}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if kind == "ampgate":
            conf = workdir / f"scale-{self.port}.conf"
            conf.write_text(f"[ocpp_server]\nport = {self.port}\nbind = 127.0.0.1\ntls = {'on' if tls else 'off'}\n",
                            encoding="utf-8")
            cmd = [PY, "-m", "appliance", "run", "--no-web", "--log-level", "info", "--config", str(conf),
                   "--data", str(workdir / "var")]
        else:
            cmd = [PY, str(ROOT / "bench" / "peers" / "echo_central.py"), "--port", str(self.port), "--backlog", "4096"]
            if tls:
                cmd += ["--cert", str(workdir / "var" / "certs" / "server.pem")]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        wait_port(self.port)

    @property
    def base(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """Stops it; the appliance's garbage-collection summary, if it logged one."""
        self.proc.terminate()
        self.proc.wait(timeout=60)
        m = re.search(r"garbage collection: (.*)", self.log.read_text(errors="replace"))
        return m.group(1) if m else ""


class Probe(threading.Thread):
    """One well-behaved station: a Heartbeat every 50 ms, round trips recorded with their time."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        opts = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False} if base.startswith("wss") else None
        self.ws = websocket.create_connection(f"{base}/PROBE", subprotocols=["ocpp1.6"], timeout=30, sslopt=opts)
        self.ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "bench", "chargePointModel": "probe"}]))
        self.ws.recv()
        self.rtts: list[tuple[float, float]] = []
        self.running = True

    def run(self) -> None:
        n = 0
        while self.running:
            n += 1
            t0 = time.perf_counter()
            self.ws.send(json.dumps([2, f"h{n}", "Heartbeat", {}]))
            while not self.ws.recv().startswith(f'[3,"h{n}"'):
                pass
            self.rtts.append((time.monotonic(), (time.perf_counter() - t0) * 1000))
            time.sleep(0.05)

    def window(self, since: float, until: float = float("inf")) -> list[float]:
        return sorted(ms for t, ms in self.rtts if since <= t <= until)

    def stop(self) -> None:
        self.running = False
        self.join(timeout=30)
        self.ws.close()


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def idle_cpu(pid: int) -> tuple[float, float]:
    """(average %, highest 1-second %) of one core over IDLE_S."""
    samples = []
    for _ in range(int(IDLE_S)):
        c0 = cpu_seconds(pid)
        time.sleep(1.0)
        samples.append((cpu_seconds(pid) - c0) * 100)
    return statistics.mean(samples), max(samples)


def run(kind: str, tls: bool, workdir: Path) -> dict:
    server = Server(kind, tls, workdir)
    time.sleep(1.0)
    before = rss_kb(server.proc.pid)
    holder = subprocess.Popen([PY, str(ROOT / "bench" / "peers" / "station_holder.py"), server.base,
                               "--stations", str(STATIONS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    held = holder.stdout.readline().split()
    assert held[0] == "held", held
    time.sleep(3.0)
    row = {"connect_s": float(held[2]), "kb": (rss_kb(server.proc.pid) - before) / STATIONS}
    row["cpu_avg"], row["cpu_peak"] = idle_cpu(server.proc.pid)
    probe = Probe(server.base)
    probe.start()
    t0 = time.monotonic()
    time.sleep(PROBE_S)
    idle = probe.window(t0)
    row.update(p50=pct(idle, 0.5), p99=pct(idle, 0.99), max=idle[-1], samples=len(idle))
    t1 = time.monotonic()
    holder.stdin.write(f"storm {STORM}\n")
    holder.stdin.flush()
    row["storm_s"] = float(holder.stdout.readline().split()[1])
    time.sleep(0.5)
    storm = probe.window(t1)
    row["storm_max"] = storm[-1] if storm else float("nan")
    probe.stop()
    holder.stdin.write("quit\n")
    holder.stdin.flush()
    holder.wait(timeout=120)
    row["gc"] = server.stop()
    return row


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # the servers and the holder raise theirs
    if hard < STATIONS + 200:
        sys.exit(f"scale: the open-files hard limit is {hard}; {STATIONS} stations need more (ulimit -Hn)")
    workdir = Path(tempfile.mkdtemp(prefix="ampgate-scale-"))
    Server("ampgate", True, workdir).stop()   # makes the onboard certificate the echo serves too
    rows = {}
    for tls in (False, True):
        for kind in ("ampgate", "echo"):
            rows[kind, tls] = run(kind, tls, workdir)
    print(f"Scale benchmark, {time.strftime('%Y-%m-%d')}, {machine()}: {STATIONS} idle stations, probe Heartbeat "
          f"every 50 ms for {PROBE_S:g} s, storm of {STORM} reconnecting stations (holder: asyncio + websockets, "
          f"own process)")
    print(f"{'server':8} {'tls':4} {'connect s':>9} {'KB/conn':>8} {'idle CPU %':>10} {'peak 1s %':>9} "
          f"{'probe p50':>9} {'p99':>6} {'max ms':>7} {'storm s':>8} {'storm max ms':>12}")
    for (kind, tls), r in rows.items():
        print(f"{kind:8} {'wss' if tls else 'ws':4} {r['connect_s']:9.1f} {r['kb']:8.1f} {r['cpu_avg']:10.1f} "
              f"{r['cpu_peak']:9.1f} {r['p50']:9.1f} {r['p99']:6.1f} {r['max']:7.1f} {r['storm_s']:8.2f} "
              f"{r['storm_max']:12.1f}")
    for tls in (False, True):
        ours, echo = rows["ampgate", tls], rows["echo", tls]
        print(f"{'wss' if tls else 'ws'}: memory per connection ampgate/echo {ours['kb'] / echo['kb']:.2f}; "
              f"ampgate garbage collection: {ours['gc']}")
    print("note: the appliance pings every station once a minute (the echo never) and logs each connection")


if __name__ == "__main__":
    main()
