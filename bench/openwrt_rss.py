"""Memory of the appliance at a router-sized site: resident set (RSS) of `ampgate run` with 20 configured
OCPP wallboxes, all 20 connected (simulated, each its own process) and charging under load management,
the web page and API being read. Beside it, in the same run: the same process idle before the stations
come, and the `ocpp` package's central system (bench/peers) holding 20 booted stations.

x86-64 stands in for a 64-bit router (aarch64: similar pointer sizes; 32-bit MIPS/ARM use less).
--python/--lib run the appliance on another interpreter and package tree, e.g. an OpenWrt feed's
versions (~/.cache/ampgate/openwrt-venvs/openwrt-24.10-*/bin/python, made by tests/test_openwrt_feeds.py)
with the .ipk's /usr/lib/ampgate unpacked.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import free_port, wait_port  # noqa: E402
from ocpp_server import rss_kb  # noqa: E402

DEVICES = 20


def site_config(web: int, ocpp: int) -> str:
    boxes = "".join(f"[[wallbox{i}]]\ntype = ocpp16\naddress = CP{i}\nmax_current = 16\n" for i in range(DEVICES))
    return (f"[web]\nport = {web}\nbind = 127.0.0.1\n[ocpp_server]\nport = {ocpp}\nbind = 127.0.0.1\n"
            f"[load_management]\nmax_current_per_phase = 400\n[devices]\n{boxes}")


def status(web: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/status", timeout=5) as resp:
            return json.loads(resp.read())
    except OSError:
        return {}


def read_pages(web: int) -> None:
    for path in ("/", "/api/status", "/api/transactions", "/static/style.css"):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{web}{path}", timeout=5).read()
        except OSError:
            pass


def charging(web: int) -> int:
    return sum(d.get("state") == "charging" for d in status(web).get("devices", []))


def sample(pid: int, seconds: float, web: int | None = None) -> tuple[int, int]:
    """(peak, last) RSS in KB over `seconds`, reading the pages each second if web is given."""
    peak = last = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if web:
            read_pages(web)
        last = rss_kb(pid)
        peak = max(peak, last)
        time.sleep(1)
    return peak, last


def ours(python: str, lib: str, seconds: float, workdir: Path) -> dict:
    web, ocpp = free_port(), free_port()
    conf = workdir / "site.conf"
    conf.write_text(site_config(web, ocpp), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=lib)
    app = subprocess.Popen([python, "-m", "appliance", "run", "--log-level", "warning", "--config", str(conf),
                            "--data", str(workdir / "var")], env=env, stdout=subprocess.DEVNULL)
    sims: list[subprocess.Popen] = []
    try:
        wait_port(web, 60)
        read_pages(web)
        idle = sample(app.pid, 3)[1]
        sim_env = dict(os.environ, PYTHONPATH=str(ROOT))
        for i in range(DEVICES):
            sims.append(subprocess.Popen([sys.executable, "-m", "appliance", "sim", "ocpp",
                                          f"ws://127.0.0.1:{ocpp}/CP{i}", "--auto", "1", "--meter-interval", "10",
                                          "--log-level", "warning"], env=sim_env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 180
        while charging(web) < DEVICES and time.monotonic() < deadline:
            time.sleep(1)
        count = charging(web)
        peak, last = sample(app.pid, seconds, web)
        return {"idle": idle, "peak": peak, "last": last, "charging": count}
    finally:
        for p in [*sims, app]:
            p.terminate()
        for p in [*sims, app]:
            p.wait(timeout=20)


def peer(seconds: float) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "bench/peers/ocpp_pkg_central.py"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        idle = sample(server.pid, 2)[1]
        holder = subprocess.Popen([sys.executable, str(ROOT / "bench/peers/ocpp_load.py"), f"ws://127.0.0.1:{port}",
                                   "--stations", str(DEVICES), "--hold", str(seconds + 5)], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL,
                                  text=True)
        assert holder.stdout.readline().strip() == "held"
        peak, last = sample(server.pid, seconds)
        holder.wait(timeout=seconds + 60)
        return {"idle": idle, "peak": peak, "last": last, "charging": 0}
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter for the appliance (default: this one)")
    ap.add_argument("--lib", default=str(ROOT), help="where `appliance` and bundled packages are (default: checkout)")
    ap.add_argument("--seconds", type=float, default=20, help="sampling time with all stations (default: 20)")
    args = ap.parse_args()
    version = subprocess.run([args.python, "-c", "import sys, gevent, flask, cryptography; "
                              "print(sys.version.split()[0], 'gevent', gevent.__version__, 'cryptography', "
                              "cryptography.__version__)"], env=dict(os.environ, PYTHONPATH=args.lib),
                             capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="ampgate-rss-") as tmp:
        rows = [("ampgate", ours(args.python, args.lib, args.seconds, Path(tmp))), ("ocpp-pkg", peer(args.seconds))]
    print(f"RSS, {DEVICES} devices and {DEVICES} connected stations, {args.seconds:g} s sampled; "
          f"appliance on Python {version}")
    print(f"{'server':10} {'idle MB':>8} {'peak MB':>8} {'end MB':>8} {'charging':>9}")
    for name, r in rows:
        print(f"{name:10} {r['idle'] / 1024:8.1f} {r['peak'] / 1024:8.1f} {r['last'] / 1024:8.1f} {r['charging']:9}")
    print("note: ampgate runs the web page, load management and SQLite beside OCPP; the peer only accepts "
          "and answers OCPP frames")


if __name__ == "__main__":
    main()
