"""Connection abuse, wrong web passwords: 60 clients guessing in parallel against a real `ampgate run`,
while a station's Heartbeat round trip and the load-management cycle are measured, beside their idle
values from the same run.

Two attacks: 60 parallel guessers from one address, and one guesser from each of 60 addresses (each
gets its few free tries before it has to wait, so the key derivation really runs: the case that used
to stretch the control cycle from 3.0 s to 6.2 s).

`guess(...)` is the attack alone, for bench/abuse.py and other scenarios to call.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import base64  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from appliance.passwords import make_hash  # noqa: E402
from appliance.sim.ocpp_wallbox import SimWallbox  # noqa: E402
from common import free_port, wait_port  # noqa: E402

PASSWORD = "the-rightful-owner"
PARALLEL = int(os.environ.get("BENCH_GUESSERS", 60))
PHASE_S = float(os.environ.get("BENCH_PHASE_S", 20))


def _get(port: int, path: str, password: str, source: str = "127.0.0.1", timeout: float = 60) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        auth = base64.b64encode(f"admin:{password}".encode()).decode()
        conn.request("GET", path, headers={"Authorization": f"Basic {auth}"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def guess(port: int, seconds: float, parallel: int = PARALLEL, addresses: int = 1) -> Counter:
    """`parallel` clients sending wrong Basic-auth passwords to /api/status for `seconds`, spread over
    `addresses` loopback source addresses (127.0.0.2 ...). Returns the answers' status counts."""
    answers: Counter = Counter()
    stop = time.monotonic() + seconds

    def one(i: int) -> None:
        source = f"127.0.0.{2 + i % addresses}"
        n = 0
        while time.monotonic() < stop:
            n += 1
            try:
                status, _ = _get(port, "/api/status", f"guess-{i}-{n}", source)
            except OSError:
                status = 0
            answers[status] += 1
            if status == 429:
                gevent.sleep(0.05)   # a real guesser would not wait for Retry-After either
    gevent.joinall([gevent.spawn(one, i) for i in range(parallel)])
    return answers


class Probe:
    """What stays responsive: a station's Heartbeat round trip and the control cycle's interval."""

    def __init__(self, ocpp_port: int, web_port: int):
        self.box = SimWallbox(f"ws://127.0.0.1:{ocpp_port}/PROBE", meter_interval=3600)
        self.box.connect()
        self.web_port = web_port

    def measure(self, seconds: float) -> tuple[list[float], list[float]]:
        beats: list[float] = []
        cycles: list[float] = []
        stop = time.monotonic() + seconds

        def heartbeat() -> None:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                self.box.client.call("Heartbeat", {})
                beats.append(time.perf_counter() - t0)
                gevent.sleep(0.2)

        def cycle() -> None:
            last = None
            while time.monotonic() < stop:
                status, body = _get(self.web_port, "/api/status", PASSWORD)   # remembered: no hashing
                lm = json.loads(body).get("load_management", {}) if status == 200 else {}
                if lm.get("cycle_s") and lm.get("cycle_ms") != last:
                    cycles.append(lm["cycle_s"])
                    last = lm.get("cycle_ms")
                gevent.sleep(0.5)
        gevent.joinall([gevent.spawn(heartbeat), gevent.spawn(cycle)])
        return beats, cycles


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def report(name: str, beats: list[float], cycles: list[float], answers: Counter | None = None) -> None:
    extra = f"; answers {dict(sorted(answers.items()))}" if answers is not None else ""
    print(f"  {name:<34} Heartbeat p50 {pct(beats, .5) * 1000:7.1f} ms  p99 {pct(beats, .99) * 1000:7.1f} ms  "
          f"max {max(beats or [0]) * 1000:7.1f} ms | cycle mean {sum(cycles) / max(1, len(cycles)):.2f} s "
          f"max {max(cycles or [0]):.2f} s{extra}")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ampgate-pwbench-"))
    web_port, ocpp_port = free_port(), free_port()
    conf = work / "ampgate.conf"
    conf.write_text(f"[web]\nport = {web_port}\nbind = 127.0.0.1\npassword_hash = {make_hash(PASSWORD)}\n"
                    f"[ocpp_server]\nport = {ocpp_port}\nbind = 127.0.0.1\nping_interval = 0\n"
                    "[devices]\n[[probe]]\ntype = ocpp16\naddress = PROBE\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--log-level", "warning", "--config", str(conf),
                             "--data", str(work / "var")], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(web_port)
        wait_port(ocpp_port)
        probe = Probe(ocpp_port, web_port)
        time.sleep(1)
        print(f"Wrong web passwords: {PARALLEL} parallel guessers, {PHASE_S:g} s per phase, PBKDF2 "
              f"{make_hash('x').split('$')[0]} (appliance in its own process, control cycle 3 s)")
        report("idle", *probe.measure(PHASE_S))
        for label, addresses in ((f"{PARALLEL} guessers, one address", 1),
                                 (f"{PARALLEL} guessers, {PARALLEL} addresses", PARALLEL)):
            attack = gevent.spawn(guess, web_port, PHASE_S, PARALLEL, addresses)
            beats, cycles = probe.measure(PHASE_S)
            report(label, beats, cycles, attack.get())
        probe.box.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
