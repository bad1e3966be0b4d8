"""The OCPP gateway: wallboxes connected to the appliance appear at their billing backend
(charging-manager.md §4.1, §4.3-4.6, §6.2).

The appliance answers its wallboxes itself and stands in for them at the backend:
- Authorize and DataTransfer are relayed (the backend decides while it answers; offline_auth else);
- Boot, Status, firmware/diagnostics status are mirrored live; Start/StopTransaction and MeterValues
  in a transaction are queued durably (the outbox row is committed with the local record) and sent in
  order, each once;
- the backend's calls go to the wallbox byte for byte through its Station, except charging profiles,
  which the Station records (the box gets min(backend limit, local share)), and configuration keys the
  appliance relies on, which are refused.
Connectors sharing URL + id share one connection (BackendLink); their connector ids at the backend
are `gateway_connector`, or 1, 2, ... per link in file order.
"""
from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import gevent

from appliance.domain import DomainEvent, MeterSampled, TransactionStarted, TransactionStopped
from appliance.gateway.link import CONNECTED, BackendLink, Member
from appliance.gateway.outbox import AuthCache, Outbox
from appliance.ocpp import rawjson
from appliance.ocpp.errors import OcppError
from appliance.ocpp.routing import LOCAL_ONLY, Route, RouteTable
from appliance.ocpp.rpc import Answer, Message, RawPayload, raw_elements
from appliance.store import OutboxRow

if TYPE_CHECKING:
    from appliance.ocpp.stations import Station
    from appliance.runtime import Runtime

RELAYED = RouteTable({
    "Authorize": Route.RELAY, "DataTransfer": Route.RELAY,
    "BootNotification": Route.MIRROR, "StatusNotification": Route.MIRROR, "StartTransaction": Route.MIRROR,
    "StopTransaction": Route.MIRROR, "MeterValues": Route.MIRROR, "DiagnosticsStatusNotification": Route.MIRROR,
    "FirmwareStatusNotification": Route.MIRROR,
})
QUEUED = {"StartTransaction", "StopTransaction"}   # and MeterValues within a transaction
# keys the appliance relies on for load management and its own link to the wallbox
RESERVED_KEYS = frozenset({
    "AuthorizationKey", "SecurityProfile", "HeartbeatInterval", "MeterValueSampleInterval", "MeterValuesSampledData",
    "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "WebSocketPingInterval",
    "ConnectionTimeOut", "CentralSystemURL",
})
STATUS_CHECK_S = 2.0


def link_key(url: str, gateway_id: str) -> str:
    """The backend URL with the id appended as the last path segment (charging-manager.md §4.1)."""
    return url.rstrip("/") + "/" + gateway_id


class Gateway:
    def __init__(self, runtime: "Runtime"):
        self.rt = runtime
        self.outbox = Outbox(runtime.store, self._event)
        self.auth = AuthCache(runtime.store)
        self.links: dict[str, BackendLink] = {}
        self.members: dict[str, Member] = {}          # device name -> its place behind a link
        self._plan: dict[str, tuple[str, list[Member]]] = {}
        self._key_of: dict[str, str] = {}                  # device name -> its link's key
        self._station_keys: dict[str, list[str]] = {}      # chargeBoxId -> keys of its links
        self._station_status = ""
        self._watcher: gevent.Greenlet | None = None
        runtime.recorder.outbox_rules.append(self.outbox_rows)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.rt.on_reload.append(self.reload)
        self.reload()
        self._watcher = gevent.spawn(self._watch_station_status)

    def stop(self) -> None:
        if self.reload in self.rt.on_reload:
            self.rt.on_reload.remove(self.reload)
        if self._watcher is not None:
            self._watcher.kill()
        for link in list(self.links.values()):
            link.stop()
        self.links.clear()

    def reload(self) -> None:
        """Follow the device list: links whose settings changed are restarted, stations routed."""
        plan = self._planned()
        for key in [k for k in self.links if self._plan.get(k) != plan.get(k)]:
            self.links.pop(key).stop()
        self._plan = plan
        self.members = {m.device: m for _, members in plan.values() for m in members}
        self._key_of = {m.device: key for key, (_, members) in plan.items() for m in members}
        self._station_keys = {}
        for key, (_, members) in plan.items():
            for m in members:
                keys = self._station_keys.setdefault(m.station, [])
                if key not in keys:
                    keys.append(key)
        for key, (password, members) in plan.items():
            if key not in self.links:
                link = self._make_link(key, password, members)
                self.links[key] = link
                link.start()
        relayed = {m.station for m in self.members.values()}
        for station in self.rt.stations:
            if station.relay is self and station.cpid not in relayed:
                station.routes, station.relay = LOCAL_ONLY, None
        for cpid in relayed:
            station = self.rt.stations.get(cpid)
            station.routes, station.relay = RELAYED, self

    def _planned(self) -> dict[str, tuple[str, list[Member]]]:
        plan: dict[str, tuple[str, list[Member]]] = {}
        for name, s in self.rt.config.devices().items():
            if s["type"] != "ocpp16" or not s["gateway_url"] or not s["gateway_id"]:
                continue
            key = link_key(s["gateway_url"], s["gateway_id"])
            password, members = plan.setdefault(key, (s["gateway_password"], []))
            taken = {m.backend_connector for m in members}
            connector = s["gateway_connector"] or next(c for c in range(1, 100) if c not in taken)
            members.append(Member(name, s["address"], int(s["connector"]), connector))
        return plan

    def _make_link(self, key: str, password: str, members: list[Member]) -> BackendLink:
        def ssl_context() -> Any:
            if not key.startswith("wss://"):
                return None
            from appliance.certs.tls import client_context

            return client_context(self.rt.data_dir, self.rt.config)
        link = BackendLink(key, key, password, members, self.outbox,
                           boot_payload=lambda: self._boot_payload(members[0].station),
                           statuses=lambda: self._statuses(members), from_backend=self._from_backend,
                           ssl_context=ssl_context, on_event=self._event)
        return link

    def _event(self, level: str, message: str) -> None:
        getattr(self.rt.events, level)(message)

    # -- what a link sends after its BootNotification ---------------------------------------------------
    def _boot_payload(self, cpid: str) -> str | None:
        station = self.rt.stations.get(cpid)
        if station.boot_raw is None:   # booted before a restart of the appliance: its stored payload
            station.boot_raw = self.rt.store.get_state(station.state_key, "boot_raw")
        return station.boot_raw

    def _statuses(self, members: list[Member]) -> list[tuple[int, str]]:
        out = []
        if self.rt.config.section("gateway")["status_connector0"]:
            out.append((0, self._own_status_payload(self._own_status())))
        for m in members:
            dev = self.rt.stations.device(m.station, m.connector)
            if dev is not None and dev.ocpp_status:
                out.append((m.backend_connector, self._status_payload(
                    m.backend_connector, dev.ocpp_status, dev.error_code, dev.info)))
        return out

    @staticmethod
    def _status_payload(connector: int, status: str, error_code: str = "NoError", info: str = "") -> str:
        payload: dict[str, Any] = {"connectorId": connector, "errorCode": error_code, "status": status}
        if info:
            payload["info"] = info[:50]
        return json.dumps(payload, separators=(",", ":"))

    # -- status as connector 0 (charging-manager.md §4.6) ---------------------------------------------
    def _own_status(self) -> str:
        lm = self.rt.lm_status
        if self.rt.config.section("load_management")["mode"] == "monitor":
            return "Unavailable"
        if lm.get("meter_faults") or any(x > 0 for x in lm.get("overdraft_a") or []):
            return "Faulted"
        return "Available"

    def _watch_station_status(self) -> None:
        while True:
            gevent.sleep(STATUS_CHECK_S)
            if not self.rt.config.section("gateway")["status_connector0"]:
                continue
            status = self._own_status()
            if status != self._station_status:
                self._station_status = status
                for link in list(self.links.values()):
                    link.send_live("StatusNotification", self._own_status_payload(status))

    def _own_status_payload(self, status: str) -> str:
        if status == "Faulted":
            return self._status_payload(0, status, "OtherError", "grid meter failure or overdraft")
        return self._status_payload(0, status)

    # -- outbox rows, written with the local record (the recorder's rule) ----------------------------------
    def outbox_rows(self, event: DomainEvent) -> list[OutboxRow]:
        member = self.members.get(event.origin.device or "")
        raw = getattr(event, "raw", None)
        if member is None or raw is None:
            return []
        key = self._key_of[member.device]
        if isinstance(event, TransactionStarted):
            return [OutboxRow(key, "start", "StartTransaction", raw, member.backend_connector, uuid.uuid4().hex)]
        if isinstance(event, TransactionStopped):
            return [OutboxRow(key, "stop", "StopTransaction", raw, member.backend_connector, uuid.uuid4().hex,
                              tx_id=event.tx_id, dedup=f"stop:{event.tx_id}")]
        if isinstance(event, MeterSampled) and event.tx_id is not None:
            return [OutboxRow(key, "meter", "MeterValues", raw, member.backend_connector, uuid.uuid4().hex,
                              tx_id=event.tx_id, dedup=f"meter:{event.tx_id}:{hash_text(raw)}")]
        return []

    # -- the Relay protocol (appliance.ocpp.routing) --------------------------------------------------
    def _links_of(self, station: "Station") -> list[BackendLink]:
        return [self.links[k] for k in self._station_keys.get(station.cpid, ()) if k in self.links]

    def _member(self, station: "Station", connector: int) -> Member | None:
        for m in self.members.values():
            if m.station == station.cpid and m.connector == connector:
                return m
        return None

    def relay(self, station: "Station", msg: Message) -> RawPayload | None:
        links = self._links_of(station)
        if not links:
            return None
        payload = raw_elements(msg.raw)[3]
        answer = links[0].relay(msg.action or "", payload)
        if answer is not None and msg.action == "Authorize":
            tag = rawjson.value(payload, "idTag")
            self.auth.remember(links[0].key, str(tag), rawjson.value(answer, "idTagInfo"))
        return answer

    def mirror(self, station: "Station", msg: Message, answer: Answer) -> None:
        action = msg.action or ""
        payload = raw_elements(msg.raw)[3]
        if action in QUEUED or (action == "MeterValues" and rawjson.value(payload, "transactionId") is not None):
            for link in self._links_of(station):
                link.wake()                 # its outbox row was committed with the local record
            return
        connector = rawjson.value(payload, "connectorId")
        if isinstance(connector, int) and connector > 0:
            member = self._member(station, connector)
            if member is None:
                return                      # a connector nobody relays
            target = self.links.get(self._key_of[member.device])
            if target is not None:
                target.send_live(action, rawjson.replace(payload, {"connectorId": member.backend_connector}))
            return
        if action == "StatusNotification" and self.rt.config.section("gateway")["status_connector0"]:
            return                          # connector 0 is the appliance's own status then
        for link in self._links_of(station):
            if action == "BootNotification" and link.state != CONNECTED:
                link.wake()                 # a link waiting for the wallbox's boot payload goes on
            else:
                link.send_live(action, payload)

    def id_tag_status(self, station: "Station", id_tag: str) -> str:
        links = self._links_of(station)
        if not links:
            return "Accepted"
        link = links[0]
        cached = self.auth.status(link.key, id_tag)
        if link.state == CONNECTED and link.responsive:
            return cached or "Accepted"    # the backend's answer to the transaction has the last word
        mode = self.rt.config.section("gateway")["offline_auth"]
        if mode == "all":
            return "Accepted"
        if mode == "none":
            return "Invalid"
        return "Accepted" if cached == "Accepted" else "Invalid"

    # -- calls from a backend -------------------------------------------------------------------------
    def _from_backend(self, link: BackendLink, msg: Message) -> RawPayload:
        action = msg.action or ""
        payload = raw_elements(msg.raw)[3]
        connector = rawjson.value(payload, "connectorId")
        member = None
        if isinstance(connector, int) and connector > 0:
            member = next((m for m in link.members if m.backend_connector == connector), None)
            if member is None:
                raise OcppError("PropertyConstraintViolation", f"no connector {connector} here")
        values: dict[str, object] = {}
        if member is not None:
            values["connectorId"] = member.connector
        if action == "RemoteStopTransaction":
            local = self.outbox.local_tx(link.key, int(str(rawjson.value(payload, "transactionId"))))
            if local is None:
                return RawPayload('{"status":"Rejected"}')
            values["transactionId"] = local
        if action == "ChangeConfiguration" and rawjson.value(payload, "key") in RESERVED_KEYS:
            self._event("info", f"backend {link.key}: ChangeConfiguration of {rawjson.value(payload, 'key')} "
                                "refused (the appliance relies on it)")
            return RawPayload('{"status":"Rejected"}')
        station = self.rt.stations.get(member.station if member is not None else link.members[0].station)
        answer = station.inject(action, rawjson.replace(payload, values) if values else payload)
        if member is not None and action == "GetCompositeSchedule" and rawjson.value(answer, "connectorId"):
            answer = RawPayload(rawjson.replace(answer, {"connectorId": member.backend_connector}))
        return answer

    # -- for the page and the console -------------------------------------------------------------------
    def device_status(self, name: str) -> dict[str, Any] | None:
        member = self.members.get(name)
        if member is None:
            return None
        link = self.links.get(self._key_of[member.device])
        return link.status() if link is not None else None


def hash_text(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def start(runtime: "Runtime") -> Gateway:
    """STARTERS entry for `ampgate run`."""
    gateway = Gateway(runtime)
    runtime.gateway = gateway
    gateway.start()
    return gateway
