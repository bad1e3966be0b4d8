"""Fault soak: two wallboxes charging with MeterValues every 2 s behind the appliance, the backend
stopped and started three times and the appliance killed with SIGKILL twice. The backend ends up with
every Start and every Stop exactly once (a retransmission keeps its message id) and each wallbox's
MeterValues complete and in order."""
import collections
import json
import signal
import time

import gevent
from gevent.subprocess import Popen

from appliance.ocpp.client import OcppClient
from appliance.ocpp.errors import CallFailed
from conftest import PYTHON, free_port, subprocess_env, wait_for
from gateway_peers import Backend

TRANSACTIONS = 4          # per wallbox
SAMPLES = 3               # MeterValues per transaction, every 2 s


class SoakBox:
    """A wallbox as the field has them: every transaction message is sent until answered, the same
    text again after a lost connection, and a new connection boots first."""

    def __init__(self, url: str, n: int):
        self.url, self.n = url, n
        self.client: OcppClient | None = None
        self.sent_energy: list[int] = []
        self.tags: list[str] = []
        handlers = {"GetConfiguration": lambda p: {"configurationKey": []},
                    "SetChargingProfile": lambda p: {"status": "Accepted"},
                    "ClearChargingProfile": lambda p: {"status": "Unknown"},
                    "TriggerMessage": lambda p: {"status": "Accepted"}}
        self.handlers = handlers

    def _connect(self) -> OcppClient:
        while True:
            client = OcppClient(self.url, self.handlers, call_timeout=5, timeout=3)
            try:
                client.connect()
                client.call("BootNotification", {"chargePointVendor": "Soak", "chargePointModel": "Box",
                                                 "chargePointSerialNumber": f"SN{self.n}"})
                return client
            except (CallFailed, OSError, Exception):   # noqa: B014 - websocket errors of every kind
                client.close()
                gevent.sleep(0.5)

    def deliver(self, action: str, payload: dict) -> dict:
        while True:
            if self.client is None:
                self.client = self._connect()
            try:
                return self.client.call(action, payload)
            except CallFailed:
                self.client.close()
                self.client = None
                gevent.sleep(0.5)

    def run(self) -> None:
        energy = 1000
        for k in range(TRANSACTIONS):
            tag = f"S{self.n}-{k}"
            ts = f"2026-12-03T10:{self.n:02d}:{k:02d}Z"
            tx = self.deliver("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": energy,
                                                   "timestamp": ts})["transactionId"]
            self.tags.append(tag)
            for _ in range(SAMPLES):
                gevent.sleep(2)
                energy += 100
                self.deliver("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
                    {"timestamp": ts, "sampledValue": [{"value": str(energy), "measurand": "Energy.Active.Import.Register"}]}]})
                self.sent_energy.append(energy)
            self.deliver("StopTransaction", {"transactionId": tx, "meterStop": energy, "timestamp": ts, "idTag": tag})
        if self.client is not None:
            self.client.close()


class Appliance:
    def __init__(self, tmp, backend_port: int):
        self.port = free_port()
        self.conf = tmp / "soak.conf"
        self.data = tmp / "var"
        url = f"ws://127.0.0.1:{backend_port}/"
        self.conf.write_text(
            f"[ocpp_server]\nport = {self.port}\nbind = 127.0.0.1\n[load_management]\nmode = monitor\n[devices]\n"
            + "".join(f"[[soak{n}]]\ntype = ocpp16\naddress = SOAK{n}\ngateway_url = {url}\ngateway_id = GWS{n}\n"
                      for n in (1, 2)), encoding="utf-8")
        self.log = open(tmp / "appliance.log", "a")
        self.proc: Popen | None = None

    def start(self) -> None:
        self.proc = Popen([PYTHON, "-m", "appliance", "run", "--no-web", "--config", str(self.conf), "--data",
                           str(self.data)], env=subprocess_env(), stdout=self.log, stderr=self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


def once_by_message_id(frames: list[list]) -> list[list]:
    seen, out = set(), []
    for f in frames:
        if f[1] not in seen:
            seen.add(f[1])
            out.append(f)
    return out


def test_fault_soak(tmp_path):
    backend_port = free_port()
    backend = Backend(port=backend_port)
    gone = []   # backends that were stopped: their receptions count too
    app = Appliance(tmp_path, backend_port)
    app.start()
    boxes = [SoakBox(f"ws://127.0.0.1:{app.port}/SOAK{n}", n) for n in (1, 2)]
    runs = [gevent.spawn(b.run) for b in boxes]
    t0 = time.monotonic()

    def at(t: float) -> None:
        gevent.sleep(max(0.0, t0 + t - time.monotonic()))

    try:
        for start_s, action in [(5, "backend down"), (10, "backend up"), (14, "kill"), (20, "backend down"),
                                (25, "backend up"), (28, "kill"), (33, "backend down"), (38, "backend up")]:
            at(start_s)
            if action == "kill":
                app.kill()
                gevent.sleep(0.5)
                app.start()
            elif action == "backend down":
                backend.close()
                gone.append(backend)
            else:
                backend = Backend(port=backend_port)
        gevent.joinall(runs, timeout=120, raise_error=True)
        assert all(r.ready() for r in runs)

        def frames(n: int, action: str) -> list[list]:
            return once_by_message_id([f for b in gone + [backend] for f in b.frames(f"GWS{n}", action)])

        for n, box in zip((1, 2), boxes):
            wait_for(lambda: len(frames(n, "StopTransaction")) >= TRANSACTIONS, timeout=120,
                     what=f"every Stop of box {n} at the backend")
            starts = [f[3]["idTag"] for f in frames(n, "StartTransaction")]
            stops = [f[3]["idTag"] for f in frames(n, "StopTransaction")]
            assert collections.Counter(starts) == collections.Counter(box.tags)    # each exactly once
            assert collections.Counter(stops) == collections.Counter(box.tags)
            energy = [int(f[3]["meterValue"][0]["sampledValue"][0]["value"]) for f in frames(n, "MeterValues")]
            assert energy == box.sent_energy                                        # all, in order
        print(json.dumps({"kills": 2, "backend restarts": 3, "seconds": round(time.monotonic() - t0)}))
    finally:
        gevent.killall(runs)
        app.stop()
        backend.close()
