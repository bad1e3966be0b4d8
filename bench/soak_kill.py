"""Kill -9 soak: SOAK_KILLS (30) SIGKILLs of the appliance at random moments while stations run
transactions with MeterValues, each restart on the same data. The stations behave as 1.6 asks: a
transaction message that got no answer is sent again after the reconnect. Afterwards the database
must hold every answered StartTransaction exactly once, the meter stop of every answered Stop, ids
increasing per station, and no meter sample twice. `make soak`; tests/test_soak.py runs a short one.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import websocket  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from appliance_proc import ApplianceProcess  # noqa: E402

KILLS = int(os.environ.get("SOAK_KILLS", 30))
STATIONS = 3


@dataclass
class Station:
    """A station that retries every transaction message until it is answered, and remembers what
    was answered: that is what the database must hold afterwards."""
    name: str
    url: str
    rng: random.Random
    ws: websocket.WebSocket | None = None
    meter: int = 0
    sent: int = 0
    starts: list[tuple[int, str, int]] = field(default_factory=list)   # (id, idTag, meterStart) answered
    stops: dict[int, int] = field(default_factory=dict)                # id -> meterStop answered
    samples: list[tuple[int, str, str]] = field(default_factory=list)  # (id, timestamp, value) answered
    reconnects: int = 0

    def request(self, action: str, payload: dict) -> dict:
        while True:
            try:
                if self.ws is None:
                    self.ws = websocket.create_connection(self.url, timeout=10, subprotocols=["ocpp1.6"])
                    self.reconnects += 1
                self.sent += 1
                msg_id = f"{self.name}-{self.sent}"
                self.ws.send(json.dumps([2, msg_id, action, payload]))
                while True:
                    frame = json.loads(self.ws.recv())
                    if frame[1] == msg_id:
                        if frame[0] != 3:
                            raise AssertionError(f"{self.name}: {action} answered {frame}")
                        return frame[2]
            except (OSError, websocket.WebSocketException, ValueError):
                self.ws = None           # killed: reconnect and send it again
                gevent.sleep(0.05)

    def session(self, n: int) -> None:
        tag = f"{self.name}-{n}"
        start = {"connectorId": 1, "idTag": tag, "meterStart": self.meter, "timestamp": _now()}
        tx = self.request("StartTransaction", start)["transactionId"]
        self.starts.append((tx, tag, start["meterStart"]))
        for _ in range(self.rng.randint(1, 6)):
            self.meter += self.rng.randint(1, 50)
            ts = _now()
            self.request("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
                {"timestamp": ts, "sampledValue": [{"value": str(self.meter)}]}]})
            self.samples.append((tx, ts, str(self.meter)))
        self.meter += 1
        self.request("StopTransaction", {"transactionId": tx, "meterStop": self.meter, "timestamp": _now()})
        self.stops[tx] = self.meter


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1000000:06d}Z"


def check(db_path: Path, stations: list[Station]) -> list[str]:
    """What the database holds against what the stations were answered; [] when all is well."""
    db = sqlite3.connect(db_path)
    problems = []
    for st in stations:
        ids = [tx for tx, _, _ in st.starts]
        if ids != sorted(set(ids)):
            problems.append(f"{st.name}: ids not increasing: {ids}")
        for tx, tag, meter_start in st.starts:
            rows = db.execute("SELECT id, meter_start FROM transactions WHERE id_tag=?", (tag,)).fetchall()
            if rows != [(tx, meter_start)]:
                problems.append(f"{st.name}: Start {tag} answered {tx}, stored as {rows}")
        for tx, meter_stop in st.stops.items():
            row = db.execute("SELECT state, meter_stop FROM transactions WHERE id=?", (tx,)).fetchone()
            if row != ("stopped", meter_stop):
                problems.append(f"{st.name}: Stop of {tx} answered with {meter_stop}, stored as {row}")
        for tx, ts, value in st.samples:
            n = db.execute("SELECT COUNT(*) FROM meter_values WHERE tx_id=? AND timestamp=? AND value=?",
                           (tx, ts, value)).fetchone()[0]
            if n != 1:
                problems.append(f"{st.name}: sample {ts} of {tx} stored {n} times")
    top = db.execute("SELECT MAX(id) FROM transactions").fetchone()[0] or 0
    if top > 2**31 - 1:
        problems.append(f"transaction id {top} beyond int32")
    db.close()
    return problems


def soak(workdir: Path, kills: int, seed: int = 16, log=print) -> tuple[list[Station], list[str]]:
    rng = random.Random(seed)
    app = ApplianceProcess(workdir)
    stations = [Station(f"S{i}", app.url(f"SOAK{i}"), random.Random(seed + i)) for i in range(STATIONS)]
    done = []

    def run(st: Station) -> None:
        n = 0
        while not done:
            n += 1
            st.session(n)

    workers = [gevent.spawn(run, st) for st in stations]
    try:
        for k in range(kills):
            gevent.sleep(rng.uniform(0.2, 1.2))
            app.kill9()
            app.start()
            log(f"  kill {k + 1}/{kills}: {sum(len(s.starts) for s in stations)} transactions answered so far")
        done.append(True)
        gevent.joinall(workers, timeout=300, raise_error=True)   # each finishes the session it is in
    finally:
        for w in workers:
            w.kill()
        status = app.stop()
    problems = check(app.data / "ampgate.db", stations)
    if status != 0:
        problems.append(f"the last run did not stop cleanly (exit {status})")
    return stations, problems


def main() -> int:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        stations, problems = soak(Path(tmp), KILLS)
    print(f"SIGKILLs               {KILLS} in {time.monotonic() - t0:.0f} s, {STATIONS} stations")
    print(f"transactions answered  {sum(len(s.starts) for s in stations)} started, "
          f"{sum(len(s.stops) for s in stations)} stopped, {sum(len(s.samples) for s in stations)} meter samples")
    print(f"messages sent          {sum(s.sent for s in stations)} (retries after a kill included), "
          f"{sum(s.reconnects for s in stations)} connections")
    print(f"problems               {len(problems)}")
    for p in problems[:20]:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
