"""One `Station` per chargeBoxId, in one registry: its live session, what it told us at boot, the
configuration keys read on this connection, its adoption listing, how its CALLs are routed, and what
a backend asked of it. Connectors map to devices through the configuration (`Stations.devices_of`).

Calls from a backend enter through `Station.inject`: charging profiles are recorded, never forwarded,
and the box gets min(backend limit, local share) (appliance.gateway.profiles.effective_limit);
everything else goes to the wallbox byte for byte and its answer comes back the same way.
"""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Iterator, MutableMapping, cast

import gevent

from appliance.gateway.profiles import BackendProfiles, effective_limit
from appliance.ocpp.errors import ERROR_CODES, CallError, CallFailed, OcppError
from appliance.ocpp.routing import LOCAL_ONLY, Relay, RouteTable
from appliance.ocpp.rpc import RawPayload

if TYPE_CHECKING:
    from appliance.devices.base import Device
    from appliance.devices.ocpp_evse import OcppEvse
    from appliance.ocpp.session import StationSession
    from appliance.store import Store

PROFILE_ACTIONS = frozenset({"SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule"})
# Stations nobody configured: listed while connected (at most LISTED_MAX), and for LISTED_KEEP_S after
# they left; then forgotten, so made-up ids cannot grow memory or /api/status without bound.
LISTED_MAX = 500
LISTED_KEEP_S = 600.0
log = logging.getLogger("ampgate.ocpp")


class Station:
    def __init__(self, cpid: str, registry: "Stations"):
        self.cpid = cpid
        self.registry = registry
        self.session: StationSession | None = None
        self.boot: dict[str, Any] | None = None     # vendor, model, serial, firmware as it said at boot
        self.boot_raw: str | None = None            # that BootNotification payload, byte for byte
        self.keys: dict[str, Any] | None = None     # configuration keys read on this connection
        self.cleared = False                        # station-wide stale profiles cleared on this connection
        self.init_pending: gevent.Greenlet | None = None
        self._listing: dict[str, Any] | None = None  # shown for adoption while nobody configured it
        self.routes: RouteTable = LOCAL_ONLY
        self.relay: Relay | None = None
        state = registry.store.get_state(self.state_key, "backend_profiles") if registry.store else None
        self.profiles = BackendProfiles.from_json(state)

    @property
    def listing(self) -> dict[str, Any] | None:
        return self._listing

    @listing.setter
    def listing(self, value: dict[str, Any] | None) -> None:
        if (value is None) != (self._listing is None):
            self.registry.listed += 1 if value is not None else -1
        self._listing = value

    @property
    def state_key(self) -> str:
        return f"station:{self.cpid}"

    # -- connection ---------------------------------------------------------------------------------
    def connect(self, session: "StationSession") -> None:
        self.session = session
        self.registry.departed.pop(self.cpid, None)
        self.keys = None
        self.cleared = False

    def disconnect(self, session: "StationSession") -> bool:
        """True when `session` was the live one (a replaced connection's end changes nothing)."""
        if self.session is not session:
            return False
        self.session = None
        if self.init_pending is not None:
            self.init_pending.kill(block=False)
            self.init_pending = None
        return True

    def devices(self) -> list["OcppEvse"]:
        return self.registry.devices_of(self.cpid)

    # -- calls from a backend -------------------------------------------------------------------------
    def inject(self, action: str, payload: str) -> RawPayload:
        """A backend's CALL for this station (connector ids already mapped to ours)."""
        if action in PROFILE_ACTIONS:
            return RawPayload(json.dumps(self._profile_call(action, json.loads(payload)), separators=(",", ":")))
        session = self.session
        if session is None:
            raise OcppError("GenericError", f"wallbox {self.cpid} is not connected to the appliance")
        try:
            return session.endpoint.call_raw(action, payload)
        except CallError as e:
            raise OcppError(e.code if e.code in ERROR_CODES else "GenericError", e.description) from None
        except CallFailed as e:
            raise OcppError("GenericError", f"wallbox {self.cpid}: {e}") from None

    def _profile_call(self, action: str, p: dict[str, Any]) -> dict[str, Any]:
        voltage = self.registry.voltage()
        if action == "GetCompositeSchedule":
            return self.profiles.composite(int(p["connectorId"]), int(p["duration"]), voltage,
                                           p.get("chargingRateUnit"))
        if action == "SetChargingProfile":
            self.profiles.set(int(p["connectorId"]), p["csChargingProfiles"])
            status = "Accepted"
        else:
            status = "Accepted" if self.profiles.clear(p) else "Unknown"
        if self.registry.store is not None:
            self.registry.store.put_state(self.state_key, "backend_profiles", self.profiles.to_json())
        self.registry.limits_changed()
        return {"status": status}

    def backend_limit(self, connector: int) -> float | None:
        return self.profiles.limit(connector, self.registry.voltage())

    def effective_limit(self, connector: int, local_share: float) -> float:
        return effective_limit(local_share, self.backend_limit(connector))


class Stations:
    """The registry. `devices` is the runtime's live device dict (connectors are found there)."""

    def __init__(self, store: "Store | None", devices: dict[str, "Device"], voltage: Callable[[], float],
                 limits_changed: Callable[[], None]):
        self.store = store
        self._devices = devices
        self.voltage = voltage
        self.limits_changed = limits_changed
        self._stations: dict[str, Station] = {}
        self.unconfigured = Listings(self)
        self.listed = 0                                        # stations with a listing
        self.departed: OrderedDict[str, float] = OrderedDict()  # unconfigured, gone: cpid -> when

    def get(self, cpid: str) -> Station:
        station = self._stations.get(cpid)
        if station is None:
            station = self._stations[cpid] = Station(cpid, self)
        return station

    def find(self, cpid: str) -> Station | None:
        return self._stations.get(cpid)

    def __iter__(self) -> Iterator[Station]:
        return iter(list(self._stations.values()))

    def devices_of(self, cpid: str) -> list["OcppEvse"]:
        return cast("list[OcppEvse]", [d for d in self._devices.values()
                                       if d.settings["type"] == "ocpp16" and d.settings["address"] == cpid])

    def device(self, cpid: str, connector: int) -> "OcppEvse | None":
        for d in self.devices_of(cpid):
            if d.settings["connector"] == connector:
                return d
        return None

    def session(self, cpid: str) -> "StationSession | None":
        station = self._stations.get(cpid)
        return station.session if station is not None else None

    def note_unconfigured(self, cpid: str, **info: Any) -> None:
        """Keep what we know of a station nobody configured, for the adoption list."""
        station = self.get(cpid)
        if self.devices_of(cpid):
            station.listing = None
            return
        if station.listing is None:
            self.forget_departed()
            if self.listed >= LISTED_MAX and not self._forget_oldest():
                log.info("%s: not listed for adoption: %d unknown stations are listed already", cpid, LISTED_MAX)
                return
            station.listing = {"connectors": {}}
        station.listing.update(info, last_seen=time.time())

    def left(self, station: Station) -> None:
        """A station's live connection ended. One nobody configured is forgotten LISTED_KEEP_S later."""
        if station.listing is not None:
            station.listing["connected"] = False
        if not station.devices():
            self.departed[station.cpid] = time.monotonic()
            self.departed.move_to_end(station.cpid)
        self.forget_departed()

    def forget_departed(self) -> None:
        limit = time.monotonic() - LISTED_KEEP_S
        while self.departed and next(iter(self.departed.values())) < limit:
            self._forget(self.departed.popitem(last=False)[0])

    def _forget_oldest(self) -> bool:
        while self.departed:
            if self._forget(self.departed.popitem(last=False)[0]):
                return True
        return False

    def _forget(self, cpid: str) -> bool:
        """Drop a departed station that is still unconfigured and has no backend route; what a
        backend set for it is in the database and comes back with it."""
        station = self._stations.get(cpid)
        if station is None or station.session is not None or self.devices_of(cpid) \
                or station.routes is not LOCAL_ONLY or station.relay is not None:
            return False
        station.listing = None
        del self._stations[cpid]
        return True


class Listings(MutableMapping[str, dict[str, Any]]):
    """chargeBoxId -> adoption listing, for every station that has one (the page's "unconfigured")."""

    def __init__(self, stations: Stations):
        self._stations = stations

    def __getitem__(self, cpid: str) -> dict[str, Any]:
        station = self._stations.find(cpid)
        if station is None or station.listing is None:
            raise KeyError(cpid)
        return station.listing

    def __setitem__(self, cpid: str, listing: dict[str, Any]) -> None:
        self._stations.get(cpid).listing = listing

    def __delitem__(self, cpid: str) -> None:
        station = self._stations.find(cpid)
        if station is None or station.listing is None:
            raise KeyError(cpid)
        station.listing = None

    def __iter__(self) -> Iterator[str]:
        return iter([s.cpid for s in self._stations if s.listing is not None])

    def __len__(self) -> int:
        return self._stations.listed
