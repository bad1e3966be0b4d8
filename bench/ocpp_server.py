"""OCPP server benchmark: our central system beside one written with the `ocpp` package.

Measured in the same run, on the same machine, with the same load generator (its own process):
- messages/s and round-trip p50/p99 with 200 stations sending Heartbeat and MeterValues;
- memory per idle connection (RSS growth with 200 connected, booted, idle stations), plain and TLS;
- start-up time (process start until the OCPP port accepts connections).
Our server validates every frame against the schemas and commits every MeterValues to SQLite
(WAL, synchronous=FULL) before answering; the peer validates and stores nothing.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import free_port, wait_port  # noqa: E402

PY = sys.executable
STATIONS = int(os.environ.get("BENCH_STATIONS", 200))
SECONDS = float(os.environ.get("BENCH_SECONDS", 10))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Server:
    """One server process: ours or the peer."""

    def __init__(self, kind: str, tls: bool, workdir: Path):
        self.kind, self.tls = kind, tls
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if kind == "ampgate":
            conf = workdir / f"bench-{self.port}.conf"
            conf.write_text(f"[ocpp_server]\nport = {self.port}\nbind = 127.0.0.1\ntls = {'on' if tls else 'off'}\n"
                            "ping_interval = 0\n", encoding="utf-8")
            cmd = [PY, "-m", "appliance", "run", "--no-web", "--log-level", "warning", "--config", str(conf),
                   "--data", str(workdir / "var")]
        else:
            cmd = [PY, str(ROOT / "bench" / "peers" / "ocpp_pkg_central.py"), "--port", str(self.port)]
            if tls:
                cmd += ["--cert", str(workdir / "var" / "certs" / "server.pem")]
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        wait_port(self.port)
        self.startup_s = time.monotonic() - self.t0

    @property
    def base(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def load(base: str, **kw: float) -> dict:
    args = [PY, str(ROOT / "bench" / "peers" / "ocpp_load.py"), base, "--stations", str(STATIONS)]
    for k, v in kw.items():
        args += [f"--{k}", str(v)]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True, timeout=600).stdout)


def idle_memory(server: Server) -> float:
    """KB of server RSS per idle, booted connection."""
    time.sleep(0.5)
    before = rss_kb(server.proc.pid)
    holder = subprocess.Popen([PY, str(ROOT / "bench" / "peers" / "ocpp_load.py"), server.base,
                               "--stations", str(STATIONS), "--hold", "6"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    time.sleep(1.0)
    after = rss_kb(server.proc.pid)
    holder.wait(timeout=60)
    return (after - before) / STATIONS


def startup(kind: str, workdir: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        s = Server(kind, False, workdir)
        times.append(s.startup_s)
        s.stop()
    return statistics.median(times)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ampgate-bench-"))
    # first start makes the onboard certificate; the peer serves the same one for its TLS figure
    Server("ampgate", True, workdir).stop()
    rows = []
    for kind in ("ampgate", "ocpp-pkg"):
        row = {"server": kind, "startup_s": startup(kind, workdir)}
        s = Server(kind, False, workdir)
        row.update(load(s.base, seconds=SECONDS))
        row["idle_kb_plain"] = idle_memory(s)
        s.stop()
        s = Server(kind, True, workdir)
        row["idle_kb_tls"] = idle_memory(s)
        s.stop()
        rows.append(row)
    print(f"OCPP server benchmark: {STATIONS} stations, {SECONDS:g} s of Heartbeat + MeterValues "
          f"(load generator: asyncio + websockets, own process), {os.cpu_count()} cores")
    print(f"{'server':10} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'KB/idle ws':>11} {'KB/idle wss':>12} {'start s':>8}")
    for r in rows:
        print(f"{r['server']:10} {r['messages'] / r['seconds']:8.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['idle_kb_plain']:11.1f} {r['idle_kb_tls']:12.1f} {r['startup_s']:8.2f}")
    ours, peer = rows
    print(f"throughput ratio ampgate/ocpp-pkg: {(ours['messages'] / ours['seconds']) / (peer['messages'] / peer['seconds']):.2f}x")
    print("note: ampgate validates every frame and commits each MeterValues to SQLite (fsync) before answering; "
          "the peer stores nothing")


if __name__ == "__main__":
    main()
