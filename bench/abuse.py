"""Connection abuse as a benchmark: one LAN host misbehaves, everyone else must not notice.

The real appliance runs (web page with a password, the OCPP port, load management every second,
one configured wallbox "GOOD"). Before and during each abuse, for ABUSE_S seconds:
- a well-behaved station sends a Heartbeat every 100 ms (round trip p50 / max),
- the page is fetched (GET /api/status with the right password, p50 / max),
- the control cycle's measured period (cycle_s from /api/status, max; configured: 1 s).
Abuses, each from 127.0.0.1 while the good station and the page use other loopback addresses:
  1000 connects   a thousand TCP connections to the OCPP port at once, held open, never speaking
  storm 300       300 stations (bench/peers/station_holder.py) drop their connections and reconnect
  slowloris       200 connections to each port trickling request headers, a byte a second
  never reads     a station sends 20,000 Heartbeats and never reads an answer
  60 passwords    60 clients at once asking the API with wrong passwords, again and again

    ABUSE_S=5 python bench/abuse.py
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import websocket

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from common import free_port, machine, wait_port  # noqa: E402

from appliance.passwords import make_hash  # noqa: E402

PY = sys.executable
ABUSE_S = float(os.environ.get("ABUSE_S", 5))
PASSWORD = "bench-password-1"
GOOD_SOURCE = "127.0.1.1"      # the good station and the page: not the abusing address
STOP = threading.Event()


class Appliance:
    def __init__(self, workdir: Path):
        self.web, self.ocpp = free_port(), free_port()
        conf = workdir / "ampgate.conf"
        conf.write_text(f"[web]\nport = {self.web}\nbind = 127.0.0.1\npassword_hash = {make_hash(PASSWORD)}\n"
                        f"[ocpp_server]\nport = {self.ocpp}\nbind = 127.0.0.1\nhandshake_timeout = 10\n"
                        "[load_management]\ncycle_s = 1\n[devices]\n[[good]]\ntype = ocpp16\naddress = GOOD\n",
                        encoding="utf-8")
        self.proc = subprocess.Popen([PY, "-m", "appliance", "run", "--config", str(conf), "--data",
                                      str(workdir / "var"), "--log-level", "warning"], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=(workdir / "appliance.log").open("wb"))
        wait_port(self.ocpp)
        wait_port(self.web)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def source_socket(source: str, port: int, timeout: float = 10) -> socket.socket:
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


class Watch(threading.Thread):
    """Repeats `probe` (returns a measured value, or raises) until stopped; keeps (time, value)."""

    def __init__(self, probe: Callable[[], float], every: float):
        super().__init__(daemon=True)
        self.probe, self.every, self.values, self.running = probe, every, [], True

    def run(self) -> None:
        while self.running:
            try:
                self.values.append((time.monotonic(), self.probe()))
            except Exception:
                self.values.append((time.monotonic(), float("inf")))   # no answer counts as the worst
            time.sleep(self.every)

    def window(self, t0: float, t1: float) -> list[float]:
        return sorted(v for t, v in self.values if t0 <= t <= t1)


def good_station(app: Appliance) -> Callable[[], float]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{app.ocpp}/GOOD", subprotocols=["ocpp1.6"], timeout=30,
                                     socket=source_socket(GOOD_SOURCE, app.ocpp))
    ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "bench", "chargePointModel": "good"}]))
    ws.recv()
    n = [0]

    def heartbeat() -> float:
        n[0] += 1
        t0 = time.perf_counter()
        ws.send(json.dumps([2, f"h{n[0]}", "Heartbeat", {}]))
        while True:
            msg = json.loads(ws.recv())
            if msg[0] == 2:    # the appliance configures its wallbox: answer as a station would
                ws.send(json.dumps([3, msg[1], {"status": "Accepted"} if msg[2] != "GetConfiguration" else {}]))
            elif msg[1] == f"h{n[0]}":
                return (time.perf_counter() - t0) * 1000
    return heartbeat


def api_status(app: Appliance, cycles: list) -> Callable[[], float]:
    auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

    def fetch() -> float:
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", app.web, timeout=30, source_address=(GOOD_SOURCE, 0))
        try:
            conn.request("GET", "/api/status", headers={"Authorization": auth})
            answer = conn.getresponse()
            if answer.status != 200:
                raise OSError(f"status {answer.status}")
            st = json.loads(answer.read())
        finally:
            conn.close()
        cycles.append((time.monotonic(), (st.get("load_management") or {}).get("cycle_s") or 0.0))
        return (time.perf_counter() - t0) * 1000
    return fetch


# -- the abuses: each runs until STOP is set, then lets go of what it holds ------------------------------
def thousand_connects(app: Appliance) -> None:
    held = []
    for _ in range(1000):
        try:
            held.append(source_socket("127.0.0.1", app.ocpp, timeout=2))
        except OSError:
            pass
    STOP.wait()
    for s in held:
        s.close()


def storm(app: Appliance) -> None:
    holder = subprocess.Popen([PY, str(ROOT / "bench" / "peers" / "station_holder.py"), f"ws://127.0.0.1:{app.ocpp}",
                               "--stations", "300"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    holder.stdin.write("storm 300\n")
    holder.stdin.flush()
    storm.seconds = float(holder.stdout.readline().split()[1])   # type: ignore[attr-defined]
    STOP.wait()
    holder.stdin.write("quit\n")
    holder.stdin.flush()
    holder.wait(timeout=60)


def slowloris(app: Appliance) -> None:
    request = b"GET /x HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: y\r\n" * 1000
    socks = []
    for port in (app.ocpp, app.web):
        for _ in range(200):
            try:
                socks.append(source_socket("127.0.0.1", port, timeout=2))
            except OSError:
                pass
    i = 0
    while not STOP.wait(1.0):
        for s in list(socks):
            try:
                s.send(request[i:i + 1])
            except OSError:
                socks.remove(s)
        i += 1
    for s in socks:
        s.close()


def never_reads(app: Appliance) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{app.ocpp}/DEAF", subprotocols=["ocpp1.6"], timeout=5,
                                     socket=source_socket("127.0.0.1", app.ocpp))
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for n in range(20000):
        if STOP.is_set():
            break
        try:
            ws.send(json.dumps([2, f"d{n}", "Heartbeat", {}]))
        except (OSError, websocket.WebSocketException):
            break
    STOP.wait()
    ws.sock.close()


def wrong_passwords(app: Appliance) -> None:
    def guess(k: int) -> None:
        auth = "Basic " + base64.b64encode(f"admin:wrong-{k}".encode()).decode()
        while not STOP.is_set():
            req = urllib.request.Request(f"http://127.0.0.1:{app.web}/api/status", headers={"Authorization": auth})
            try:
                urllib.request.urlopen(req, timeout=30).read()
            except (urllib.error.URLError, OSError):
                pass
    threads = [threading.Thread(target=guess, args=(k,), daemon=True) for k in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)


ABUSES = [("(none)", None), ("1000 connects", thousand_connects), ("storm 300", storm), ("slowloris", slowloris),
          ("never reads", never_reads), ("60 passwords", wrong_passwords)]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ampgate-abuse-"))
    app = Appliance(workdir)
    cycles: list[tuple[float, float]] = []
    station = Watch(good_station(app), 0.1)
    page = Watch(api_status(app, cycles), 0.25)
    station.start()
    page.start()
    time.sleep(3.0)    # the good wallbox is configured, the control cycle runs
    rows = []
    try:
        for name, abuse in ABUSES:
            STOP.clear()
            worker = threading.Thread(target=abuse, args=(app,), daemon=True) if abuse else None
            if worker:
                worker.start()
            t0 = time.monotonic()
            time.sleep(ABUSE_S)
            t1 = time.monotonic()
            STOP.set()
            if worker:
                worker.join(timeout=120)
            s, p = station.window(t0, t1), page.window(t0, t1)
            c = [v for t, v in cycles if t0 <= t <= t1]
            rows.append((name, statistics.median(s), s[-1], statistics.median(p), p[-1], max(c, default=0.0)))
            time.sleep(2.0)   # let what the abuse left behind drain before the next one
    finally:
        station.running = page.running = False
        app.stop()
    print(f"Connection abuse benchmark, {time.strftime('%Y-%m-%d')}, {machine()}: {ABUSE_S:g} s per abuse, "
          "the good station and the page on another loopback address than the abuser")
    print(f"{'abuse':14} {'station p50 ms':>14} {'max ms':>8} {'page p50 ms':>11} {'max ms':>8} {'cycle s max':>11}")
    for name, sp50, smax, pp50, pmax, cmax in rows:
        print(f"{name:14} {sp50:14.1f} {smax:8.1f} {pp50:11.1f} {pmax:8.1f} {cmax:11.2f}")
    if hasattr(storm, "seconds"):
        print(f"storm: 300 stations booted again after {storm.seconds:.2f} s")   # type: ignore[attr-defined]
    print("control cycle configured at 1 s; 'inf' = no answer within 30 s")


if __name__ == "__main__":
    main()
