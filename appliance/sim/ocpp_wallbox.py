"""`ampgate sim ocpp URL`: a simulated OCPP 1.6J wallbox over a real websocket.

It boots, reports status, lets a car plug in, authorise, charge and stop, sends meter values with
per-phase currents, and draws min(its charging-profile limit, the car's maximum). It records every
change of the limit in effect (`timeline`) so tests can prove what the station was allowed to draw
at every moment. Library use: `SimWallbox(url, ...)`; CLI use: commands on stdin (type `help`).
"""
from __future__ import annotations

import argparse
import logging
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import gevent

from appliance.timefmt import utc_now
from appliance.ocpp.client import OcppClient
from appliance.ocpp.errors import CallFailed
from appliance.sim.profiles import NOMINAL_VOLTAGE, ProfileStore

HELP = "a simulated OCPP 1.6J wallbox (for demos, tests and benchmarks)"
log = logging.getLogger("ampgate.sim.ocpp")


@dataclass
class Connector:
    id: int
    status: str = "Available"
    plugged: bool = False
    tx_id: int | None = None
    id_tag: str | None = None
    energy_wh: float = 0.0
    draw: float = 0.0
    car_max: float = 16.0
    last_meter: float = field(default_factory=time.monotonic)


class SimWallbox:
    def __init__(self, url: str, *, connectors: int = 1, password: str | bytes | None = None, car_max: float = 16.0,
                 phases: int = 3, meter_interval: float = 10.0, reject_profiles: bool = False,
                 rate_unit: str = "Current", ssl_context: ssl.SSLContext | None = None, call_timeout: float = 10.0,
                 vendor: str = "Ampgate", model: str = "SimBox", box_max: float = 32.0, max_stack_level: int = 8):
        self.url = url
        self.phases = phases
        self.meter_interval = meter_interval
        self.reject_profiles = reject_profiles
        self.max_stack_level = max_stack_level   # ChargeProfileMaxStackLevel: higher levels are rejected
        self.rate_unit = rate_unit
        self.vendor, self.model = vendor, model
        self.box_max = box_max      # what the box's hardware allows without any profile
        self.connectors = {i: Connector(i, car_max=car_max) for i in range(1, connectors + 1)}
        self.profiles = ProfileStore()
        # (monotonic time, connector, current the box may let flow now): 0 without a transaction,
        # else its profile limit, or box_max when it holds no profile
        self.timeline: list[tuple[float, int, float]] = []
        self.received: list[str] = []                                 # actions the CS sent us
        self.client = OcppClient(url, self._handlers(), password=password, ssl_context=ssl_context,
                                 call_timeout=call_timeout)
        self._meter_loop: gevent.Greenlet | None = None

    # -- connection -------------------------------------------------------------------------------
    def connect(self, boot: bool = True) -> None:
        self.client.connect()
        if boot:
            self.client.call("BootNotification", {"chargePointVendor": self.vendor, "chargePointModel": self.model,
                                                  "chargePointSerialNumber": self.client.name[:25]})
            self.client.call("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"})
            for c in self.connectors.values():
                self._status(c, c.status)
        if self._meter_loop is None:
            self._meter_loop = gevent.spawn(self._meter_forever)
        self._record_all()

    def close(self) -> None:
        if self._meter_loop is not None:
            self._meter_loop.kill()
            self._meter_loop = None
        self.client.close()

    def drop(self) -> None:
        """Lose the network: no close frame, the meter loop stops sending."""
        if self._meter_loop is not None:
            self._meter_loop.kill()
            self._meter_loop = None
        self.client.drop()

    # -- the car ----------------------------------------------------------------------------------
    def plug_in(self, connector: int = 1) -> None:
        c = self.connectors[connector]
        c.plugged = True
        self._status(c, "Preparing")

    def start(self, connector: int = 1, id_tag: str = "SIMTAG") -> int:
        """Authorise and start a transaction; returns the CS's transaction id."""
        c = self.connectors[connector]
        if not c.plugged:
            self.plug_in(connector)
        self.client.call("Authorize", {"idTag": id_tag})
        answer = self.client.call("StartTransaction", {"connectorId": connector, "idTag": id_tag,
                                                       "meterStart": int(c.energy_wh), "timestamp": utc_now()})
        c.tx_id, c.id_tag = int(answer["transactionId"]), id_tag
        c.last_meter = time.monotonic()
        self._record_all()
        self._update_draw(c)
        return c.tx_id

    def stop(self, connector: int = 1, reason: str = "Local") -> None:
        c = self.connectors[connector]
        self._accumulate(c)
        if c.tx_id is not None:
            self.client.call("StopTransaction", {"transactionId": c.tx_id, "meterStop": int(c.energy_wh),
                                                 "timestamp": utc_now(), "reason": reason, "idTag": c.id_tag})
        c.tx_id = c.id_tag = None
        c.draw = 0.0
        self.profiles.clear_tx_profiles(connector)
        self._record_all()
        self._status(c, "Finishing" if c.plugged else "Available")

    def unplug(self, connector: int = 1) -> None:
        c = self.connectors[connector]
        if c.tx_id is not None:
            self.stop(connector, reason="EVDisconnected")
        c.plugged = False
        self._status(c, "Available")

    # -- physics ----------------------------------------------------------------------------------
    def limit(self, connector: int) -> float | None:
        return self.profiles.limit(connector)

    def _update_draw(self, c: Connector) -> None:
        if c.tx_id is None:
            c.draw = 0.0
            return
        limit = self.limit(c.id)
        offered = c.car_max if limit is None else min(limit, c.car_max)
        c.draw = offered if offered >= 6.0 else 0.0    # IEC 61851: below 6 A the car stops
        want = "Charging" if c.draw > 0 else "SuspendedEVSE"
        if c.status != want:
            self._status(c, want)

    def _accumulate(self, c: Connector) -> None:
        now = time.monotonic()
        c.energy_wh += c.draw * NOMINAL_VOLTAGE * self.phases * (now - c.last_meter) / 3600
        c.last_meter = now

    def _meter_forever(self) -> None:
        while True:
            gevent.sleep(self.meter_interval)
            for c in list(self.connectors.values()):
                if c.tx_id is not None:
                    try:
                        self.send_meter_values(c.id)
                    except CallFailed as e:
                        log.info("%s: MeterValues failed: %s", self.client.name, e)

    def send_meter_values(self, connector: int) -> None:
        c = self.connectors[connector]
        self._accumulate(c)
        ts = utc_now()
        per_phase = [c.draw if i < self.phases else 0.0 for i in range(3)]
        sampled = [{"value": f"{a:.1f}", "measurand": "Current.Import", "phase": f"L{i + 1}", "unit": "A"}
                   for i, a in enumerate(per_phase)]
        limit = self.limit(connector)
        sampled += [
            {"value": f"{c.draw * NOMINAL_VOLTAGE * self.phases:.0f}", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": f"{c.energy_wh:.0f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": f"{(c.car_max if limit is None else min(limit, c.car_max)):.1f}",
             "measurand": "Current.Offered", "unit": "A"},
        ]
        payload: dict[str, Any] = {"connectorId": connector, "meterValue": [{"timestamp": ts, "sampledValue": sampled}]}
        if c.tx_id is not None:
            payload["transactionId"] = c.tx_id
        self.client.call("MeterValues", payload)

    def _status(self, c: Connector, status: str) -> None:
        c.status = status
        gevent.spawn(self._send_status, c.id, status)

    def _send_status(self, connector: int, status: str) -> None:
        try:
            self.client.call("StatusNotification", {"connectorId": connector, "errorCode": "NoError",
                                                    "status": status, "timestamp": utc_now()})
        except CallFailed as e:
            log.info("%s: StatusNotification failed: %s", self.client.name, e)

    def allowed(self, connector: int) -> float:
        if self.connectors[connector].tx_id is None:
            return 0.0
        limit = self.limit(connector)
        return self.box_max if limit is None else min(limit, self.box_max)

    def _record_all(self) -> None:
        now = time.monotonic()
        for c in self.connectors.values():
            self.timeline.append((now, c.id, self.allowed(c.id)))

    def _profiles_changed(self) -> None:
        self._record_all()
        for c in self.connectors.values():
            self._accumulate(c)
            self._update_draw(c)

    # -- what the central system may ask ------------------------------------------------------------
    def _handlers(self) -> dict[str, Any]:
        def h(fn):
            def wrapped(payload: dict[str, Any]) -> dict[str, Any]:
                self.received.append(fn.__name__[3:])
                return fn(payload)
            return wrapped
        return {name[3:]: h(getattr(self, name)) for name in dir(self) if name.startswith("on_")}

    def on_SetChargingProfile(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.reject_profiles or int(p["csChargingProfiles"]["stackLevel"]) > self.max_stack_level:
            return {"status": "Rejected"}
        connector = int(p["connectorId"])
        if connector and connector not in self.connectors:
            return {"status": "Rejected"}
        has_tx = connector in self.connectors and self.connectors[connector].tx_id is not None
        status = self.profiles.set(connector, p["csChargingProfiles"], has_tx)
        if status == "Accepted":
            gevent.spawn(self._profiles_changed)   # status and meter effects follow our answer
        self._record_now()
        return {"status": status}

    def _record_now(self) -> None:
        # the limit takes effect when we answer: record it at once so the timeline never lags
        self._record_all()
        for c in self.connectors.values():
            c_limit = self.limit(c.id)
            if c.tx_id is not None and c_limit is not None and c.draw > c_limit:
                self._accumulate(c)
                c.draw = c_limit if c_limit >= 6.0 else 0.0

    def on_ClearChargingProfile(self, p: dict[str, Any]) -> dict[str, Any]:
        status = self.profiles.clear(p)
        self._record_now()
        gevent.spawn(self._profiles_changed)
        return {"status": status}

    def on_GetCompositeSchedule(self, p: dict[str, Any]) -> dict[str, Any]:
        connector = int(p["connectorId"])
        limit = self.limit(connector) if connector else None
        if limit is None:
            return {"status": "Rejected"}
        return {"status": "Accepted", "connectorId": connector, "scheduleStart": utc_now(),
                "chargingSchedule": {"chargingRateUnit": "A",
                                     "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(limit, 1)}]}}

    def on_GetConfiguration(self, p: dict[str, Any]) -> dict[str, Any]:
        keys = {
            "ChargingScheduleAllowedChargingRateUnit": self.rate_unit,
            "ChargeProfileMaxStackLevel": str(self.max_stack_level),
            "SupportedFeatureProfiles": "Core,SmartCharging,RemoteTrigger",
            "MeterValueSampleInterval": f"{self.meter_interval:g}",
            "NumberOfConnectors": str(len(self.connectors)),
        }
        wanted = p.get("key") or list(keys)
        return {"configurationKey": [{"key": k, "readonly": True, "value": keys[k]} for k in wanted if k in keys],
                "unknownKey": [k for k in wanted if k not in keys]}

    def on_ChangeConfiguration(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted" if p["key"] in ("MeterValueSampleInterval", "HeartbeatInterval") else "NotSupported"}

    def on_RemoteStartTransaction(self, p: dict[str, Any]) -> dict[str, Any]:
        connector = int(p.get("connectorId") or 1)
        if connector not in self.connectors or self.connectors[connector].tx_id is not None:
            return {"status": "Rejected"}
        self.client.endpoint.defer(lambda: self.start(connector, p["idTag"]))
        return {"status": "Accepted"}

    def on_RemoteStopTransaction(self, p: dict[str, Any]) -> dict[str, Any]:
        for c in self.connectors.values():
            if c.tx_id == int(p["transactionId"]):
                self.client.endpoint.defer(lambda c=c: self.stop(c.id, reason="Remote"))
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    def on_UnlockConnector(self, p: dict[str, Any]) -> dict[str, Any]:
        connector = int(p.get("connectorId") or 0)
        if connector not in self.connectors:
            return {"status": "NotSupported"}
        c = self.connectors[connector]
        if c.tx_id is not None:   # as a real box: unlocking ends the session first
            self.client.endpoint.defer(lambda: self.stop(connector, reason="UnlockCommand"))
        return {"status": "Unlocked"}

    def on_TriggerMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        what = p["requestedMessage"]
        if what == "StatusNotification":
            for c in self.connectors.values():
                self.client.endpoint.defer(lambda c=c: self._send_status(c.id, c.status))
        elif what == "MeterValues":
            for c in self.connectors.values():
                self.client.endpoint.defer(lambda c=c: self.send_meter_values(c.id))
        elif what == "Heartbeat":
            self.client.endpoint.defer(lambda: self.client.call("Heartbeat", {}))
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    def on_ChangeAvailability(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted"}

    def on_Reset(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Rejected"}

    def on_DataTransfer(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "UnknownVendorId"}


# -- command line -------------------------------------------------------------------------------------
COMMANDS = """commands (one per line on stdin):
  plug [C]            a car is plugged into connector C (default 1)
  start [C] [TAG]     authorise TAG and start a transaction
  stop [C]            stop the transaction
  unplug [C]          unplug the car (stops a running transaction)
  carmax C AMPS       the car's maximum current
  meter [C]           send meter values now
  status              print connectors, limits and profiles
  quit"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="the central system's URL including the chargeBoxId, e.g. ws://127.0.0.1:19520/CP1")
    p.add_argument("--connectors", type=int, default=1, help="number of connectors (default: %(default)s)")
    p.add_argument("--password", help="OCPP password (HTTP Basic, user = chargeBoxId)")
    p.add_argument("--car-max", type=float, default=16.0, help="the car's maximum current in A (default: %(default)s)")
    p.add_argument("--phases", type=int, default=3, choices=[1, 2, 3], help="phases the car uses (default: 3)")
    p.add_argument("--meter-interval", type=float, default=10.0, help="seconds between MeterValues (default: 10)")
    p.add_argument("--auto", type=float, metavar="S", help="plug in and start charging on every connector after S seconds")
    p.add_argument("--id-tag", default="SIMTAG", help="idTag used by --auto (default: %(default)s)")
    p.add_argument("--reject-profiles", action="store_true", help="answer Rejected to every SetChargingProfile")
    p.add_argument("--rate-unit", default="Current", choices=["Current", "Power", "Current,Power"],
                   help="ChargingScheduleAllowedChargingRateUnit (default: %(default)s)")
    p.add_argument("--ca", help="CA file to verify a wss:// server; without it any server certificate is accepted")
    p.add_argument("--cert", help="client certificate (Security Profile 3)")
    p.add_argument("--key", help="client key (Security Profile 3)")


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.url.startswith("wss://"):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if args.ca:
        ctx.load_verify_locations(args.ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def _command(box: SimWallbox, line: str) -> bool:
    words = line.split()
    if not words:
        return True
    cmd, rest = words[0], words[1:]
    conn = int(rest[0]) if rest and rest[0].isdigit() else 1
    if cmd == "quit":
        return False
    if cmd == "plug":
        box.plug_in(conn)
    elif cmd == "start":
        print(f"transaction {box.start(conn, rest[1] if len(rest) > 1 else 'SIMTAG')}", flush=True)
    elif cmd == "stop":
        box.stop(conn)
    elif cmd == "unplug":
        box.unplug(conn)
    elif cmd == "carmax" and len(rest) == 2:
        box.connectors[conn].car_max = float(rest[1])
        box._update_draw(box.connectors[conn])
    elif cmd == "meter":
        box.send_meter_values(conn)
    elif cmd == "status":
        for c in box.connectors.values():
            print(f"connector {c.id}: {c.status}, tx {c.tx_id}, limit {box.limit(c.id)}, draw {c.draw:.1f} A, "
                  f"{c.energy_wh:.0f} Wh", flush=True)
        print(f"profiles: {box.profiles.describe()}", flush=True)
    else:
        print(COMMANDS, flush=True)
    return True


RECONNECT_FIRST_S, RECONNECT_MAX_S = 1.0, 10.0


def keep_connected(box: SimWallbox, url: str) -> None:
    """Like a real wallbox: when the central system goes away (a restart), try again, waiting twice as
    long after each failure (1 s up to 10 s), then boot and report every connector afresh."""
    wait = RECONNECT_FIRST_S
    while True:
        gevent.sleep(0.5)
        if box.client.connected and not box.client.endpoint.closed:   # closed: the read loop ended
            wait = RECONNECT_FIRST_S
            continue
        print(f"ampgate sim ocpp: connection to {url} lost; trying again in {wait:g} s", file=sys.stderr, flush=True)
        gevent.sleep(wait)
        try:
            box.client.drop()    # what is left of the old connection, without waiting for a close reply
            gevent.sleep(0.1)    # its read loop ends (and closes its endpoint) before the new one opens
            box.connect()
        except Exception as e:   # refused, reset, timed out: the next try waits longer
            print(f"ampgate sim ocpp: cannot connect to {url}: {e}", file=sys.stderr, flush=True)
            wait = min(wait * 2, RECONNECT_MAX_S)
        else:
            print(f"reconnected to {url}", flush=True)


def main(args: argparse.Namespace) -> int:
    box = SimWallbox(args.url, connectors=args.connectors, password=args.password, car_max=args.car_max,
                     phases=args.phases, meter_interval=args.meter_interval, reject_profiles=args.reject_profiles,
                     rate_unit=args.rate_unit, ssl_context=_ssl_context(args))
    try:
        box.connect()
    except Exception as e:   # a user-facing tool: one line, no traceback; then try again like a wallbox
        print(f"ampgate sim ocpp: cannot connect to {args.url}: {e}", file=sys.stderr, flush=True)
    else:
        print(f"connected to {args.url}; type 'help' for commands", flush=True)
    gevent.spawn(keep_connected, box, args.url)
    if args.auto is not None:
        def auto() -> None:
            gevent.sleep(args.auto)
            for c in box.connectors:
                box.start(c, args.id_tag)
        gevent.spawn(auto)
    from gevent.fileobject import FileObject

    stdin = FileObject(sys.stdin, "r")
    try:
        for line in stdin:
            if not _command(box, line):
                break
        else:
            while True:   # stdin closed (e.g. run in the background): keep going, reconnecting as needed
                gevent.sleep(1)
    except (CallFailed, ValueError) as e:
        print(f"ampgate sim ocpp: {e}", file=sys.stderr)
        return 1
    finally:
        box.close()
    return 0
