"""Central-system behaviour: what we answer to stations (the local policy), and what we record.

Configured wallboxes are matched by chargeBoxId + connectorId (one device per connector); a station
nobody configured is accepted, listed for adoption and held at 0 A until adopted (`unmanaged`).
Each CALL goes through the station's routing (appliance.ocpp.routing): the handlers here answer it, or observe a backend's answer.
Sessions are described as domain events and stored by the recorder (transaction ids come from SQLite
and are committed, with the gateway's outbox rows, before the answer is sent).
"""
from __future__ import annotations

import json
import logging
import sqlite3
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

import gevent

from appliance.domain import (Identified, MeterSampled, Origin, StatusChanged, TransactionStarted,
                              TransactionStopped)
from appliance.ocpp import datatransfer, unmanaged
from appliance.ocpp.errors import OcppError
from appliance.ocpp.meter_budget import MeterBudget
from appliance.ocpp.routing import Router
from appliance.ocpp.rpc import Answer, Message, RawPayload, decimal_payload, raw_elements
from appliance.ocpp.session import StationSession
from appliance.ocpp.stations import Station
from appliance.store import MeterSample
from appliance.timefmt import utc_now

if TYPE_CHECKING:
    from appliance.devices.ocpp_evse import OcppEvse
    from appliance.ocpp.server import OcppServer
    from appliance.runtime import Runtime

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


class CentralSystem:
    def __init__(self, runtime: "Runtime", server: "OcppServer"):
        self.rt = runtime
        self.server = server
        self.stations = runtime.stations
        self.router = Router(self._local_handlers())
        self.meter_budget = MeterBudget(runtime.data_dir, runtime.config.section("ocpp_server")["storage_reserve_mb"])

    # -- connection lifecycle -----------------------------------------------------------------------
    def devices_of(self, cpid: str) -> list["OcppEvse"]:
        return self.stations.devices_of(cpid)

    def attach(self, session: StationSession) -> None:
        station = self.stations.get(session.cpid)
        station.connect(session)
        session.endpoint.dispatch = lambda msg: self.router.dispatch(station, msg)
        devices = station.devices()
        if devices:
            self.rt.events.info(f"connected from {session.peer}{' over TLS' if session.tls else ''}",
                                ",".join(d.name for d in devices))
        else:
            self.stations.note_unconfigured(session.cpid, connected=True, peer=session.peer)
            log.info("%s: connected from %s; not configured, listed for adoption", session.cpid, session.peer)
        for dev in devices:
            dev.on_connect(session)
        station.init_pending = gevent.spawn_later(INIT_AFTER_SILENCE_S, self._configure, station, session)

    def detach(self, session: StationSession) -> None:
        station = self.stations.get(session.cpid)
        if not station.disconnect(session):
            return
        for dev in station.devices():
            dev.on_disconnect(session)
        self.stations.left(station)
        self.rt.lm_trigger()

    def _configure(self, station: Station, session: StationSession) -> None:
        """Smart-charging set-up after connect or boot: done by each configured connector."""
        station.init_pending = None
        if not station.devices() and station.session is session:
            unmanaged.hold(self.rt, session)   # held at 0 A until adopted
        for dev in station.devices():
            if station.session is not session:
                return
            try:
                dev.configure(session)
            except Exception:
                log.exception("%s: configuring connector %s failed", session.cpid, dev.settings["connector"])
        self.rt.lm_trigger()

    def _schedule_configure(self, station: Station) -> None:
        if station.init_pending is not None:
            station.init_pending.kill(block=False)
        station.init_pending = None
        session = station.session
        if session is not None:
            session.endpoint.defer(lambda: self._configure(station, session))

    def _first_contact(self, station: Station) -> None:
        """A reconnect without BootNotification: configure right after this first answer."""
        if station.init_pending is not None:
            self._schedule_configure(station)

    @staticmethod
    def _raw(station: Station, msg: Message) -> str | None:
        """The payload text, kept for a station behind a backend (it is relayed byte for byte)."""
        return _payload_text(msg) if station.relay is not None else None

    def _origin(self, station: Station, connector: int, device: "OcppEvse | None" = None) -> Origin:
        dev = device if device is not None else self.stations.device(station.cpid, connector)
        return Origin(dev.name if dev is not None else None, station.cpid, connector)

    # -- the local policy: answers (or observations of a backend's answer), per action ----------------
    def _local_handlers(self) -> dict[str, Callable[[Station, Message, RawPayload | None], Answer]]:
        names = ["BootNotification", "Heartbeat", "StatusNotification", "Authorize", "StartTransaction",
                 "StopTransaction", "MeterValues", "DataTransfer", "DiagnosticsStatusNotification",
                 "FirmwareStatusNotification", "SecurityEventNotification"]

        def wrap(handler: Callable[..., Answer]) -> Callable[[Station, Message, RawPayload | None], Answer]:
            return lambda station, msg, backend: _stored(handler, station, msg, backend)
        return {n: wrap(getattr(self, "on_" + n)) for n in names}

    def on_BootNotification(self, station: Station, p: dict, msg: Message, backend: RawPayload | None) -> Answer:
        info = {k: p.get(k) for k in ("chargePointVendor", "chargePointModel", "chargePointSerialNumber",
                                       "firmwareVersion")}
        station.boot, station.boot_raw = info, _payload_text(msg)
        self.rt.recorder.record(Identified(self._origin(station, 0), info["chargePointVendor"],
                                           info["chargePointModel"], info["chargePointSerialNumber"],
                                           info["firmwareVersion"], raw=station.boot_raw))
        session = station.session
        self.stations.note_unconfigured(station.cpid, vendor=info["chargePointVendor"], model=info["chargePointModel"],
                                        serial=info["chargePointSerialNumber"], connected=True,
                                        peer=session.peer if session else "?",
                                        held=False)   # a reboot may have lost our 0 A profile: installed again
        for dev in station.devices():
            dev.on_boot(info)
            self.rt.events.info(f"boot: {info['chargePointVendor']} {info['chargePointModel']} "
                                f"firmware {info['firmwareVersion'] or '?'}; installing our charging profile", dev.name)
        self._schedule_configure(station)
        return {"status": "Accepted", "currentTime": utc_now(),
                "interval": self.rt.config.section("ocpp_server")["heartbeat_interval"]}

    def on_Heartbeat(self, station: Station, p: dict, msg: Message, backend: RawPayload | None) -> Answer:
        self._first_contact(station)
        return {"currentTime": utc_now()}

    def on_StatusNotification(self, station: Station, p: dict, msg: Message, backend: RawPayload | None) -> Answer:
        self._first_contact(station)
        connector = _int(p["connectorId"])
        dev = self.stations.device(station.cpid, connector)
        if dev is not None:
            dev.on_status(p["status"], p["errorCode"], p.get("info") or p.get("vendorErrorCode") or "")
            self.rt.lm_trigger()
        elif connector == 0:
            for d in station.devices():
                d.on_station_status(p["status"], p["errorCode"])
        if station.listing is not None:
            station.listing["connectors"][str(connector)] = p["status"]
        self.rt.bus.publish(StatusChanged(self._origin(station, connector, dev), p["status"], p["errorCode"],
                                          p.get("info") or "", p.get("timestamp"), raw=self._raw(station, msg)))
        return {}

    def on_Authorize(self, station: Station, p: dict, msg: Message, backend: RawPayload | None) -> Answer:
        self._first_contact(station)
        if backend is not None:
            return backend
        return {"idTagInfo": {"status": self._id_tag_status(station, _text(p["idTag"]) or "")}}

    def on_StartTransaction(self, station: Station, p: dict, msg: Message, backend: RawPayload | None) -> Answer:
        self._first_contact(station)
        cpid = station.cpid
        connector = _int(p["connectorId"])
        meter_start = _int(p["meterStart"])
        id_tag, when = p["idTag"], _text(p["timestamp"])
        if not isinstance(id_tag, str):
            raise OcppError("TypeConstraintViolation", "idTag must be a string")
        dev = self.stations.device(cpid, connector)
        key = f"{cpid}|{connector}|{id_tag}|{when}|{meter_start}"
        started = self.rt.recorder.record(TransactionStarted(
            self._origin(station, connector, dev), id_tag, meter_start, when or "", dedup_key=key,
            raw=self._raw(station, msg)))
        tx_id = started.tx_id
        assert tx_id is not None
        if not started.repeated:
            if dev is not None:
                self.rt.events.info(f"transaction {tx_id} started, idTag {id_tag[:40]}, meter {meter_start} Wh", dev.name)
            else:
                log.info("%s: connector %s: transaction %s started (unconfigured station)", cpid, connector, tx_id)
        else:
            log.info("%s: repeated StartTransaction; answered with the same transaction %s", cpid, tx_id)
        if dev is not None:
            dev.on_transaction_start(tx_id, id_tag, meter_start)
            if station.session is not None:
                station.session.endpoint.defer(self.rt.lm_trigger)
        return {"transactionId": tx_id, "idTagInfo": {"status": self._id_tag_status(station, id_tag)}}

    def on_StopTransaction(self, station: Station, p: dict, msg: Message, backend: RawPayload | None) -> Answer:
        self._first_contact(station)
        tx_id, meter_stop = _int(p["transactionId"], any_size=True), _int(p["meterStop"])
        reason = _text(p.get("reason")) or "Local"
        samples = self.meter_budget.allow(station.cpid, samples_from(p.get("transactionData") or []),
                                          rate_limited=False)
        tx = self.rt.store.get_transaction(tx_id)
        if tx is None or tx["source"] != "ocpp" or tx["charge_box_id"] != station.cpid:
            self._orphan_stop(station, tx_id, meter_stop, _text(p["timestamp"]) or "", p, samples,
                              "unknown transaction" if tx is None else "started by another station")
        else:
            stopped = self.rt.recorder.record(TransactionStopped(
                Origin(tx["device"], station.cpid, tx["connector"]), tx_id, meter_stop, _text(p["timestamp"]) or "",
                reason=reason, id_tag=_text(p.get("idTag")), samples=samples, raw=self._raw(station, msg)))
            if stopped.outcome == "stopped":
                dev = self.stations.device(station.cpid, tx["connector"])
                if dev is not None and dev.name == tx["device"]:
                    dev.on_transaction_stop(tx_id, meter_stop)
                    self.rt.events.info(f"transaction {tx_id} stopped ({reason}), meter {meter_stop} Wh", dev.name)
                if station.session is not None:
                    station.session.endpoint.defer(self.rt.lm_trigger)
        answer: dict[str, Any] = {}
        if p.get("idTag"):
            answer["idTagInfo"] = {"status": self._id_tag_status(station, p["idTag"])}
        return answer

    def _orphan_stop(self, station: Station, tx_id: int, meter_stop: int, when: str, p: dict,
                     samples: list[MeterSample], why: str) -> None:
        """A Stop we cannot apply is still acknowledged (the station would resend it forever) and
        kept apart: it never touches another station's transaction or our id sequence."""
        if self.rt.store.add_orphan_stop(str(tx_id), charge_box_id=station.cpid, meter_stop=meter_stop,
                                         stop_time=when, reason=_text(p.get("reason")), why=why, samples=samples):
            self.rt.events.warning(f"StopTransaction for transaction {str(tx_id)[:20]}: {why}; "
                                   "kept apart as an orphan stop", station.cpid)

    def on_MeterValues(self, station: Station, p: dict, msg: Message, backend: RawPayload | None) -> Answer:
        self._first_contact(station)
        connector = _int(p["connectorId"])
        tx_id = _int(p["transactionId"]) if p.get("transactionId") is not None else None
        dev = self.stations.device(station.cpid, connector)
        samples = samples_from(p.get("meterValue") or [])
        kept = self.meter_budget.allow(station.cpid, samples)
        if kept or not samples:
            self.rt.recorder.record(MeterSampled(self._origin(station, connector, dev), tx_id, kept,
                                                 raw=self._raw(station, msg)))
        if dev is not None:
            dev.on_meter_values(samples)
        return {}

    def on_DataTransfer(self, station: Station, p: dict, msg: Message, backend: RawPayload | None) -> Answer:
        self._first_contact(station)
        if backend is not None:
            return backend
        accept = datatransfer.accepted_vendors(self.rt.config.section("ocpp_server")["data_transfer_accept"])
        return datatransfer.answer(station.cpid, p, accept, self.rt.events)

    def on_DiagnosticsStatusNotification(self, station: Station, p: dict, msg: Message,
                                         backend: RawPayload | None) -> Answer:
        return {}

    def on_FirmwareStatusNotification(self, station: Station, p: dict, msg: Message,
                                      backend: RawPayload | None) -> Answer:
        return {}

    def on_SecurityEventNotification(self, station: Station, p: dict, msg: Message,
                                     backend: RawPayload | None) -> Answer:
        log.info("%s: security event %s", station.cpid, p.get("type"))
        return {}

    def _id_tag_status(self, station: Station, id_tag: str) -> str:
        """A station behind a backend: what the backend said of the tag (or offline_auth); else Accepted."""
        return station.relay.id_tag_status(station, id_tag) if station.relay is not None else "Accepted"


def _stored(handler: Callable[..., Answer], station: Station, msg: Message, backend: RawPayload | None) -> Answer:
    try:
        return handler(station, decimal_payload(msg), msg, backend)
    except sqlite3.Error as e:   # disk full, damaged file: say so in one line; the station sends it again
        log.error("%s: %s could not be stored (%s); answered InternalError", station.cpid, msg.action, e)
        raise OcppError("InternalError", f"{msg.action} could not be stored; try again later") from None


def _payload_text(msg: Message) -> str:
    """The CALL's payload exactly as the station wrote it."""
    return raw_elements(msg.raw)[3]


__all__ = ["CentralSystem", "OcppError", "samples_from"]
