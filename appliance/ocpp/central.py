"""Central-system behaviour: what we answer to stations, and what we record.

Configured wallboxes are matched by chargeBoxId + connectorId (one device per connector); a station
nobody configured is accepted, listed for adoption and never controlled. Transaction ids come from
SQLite and are committed before the answer is sent.
"""
from __future__ import annotations

import functools
import json
import logging
from decimal import Decimal
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import gevent

from appliance.ocpp import datatransfer
from appliance.ocpp.errors import OcppError
from appliance.ocpp.session import StationSession
from appliance.store import MeterSample
from appliance.timefmt import utc_now

log = logging.getLogger("ampgate.ocpp")
INIT_AFTER_SILENCE_S = 3.0   # a reconnect without BootNotification: configure after this long


def _int(v: Any, any_size: bool = False) -> int:
    """Integers that arrived as 1234.0 (seen in the field) are still integers to us; anything else
    gets the 1.6 code, as do integers beyond SQLite's 64 bits (unless `any_size`: an id we only compare)."""
    integral = isinstance(v, int) or isinstance(v, Decimal) and v.is_finite() and v == v.to_integral_value()
    if isinstance(v, bool) or not integral:
        raise OcppError("TypeConstraintViolation", f"not an integer: {str(v)[:40]}")
    n = int(v)
    if not any_size and not -2**63 <= n < 2**63:
        raise OcppError("TypeConstraintViolation", f"integer out of range: {str(v)[:40]}")
    return n


def _text(v: Any) -> str | None:
    """A string field as stored; a number or structure where text belongs is kept as its text."""
    return None if v is None else v if isinstance(v, str) else json.dumps(v, default=str)[:1000]


def samples_from(meter_values: list[dict[str, Any]]) -> list[MeterSample]:
    out = []
    for mv in meter_values or []:
        if not isinstance(mv, dict):
            continue   # tolerated off-schema input: skip what is not a MeterValue object
        ts = _text(mv.get("timestamp")) or ""
        values = mv.get("sampledValue")
        for sv in values if isinstance(values, list) else []:
            if not isinstance(sv, dict):
                continue
            out.append(MeterSample(
                timestamp=ts, measurand=_text(sv.get("measurand")) or "Energy.Active.Import.Register",
                value=_text(sv.get("value")) or "", phase=_text(sv.get("phase")), unit=_text(sv.get("unit")),
                context=_text(sv.get("context")), format=_text(sv.get("format"))))
    return out


HANDLED = ("BootNotification", "Heartbeat", "StatusNotification", "Authorize", "StartTransaction", "StopTransaction",
           "MeterValues", "DataTransfer", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
           "SecurityEventNotification")


class SessionHandlers(Mapping):
    """action -> handler for one station, made when a CALL arrives: a dict of eleven bound
    handlers per connection costs 3.4 KB, which ten thousand idle stations feel."""

    __slots__ = ("central", "session")

    def __init__(self, central: CentralSystem, session: StationSession):
        self.central, self.session = central, session

    def __getitem__(self, action: str) -> Callable[[dict], dict]:
        if action not in HANDLED:
            raise KeyError(action)
        return functools.partial(getattr(self.central, "on_" + action), self.session)

    def __contains__(self, action: object) -> bool:
        return action in HANDLED

    def __iter__(self) -> Iterator[str]:
        return iter(HANDLED)

    def __len__(self) -> int:
        return len(HANDLED)


class CentralSystem:
    def __init__(self, runtime: Any, server: Any):
        self.rt = runtime
        self.server = server
        self.boot_info: dict[str, dict[str, Any]] = {}

    # -- connection lifecycle -----------------------------------------------------------------------
    def devices_of(self, cpid: str) -> list[Any]:
        return [d for d in self.rt.devices.values()
                if d.settings["type"] == "ocpp16" and d.settings["address"] == cpid]

    def attach(self, session: StationSession) -> None:
        h = self._handlers(session)
        session.endpoint.handlers = h
        devices = self.devices_of(session.cpid)
        if devices:
            self.rt.events.info(f"connected from {session.peer}{' over TLS' if session.tls else ''}",
                                ",".join(d.name for d in devices))
        else:
            self._note_unconfigured(session.cpid, connected=True, peer=session.peer)
            log.info("%s: connected from %s; not configured, listed for adoption", session.cpid, session.peer)
        for dev in devices:
            dev.on_connect(session)
        session.init_pending = gevent.spawn_later(INIT_AFTER_SILENCE_S, self._configure, session)

    def detach(self, session: StationSession) -> None:
        pending = getattr(session, "init_pending", None)
        if pending is not None:
            pending.kill(block=False)
        for dev in self.devices_of(session.cpid):
            dev.on_disconnect(session)
        self.rt.unconfigured.disconnected(session.cpid)
        self.boot_info.pop(session.cpid, None)
        self.rt.lm_trigger()

    def _configure(self, session: StationSession) -> None:
        """Smart-charging set-up after connect or boot: done by each configured connector."""
        session.init_pending = None
        for dev in self.devices_of(session.cpid):
            if self.server.session(session.cpid) is not session:
                return
            try:
                dev.configure(session)
            except Exception:
                log.exception("%s: configuring connector %s failed", session.cpid, dev.settings["connector"])
        self.rt.lm_trigger()

    def _schedule_configure(self, session: StationSession) -> None:
        pending = getattr(session, "init_pending", None)
        if pending is not None:
            pending.kill(block=False)
        session.init_pending = None
        session.endpoint.defer(lambda: self._configure(session))

    def _note_unconfigured(self, cpid: str, **info: Any) -> None:
        if self.devices_of(cpid):
            self.rt.unconfigured.pop(cpid, None)
            return
        self.rt.unconfigured.note(cpid, **info)

    # -- handlers ---------------------------------------------------------------------------------
    def _handlers(self, session: StationSession) -> Mapping[str, Callable[[dict], dict]]:
        return SessionHandlers(self, session)

    def on_BootNotification(self, s: StationSession, p: dict) -> dict:
        info = {k: p.get(k) for k in ("chargePointVendor", "chargePointModel", "chargePointSerialNumber",
                                       "firmwareVersion")}
        self.boot_info[s.cpid] = info
        self._note_unconfigured(s.cpid, vendor=info["chargePointVendor"], model=info["chargePointModel"],
                                serial=info["chargePointSerialNumber"], connected=True, peer=s.peer)
        for dev in self.devices_of(s.cpid):
            dev.on_boot(info)
            self.rt.events.info(f"boot: {info['chargePointVendor']} {info['chargePointModel']} "
                                f"firmware {info['firmwareVersion'] or '?'}; installing our charging profile", dev.name)
        self._schedule_configure(s)
        return {"status": "Accepted", "currentTime": utc_now(),
                "interval": self.rt.config.section("ocpp_server")["heartbeat_interval"]}

    def on_Heartbeat(self, s: StationSession, p: dict) -> dict:
        self._first_contact(s)
        return {"currentTime": utc_now()}

    def on_StatusNotification(self, s: StationSession, p: dict) -> dict:
        self._first_contact(s)
        connector = _int(p["connectorId"])
        dev = self.rt.find_ocpp(s.cpid, connector)
        if dev is not None:
            dev.on_status(p["status"], p["errorCode"], p.get("info") or p.get("vendorErrorCode") or "")
            self.rt.lm_trigger()
        elif connector == 0:
            for d in self.devices_of(s.cpid):
                d.on_station_status(p["status"], p["errorCode"])
        if s.cpid in self.rt.unconfigured:
            self.rt.unconfigured[s.cpid]["connectors"][str(connector)] = p["status"]
        return {}

    def on_Authorize(self, s: StationSession, p: dict) -> dict:
        self._first_contact(s)
        return {"idTagInfo": {"status": "Accepted"}}

    def on_StartTransaction(self, s: StationSession, p: dict) -> dict:
        self._first_contact(s)
        connector = _int(p["connectorId"])
        meter_start = _int(p["meterStart"])
        id_tag, when = p["idTag"], _text(p["timestamp"])
        if not isinstance(id_tag, str):
            raise OcppError("TypeConstraintViolation", "idTag must be a string")
        dev = self.rt.find_ocpp(s.cpid, connector)
        key = f"{s.cpid}|{connector}|{id_tag}|{when}|{meter_start}"
        tx_id, created = self.rt.store.start_transaction(
            connector=connector, id_tag=id_tag, meter_start=meter_start, start_time=when or "",
            device=dev.name if dev else None, charge_box_id=s.cpid, dedup_key=key)
        if created:
            if dev is not None:
                self.rt.events.info(f"transaction {tx_id} started, idTag {id_tag[:40]}, meter {meter_start} Wh", dev.name)
            else:
                log.info("%s: connector %s: transaction %s started (unconfigured station)", s.cpid, connector, tx_id)
        else:
            log.info("%s: repeated StartTransaction; answered with the same transaction %s", s.cpid, tx_id)
        if dev is not None:
            dev.on_transaction_start(tx_id, id_tag, meter_start)
            s.endpoint.defer(self.rt.lm_trigger)
        return {"transactionId": tx_id, "idTagInfo": {"status": "Accepted"}}

    def on_StopTransaction(self, s: StationSession, p: dict) -> dict:
        self._first_contact(s)
        tx_id, meter_stop = _int(p["transactionId"], any_size=True), _int(p["meterStop"])
        reason = _text(p.get("reason")) or "Local"
        samples = samples_from(p.get("transactionData") or [])
        tx = self.rt.store.get_transaction(tx_id)
        if tx is None or tx["source"] != "ocpp" or tx["charge_box_id"] != s.cpid:
            self._orphan_stop(s, tx_id, meter_stop, _text(p["timestamp"]) or "", p, samples,
                              "unknown transaction" if tx is None else "started by another station")
        else:
            self.rt.store.add_meter_values(samples, tx_id=tx_id, device=tx["device"], charge_box_id=s.cpid,
                                           connector=tx["connector"])
            if self.rt.store.stop_transaction(tx_id, meter_stop=meter_stop, stop_time=_text(p["timestamp"]) or "",
                                              reason=reason) == "stopped":
                dev = self.rt.devices.get(tx["device"]) if tx["device"] else None
                if dev is not None:
                    dev.on_transaction_stop(tx_id, meter_stop)
                    self.rt.events.info(f"transaction {tx_id} stopped ({reason}), meter {meter_stop} Wh", dev.name)
                s.endpoint.defer(self.rt.lm_trigger)
        answer: dict[str, Any] = {}
        if p.get("idTag"):
            answer["idTagInfo"] = {"status": "Accepted"}
        return answer

    def _orphan_stop(self, s: StationSession, tx_id: int, meter_stop: int, when: str, p: dict,
                     samples: list[MeterSample], why: str) -> None:
        """A Stop we cannot apply is still acknowledged (the station would resend it forever) and
        kept apart: it never touches another station's transaction or our id sequence."""
        if self.rt.store.add_orphan_stop(str(tx_id), charge_box_id=s.cpid, meter_stop=meter_stop, stop_time=when,
                                         reason=_text(p.get("reason")), why=why, samples=samples):
            self.rt.events.warning(f"StopTransaction for transaction {str(tx_id)[:20]}: {why}; "
                                   "kept apart as an orphan stop", s.cpid)

    def on_MeterValues(self, s: StationSession, p: dict) -> dict:
        self._first_contact(s)
        connector = _int(p["connectorId"])
        tx_id = _int(p["transactionId"]) if p.get("transactionId") is not None else None
        dev = self.rt.find_ocpp(s.cpid, connector)
        samples = samples_from(p.get("meterValue"))
        self.rt.store.add_meter_values(samples, tx_id=tx_id, device=dev.name if dev else None,
                                       charge_box_id=s.cpid, connector=connector)
        if dev is not None:
            dev.on_meter_values(samples)
        return {}

    def on_DataTransfer(self, s: StationSession, p: dict) -> dict:
        self._first_contact(s)
        accept = datatransfer.accepted_vendors(self.rt.config.section("ocpp_server")["data_transfer_accept"])
        return datatransfer.answer(s.cpid, p, accept, self.rt.events)

    def on_DiagnosticsStatusNotification(self, s: StationSession, p: dict) -> dict:
        return {}

    def on_FirmwareStatusNotification(self, s: StationSession, p: dict) -> dict:
        return {}

    def on_SecurityEventNotification(self, s: StationSession, p: dict) -> dict:
        log.info("%s: security event %s", s.cpid, p.get("type"))
        return {}

    def _first_contact(self, s: StationSession) -> None:
        """A reconnect without BootNotification: configure right after this first answer."""
        if getattr(s, "init_pending", None) is not None:
            self._schedule_configure(s)


__all__ = ["CentralSystem", "OcppError", "samples_from"]
