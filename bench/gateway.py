"""Gateway benchmark: wallboxes behind the appliance (relaying to a backend) beside the same wallboxes
talking to that backend directly, in the same run, with the same load generator (own process).

- added latency: one wallbox sending Heartbeat and MeterValues back to back; round trip p50/p99 through
  the gateway minus direct (the appliance answers itself, after committing MeterValues to SQLite, and
  mirrors each MeterValues to the backend);
- throughput: 200 wallboxes sending back to back, messages/s through the gateway against direct.
The backend is the `ocpp`-package central system of bench/ocpp_server.py (stores nothing).
"""
from __future__ import annotations

import json
import os
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
SECONDS = float(os.environ.get("BENCH_SECONDS", 8))


def start(cmd: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=15)


def load(base: str, stations: int, kind: str = "both") -> dict:
    out = subprocess.run([PY, str(ROOT / "bench" / "peers" / "ocpp_load.py"), base, "--stations", str(stations),
                          "--seconds", str(SECONDS), "--kind", kind], capture_output=True, text=True, check=True,
                         timeout=600)
    return json.loads(out.stdout.splitlines()[-1])   # after the "go" line


def measure(base: str) -> dict:
    return {"heartbeat": load(base, 1, "heartbeat"), "meter": load(base, 1, "meter"), "many": load(base, STATIONS)}


def appliance(workdir: Path, backend_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = workdir / f"gw-{port}.conf"
    devices = "".join(f"[[b{n}]]\ntype = ocpp16\naddress = BENCH{n}\ngateway_url = ws://127.0.0.1:{backend_port}/\n"
                      f"gateway_id = GW{n}\n" for n in range(STATIONS))
    conf.write_text(f"[ocpp_server]\nport = {port}\nbind = 127.0.0.1\nping_interval = 0\n"
                    f"[load_management]\nmode = monitor\n[devices]\n{devices}", encoding="utf-8")
    proc = start([PY, "-m", "appliance", "run", "--no-web", "--log-level", "warning", "--config", str(conf),
                  "--data", str(workdir / f"var-{port}")], port)
    time.sleep(3)   # the backend links connect (they wait for each wallbox's boot, which the load sends)
    return proc, port


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ampgate-bench-gw-"))
    backend_port = free_port()
    backend = start([PY, str(ROOT / "bench" / "peers" / "ocpp_pkg_central.py"), "--port", str(backend_port)],
                    backend_port)
    try:
        direct = f"ws://127.0.0.1:{backend_port}"
        rows = {"direct": measure(direct)}
        gw, port = appliance(workdir, backend_port)
        try:
            via = f"ws://127.0.0.1:{port}"
            rows["gateway"] = measure(via)
        finally:
            stop(gw)
    finally:
        stop(backend)
    print(f"Gateway benchmark: backend = ocpp-package central system; {SECONDS:g} s of Heartbeat + MeterValues "
          f"back to back per run; {os.cpu_count()} cores")
    print(f"{'path':8} {'Heartbeat p50/p99 ms':>21} {'MeterValues p50/p99 ms':>23} {f'{STATIONS} boxes msg/s':>17}")
    for name, r in rows.items():
        print(f"{name:8} {r['heartbeat']['p50_ms']:10.2f} /{r['heartbeat']['p99_ms']:8.2f}"
              f" {r['meter']['p50_ms']:11.2f} /{r['meter']['p99_ms']:9.2f}"
              f" {r['many']['messages'] / r['many']['seconds']:17.0f}")
    g, d = rows["gateway"], rows["direct"]
    for kind in ("heartbeat", "meter"):
        print(f"added latency through the gateway, {kind}: p50 {g[kind]['p50_ms'] - d[kind]['p50_ms']:+.2f} ms, "
              f"p99 {g[kind]['p99_ms'] - d[kind]['p99_ms']:+.2f} ms")
    ratio = (g["many"]["messages"] / g["many"]["seconds"]) / (d["many"]["messages"] / d["many"]["seconds"])
    print(f"throughput through the gateway / direct: {ratio * 100:.0f} %")
    print("note: through the gateway every MeterValues is committed to SQLite (fsync) before the answer and "
          "mirrored to the backend; direct, the backend stores nothing")


if __name__ == "__main__":
    main()
