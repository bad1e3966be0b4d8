"""OCPP server benchmark: our central system beside two peers, driven by the same load generator.

Peers, measured in the same run on the same machine:
- "echo": a central system on Ampgate's own websocket layer that answers every CALL with a fixed
  payload (bench/peers/echo_central.py) -- the ceiling of our stack; appliance/echo is the figure
  to watch (aims: >= 0.8 for Heartbeat, >= 0.6 for the Heartbeat + MeterValues mix);
- "ocpp-pkg": a central system written with the `ocpp` package (asyncio + websockets).

Figures: messages/s and round-trip p50/p99 with N stations sending back to back (median of the
rounds, servers alternating), the server's own CPU time per message, memory per idle connection on
a fresh server (RSS growth with N connected, booted, idle stations; plain and TLS), and start-up time.
Our server validates every frame against the schemas and commits every MeterValues to SQLite (WAL,
synchronous=FULL) before answering; the peers validate and store nothing.

    BENCH_STATIONS=200 BENCH_SECONDS=5 BENCH_ROUNDS=3 python bench/ocpp_server.py
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
from common import cpu_seconds, free_port, machine, rss_kb, wait_port  # noqa: E402

PY = sys.executable
STATIONS = int(os.environ.get("BENCH_STATIONS", 200))
SECONDS = float(os.environ.get("BENCH_SECONDS", 5))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
LOADS = ("heartbeat", "mix")


class Server:
    """One server process: ours or a peer."""

    def __init__(self, kind: str, tls: bool, workdir: Path):
        self.kind, self.tls = kind, tls
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cert = workdir / "var" / "certs" / "server.pem"
        if kind == "ampgate":
            conf = workdir / f"bench-{self.port}.conf"
            conf.write_text(f"[ocpp_server]\nport = {self.port}\nbind = 127.0.0.1\ntls = {'on' if tls else 'off'}\n"
                            "ping_interval = 0\n", encoding="utf-8")
            cmd = [PY, "-m", "appliance", "run", "--no-web", "--log-level", "warning", "--config", str(conf),
                   "--data", str(workdir / "var")]
        else:
            script = {"echo": "echo_central.py", "ocpp-pkg": "ocpp_pkg_central.py"}[kind]
            cmd = [PY, str(ROOT / "bench" / "peers" / script), "--port", str(self.port)]
            if tls:
                cmd += ["--cert", str(cert)]
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


def load(server: Server, kind: str) -> dict:
    """One load run; adds the server's CPU seconds per message."""
    args = [PY, str(ROOT / "bench" / "peers" / "ocpp_load.py"), server.base, "--stations", str(STATIONS),
            "--seconds", str(SECONDS), "--kind", "heartbeat" if kind == "heartbeat" else "both"]
    gen = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert gen.stdout.readline().strip() == "go"     # every station booted: measure from here
    cpu0 = cpu_seconds(server.proc.pid)
    out, _ = gen.communicate(timeout=600)
    result = json.loads(out)
    result["cpu_us"] = (cpu_seconds(server.proc.pid) - cpu0) / max(1, result["messages"]) * 1e6
    return result


def idle_memory(server: Server) -> float:
    """KB of server RSS per idle, booted connection, on a server that has served nothing before."""
    time.sleep(0.5)
    before = rss_kb(server.proc.pid)
    holder = subprocess.Popen([PY, str(ROOT / "bench" / "peers" / "ocpp_load.py"), server.base,
                               "--stations", str(STATIONS), "--hold", "4"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    time.sleep(1.0)
    after = rss_kb(server.proc.pid)
    holder.wait(timeout=60)
    return (after - before) / STATIONS


def startup(kind: str, workdir: Path, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        s = Server(kind, False, workdir)
        times.append(s.startup_s)
        s.stop()
    return statistics.median(times)


def throughput(kinds: tuple[str, ...], workdir: Path) -> dict[tuple[str, str], dict]:
    """Median over ROUNDS of each (server, load), servers alternating so a busy moment of the
    shared machine does not land on one of them only."""
    runs: dict[tuple[str, str], list[dict]] = {}
    servers = {k: Server(k, False, workdir) for k in kinds}
    try:
        for _ in range(ROUNDS):
            for load_kind in LOADS:
                for k in kinds:
                    runs.setdefault((k, load_kind), []).append(load(servers[k], load_kind))
    finally:
        for s in servers.values():
            s.stop()
    out = {}
    for key, rs in runs.items():
        rate = [r["messages"] / r["seconds"] for r in rs]
        out[key] = {"rate": statistics.median(rate), "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                    "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                    "cpu_us": statistics.median(r["cpu_us"] for r in rs)}
    return out


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ampgate-bench-"))
    Server("ampgate", True, workdir).stop()   # makes the onboard certificate the peers serve too
    kinds = ("ampgate", "echo", "ocpp-pkg")
    figures = throughput(kinds, workdir)
    memory = {}
    for k in kinds:
        for tls in (False, True):
            s = Server(k, tls, workdir)
            memory[k, tls] = idle_memory(s)
            s.stop()
    starts = {k: startup(k, workdir) for k in kinds}

    print(f"OCPP server benchmark, {time.strftime('%Y-%m-%d')}, {machine()}: {STATIONS} stations back to back, "
          f"{SECONDS:g} s per run, median of {ROUNDS} rounds (load generator: asyncio + websockets, own process)")
    print(f"{'server':9} {'load':10} {'msg/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/msg':>11}")
    for load_kind in LOADS:
        for k in kinds:
            f = figures[k, load_kind]
            print(f"{k:9} {load_kind:10} {f['rate']:7.0f} {f['p50_ms']:7.1f} {f['p99_ms']:7.1f} {f['cpu_us']:11.0f}")
    for load_kind in LOADS:
        ours, echo, pkg = (figures[k, load_kind] for k in kinds)
        print(f"{load_kind:10} ampgate/echo: {ours['rate'] / echo['rate']:.2f} (throughput), "
              f"{echo['cpu_us'] / ours['cpu_us']:.2f} (CPU per message); "
              f"ampgate/ocpp-pkg: {ours['rate'] / pkg['rate']:.1f}x")
    print(f"{'server':9} {'KB/idle ws':>11} {'KB/idle wss':>12} {'start s':>8}   (fresh server, idle connections only)")
    for k in kinds:
        print(f"{k:9} {memory[k, False]:11.1f} {memory[k, True]:12.1f} {starts[k]:8.2f}")
    print("note: ampgate validates every frame and commits each MeterValues to SQLite (fsync) before answering; "
          "the peers store nothing")


if __name__ == "__main__":
    main()
