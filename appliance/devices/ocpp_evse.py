"""An OCPP 1.6J wallbox connector under load management (smart charging, ocpp16.md §8).

We own exactly one profile per connector: a TxDefaultProfile with a fixed id and stack level (1, or
0 when the station's ChargeProfileMaxStackLevel is 0),
Absolute, starting a little in the past, one period. Its limit 0 means "do not charge until the
manager allows it". On every connection or boot we clear stale profiles and install it; until the
station confirmed it, load management counts the connector at its maximum.
"""
from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import gevent
from gevent.lock import Semaphore

from appliance.devices.base import (AVAILABLE, CHARGING, CONNECTED, ERROR, OFFLINE, PAUSED, Device,
                                    DeviceStatus, left_at)
from appliance.lm.model import OVERDRAW_AFTER_S, Evse
from appliance.ocpp.actions import CURRENT_IMPORT, CURRENT_OFFERED, ENERGY_REGISTER, POWER_IMPORT, Status
from appliance.ocpp.errors import CallFailed
from appliance.ocpp.stations import Station
from appliance.store import MeterSample
from appliance.timefmt import iso_z

if TYPE_CHECKING:
    from appliance.runtime import Runtime

log = logging.getLogger("ampgate.ocpp")

PROFILE_ID_BASE = 9100          # our chargingProfileId = base + connectorId: an update replaces it
STACK_LEVEL = 1
MAX_STACK_LEVELS_CLEARED = 10   # stale TxDefaultProfiles are cleared level by level up to this
START_IN_PAST = timedelta(minutes=1)   # a replacement starting in the future would leave a gap
OFFER_MARGIN_A = 0.5            # offering more than our limit (Current.Offered) for OVERDRAW_AFTER_S
RETRY_CONFIGURE_S = 30.0        # a failed profile install at connect is tried again after this long
SMART_KEYS = ["ChargingScheduleAllowedChargingRateUnit", "ChargeProfileMaxStackLevel", "SupportedFeatureProfiles",
              "ConnectorPhaseRotation", "MeterValuesSampledData"]
DEMAND_STATES = {Status.PREPARING, Status.CHARGING, Status.SUSPENDED_EV, Status.SUSPENDED_EVSE}
_PHASE_INDEX = {"L1": 0, "L2": 1, "L3": 2, "L1-N": 0, "L2-N": 1, "L3-N": 2}


def floor_01(value: float) -> float:
    """Round down to 0.1 A (never up: rounding must not exceed the allocation)."""
    return math.floor(value * 10 + 1e-9) / 10


def tx_default_profile(connector: int, limit: float, unit: str, phases: int,
                       stack_level: int = STACK_LEVEL) -> dict[str, Any]:
    """SetChargingProfile for our one profile on `connector` (0 = every connector without its own)."""
    start = datetime.now(timezone.utc) - START_IN_PAST
    return {
        "connectorId": connector,
        "csChargingProfiles": {
            "chargingProfileId": PROFILE_ID_BASE + connector,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": unit,
                "startSchedule": iso_z(start, "seconds"),
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": float(limit), "numberPhases": phases}],
            },
        },
    }


class OcppEvse(Device):
    kind = "ocpp16"

    def __init__(self, name: str, settings: dict[str, Any], runtime: "Runtime"):
        super().__init__(name, settings, runtime)
        self.cpid = settings["address"]
        self.connector = settings["connector"]
        self.session: Any = None
        self.ocpp_status: str | None = None
        self.error_code = "NoError"
        self.info = ""
        self.currents: tuple[float, float, float] | None = None
        self.offered: float | None = None
        self.power_w: float | None = None
        self.energy_reg: float | None = None
        self.configured = False               # our baseline profile confirmed on this connection
        self.rebooted = False                 # booted since: it may have lost every profile
        self.problem = ""                     # why it is not controllable, for the page
        self.overoffer_since: float | None = None
        self.plugged_at: float | None = None  # monotonic, when the car was plugged in (Preparing)   # when Current.Offered first exceeded our limit
        self._configuring = False
        self._configure_at = -math.inf
        self._send_lock = Semaphore()         # configure, apply and deactivate never interleave
        self._bad_reading_logged = False
        # what the station holds survives our restarts: it keeps profiles while we are away
        self.confirmed_limit: float | None = runtime.store.get_state(name, "confirmed_limit")
        # an increase we sent but never saw confirmed: the station may hold it (kept across restarts)
        self.may_hold: float | None = runtime.store.get_state(name, "may_hold")
        tx = runtime.store.active_transaction(self.cpid, self.connector)
        self.tx_id = tx["id"] if tx else None
        self.id_tag = tx["id_tag"] if tx else None
        self.meter_start = tx["meter_start"] if tx else None

    @property
    def station(self) -> Station:
        return self.runtime.stations.get(self.cpid)

    def start(self) -> None:
        """A device added or edited while its station is connected takes over the live session."""
        station = self.station
        station.listing = None   # adopted
        session = station.session
        if session is not None:
            self.on_connect(session)
            gevent.spawn(self._adopt, session)

    def stop(self) -> None:
        """Removed or replaced: a station still connected with nothing else configured for it is
        listed for adoption again (a replacement takes it straight back in start())."""
        session = self.session
        station = self.station
        if [d for d in station.devices() if d is not self]:
            return
        from appliance.ocpp import unmanaged   # (it builds on this module)

        # listed with what we last knew of its car, also while it is away: a station that comes back
        # still charging is counted until it is held at 0 A (unless it is adopted again meanwhile)
        connected = session is not None and station.session is session
        station.listing = {"connectors": {str(self.connector): self.ocpp_status}, "connected": connected,
                           "peer": session.peer if session is not None else "", "last_seen": time.time(),
                           "held": False}
        if connected:
            gevent.spawn(unmanaged.hold, self.runtime, session, {self.connector})

    def _adopt(self, session: Any) -> None:
        self.configure(session)
        for what in ("StatusNotification", "MeterValues"):   # we missed what the station said before
            try:
                session.call("TriggerMessage", {"requestedMessage": what, "connectorId": self.connector})
            except CallFailed as e:
                log.info("%s: TriggerMessage %s failed: %s", self.cpid, what, e)
        self.runtime.lm_trigger()

    # -- events from the central system ------------------------------------------------------------
    def on_connect(self, session: Any) -> None:
        self.session = session
        self.currents = None   # readings from before the gap are history: wait for fresh ones
        self.configured = False
        self.problem = "connected; installing our charging profile"

    def on_disconnect(self, session: Any) -> None:
        if self.session is session:
            self.session = None
            self.configured = False
            self.problem = "offline"
            self.runtime.events.warning("offline; counted at its last accepted limit "
                                        f"({self._held_limit():g} A) until it is back", self.name)

    def on_boot(self, info: dict[str, Any]) -> None:
        self.configured = False   # a rebooted station may have lost or kept profiles: we re-install
        self.rebooted = True
        self.problem = "booted; installing our charging profile"

    def on_status(self, status: str, error_code: str, info: str) -> None:
        if status != self.ocpp_status:
            self.runtime.events.info(f"status {status}" + (f" ({error_code})" if error_code != "NoError" else ""),
                                     self.name)
        self.ocpp_status, self.error_code, self.info = status, error_code, info
        # the plug-in time, for first-come-first-served: a car is plugged in from Preparing (or any
        # later state) until the connector is Available again
        if status == Status.AVAILABLE:
            self.plugged_at = None
        elif status in DEMAND_STATES and self.plugged_at is None:
            self.plugged_at = time.monotonic()
        if status in (Status.AVAILABLE, Status.FINISHING, Status.UNAVAILABLE, Status.FAULTED):
            self.currents = (0.0, 0.0, 0.0)   # nothing flows in these states
            self.power_w = 0.0

    def on_station_status(self, status: str, error_code: str) -> None:
        if status == Status.FAULTED:
            self.error_code = error_code

    def on_transaction_start(self, tx_id: int, id_tag: str, meter_start: int) -> None:
        self.tx_id, self.id_tag, self.meter_start = tx_id, id_tag, meter_start

    def on_transaction_stop(self, tx_id: int, meter_stop: int) -> None:
        if tx_id == self.tx_id:
            self.tx_id = self.id_tag = self.meter_start = None
            self.energy_reg = meter_stop
            # no more MeterValues will say so: a stale reading would count as load (or overdraft)
            self.currents = (0.0, 0.0, 0.0)
            self.power_w = 0.0

    def _plausible(self, s: MeterSample) -> float | None:
        """A reading as a number we may use, or None (signed data, text, NaN, absurd values)."""
        try:
            value = float(s.value)
        except ValueError:
            return None                        # signed data and the like: stored, not read
        ceiling = 2 * float(self.settings["max_current"]) if s.measurand in (CURRENT_IMPORT, CURRENT_OFFERED) else 1e9
        if not math.isfinite(value) or not -0.5 <= value <= ceiling:
            if not self._bad_reading_logged:
                self._bad_reading_logged = True
                self.runtime.events.warning(f"ignoring implausible {s.measurand} reading {s.value!r}", self.name)
            return None
        return max(0.0, value)

    def on_meter_values(self, samples: list[MeterSample]) -> None:
        currents: list[float | None] = [None, None, None]
        for s in samples:
            value = self._plausible(s)
            if value is None:
                continue
            if s.measurand == CURRENT_IMPORT:
                if s.phase in _PHASE_INDEX:
                    currents[_PHASE_INDEX[s.phase]] = value
                elif s.phase is None:
                    currents = [value] * 3 if self._phases() == 3 else [value, 0.0, 0.0]
            elif s.measurand == CURRENT_OFFERED:
                self.offered = value
            elif s.measurand == POWER_IMPORT:
                self.power_w = value * (1000 if (s.unit or "W") == "kW" else 1)
            elif s.measurand == ENERGY_REGISTER and (s.format or "Raw") == "Raw":
                self.energy_reg = value * (1000 if (s.unit or "Wh") == "kWh" else 1)
        if any(c is not None for c in currents):
            self.currents = tuple(c or 0.0 for c in currents)   # type: ignore[assignment]
        self._check_offered()

    # -- smart charging ---------------------------------------------------------------------------
    def configure(self, session: Any) -> None:
        """After connect/boot: read keys, install our profile, then clear stale ones (or apply
        the deactivation mode). Our profile goes first: clearing first would leave the station
        without any limit for a moment. Command nothing in monitor mode."""
        if self._configuring:
            return
        self._configuring, self._configure_at = True, time.monotonic()
        try:
            self._configure(session)
        finally:
            self._configuring = False

    def reactivate(self) -> None:
        """Back under load management (monitor mode ended): install our profile again."""
        if self.session is not None:
            self.configure(self.session)

    def _configure(self, session: Any) -> None:
        lm = self.runtime.config.section("load_management")
        if lm["mode"] == "monitor":
            self.problem = "monitor mode: not commanded"
            return
        with self._send_lock:
            self._read_keys(session)
        if not self.settings["active"]:
            with self._send_lock:
                self._clear_stale(session)
            self.deactivate(lm["on_deactivate"])
            return
        limit = 0.0 if self.confirmed_limit is None or self.rebooted else self.confirmed_limit
        with self._send_lock:
            installed = self._set_profile(session, limit)
            self._clear_stale(session)
        if installed:
            self.configured = True
            self.rebooted = False
            self.problem = ""
            self.runtime.events.info(f"charging profile installed at {limit:g} A", self.name)

    def _read_keys(self, session: Any) -> None:
        station = self.station
        if station.keys is not None:
            return   # one station, several connectors: read once per connection
        station.keys = {}
        try:
            answer = session.call("GetConfiguration", {"key": SMART_KEYS})
            station.keys = {k["key"]: k.get("value") for k in answer.get("configurationKey", [])}
        except CallFailed as e:
            log.info("%s: GetConfiguration failed (%s); assuming current (A) profiles", self.cpid, e)

    def _station_max_level(self, session: Any) -> int | None:
        """ChargeProfileMaxStackLevel as the station reported it; None when unknown."""
        try:
            return max(0, int((self.station.keys or {}).get("ChargeProfileMaxStackLevel")))
        except (TypeError, ValueError):
            return None

    def _stack_level(self, session: Any) -> int:
        """Ours is STACK_LEVEL, lower when the station allows less (a station whose maximum is 0
        rejects every profile at level 1 and would never be controlled)."""
        most = self._station_max_level(session)
        return STACK_LEVEL if most is None else min(STACK_LEVEL, most)

    def _clear_stale(self, session: Any) -> None:
        """Profiles left by a previous controller outlive reboots (ocpp16.md §8); Unknown = none.
        Ours (TxDefaultProfile at our stack level) stays: every other level and purpose goes."""
        requests = [{"connectorId": self.connector, "chargingProfilePurpose": "TxProfile"}]
        most = self._station_max_level(session)
        highest = min(MAX_STACK_LEVELS_CLEARED, 8 if most is None else most)
        requests += [{"connectorId": self.connector, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": level}
                     for level in range(highest + 1) if level != self._stack_level(session)]
        if not self.station.cleared:
            self.station.cleared = True
            # a stale station-wide maximum (e.g. 0 A) would block charging; a connector-0
            # TxDefaultProfile does not matter (ours on the connector replaces it), and clearing it
            # risks firmware that reads connector 0 as "all connectors" and drops ours too
            requests.append({"connectorId": 0, "chargingProfilePurpose": "ChargePointMaxProfile"})
        for req in requests:
            try:
                session.call("ClearChargingProfile", req)
            except CallFailed as e:
                log.info("%s: ClearChargingProfile %s failed: %s", self.cpid, req, e)

    def _unit(self, session: Any) -> str:
        allowed = ((self.station.keys or {}).get("ChargingScheduleAllowedChargingRateUnit") or "Current")
        return "A" if "Current" in allowed or "A" == allowed.strip() else "W"

    def _profile(self, session: Any, current: float) -> dict[str, Any]:
        phases = self._phases()
        if self.settings["whole_amps"]:
            current = float(math.floor(current))
        unit = self._unit(session)
        voltage = self.runtime.config.section("load_management")["voltage"]
        # power for a box whose phases we do not know is converted as for one phase: a 1-phase car
        # must not get three times the current (a 3-phase one gets less than it could, safely)
        limit = current if unit == "A" else math.floor(current * voltage * (self.settings["phases"] or 1))
        return tx_default_profile(self.connector, limit, unit, phases, self._stack_level(session))

    def _set_profile(self, session: Any, current: float) -> bool:
        if current > self._held_limit():   # persisted before sending: an answer lost in a restart
            self._set_may_hold(current)    # must not make us count the box too low
        try:
            answer = session.call("SetChargingProfile", self._profile(session, current))
        except CallFailed as e:
            self._uncontrollable(f"SetChargingProfile failed: {e}")
            return False
        if answer.get("status") != "Accepted":
            self._set_may_hold(None)        # refused: the station kept what it had
            self._uncontrollable(f"station answered {answer.get('status')} to our charging profile")
            return False
        self.confirmed_limit = current
        self.runtime.store.put_state(self.name, "confirmed_limit", current)
        self._set_may_hold(None)
        return True

    def _set_may_hold(self, value: float | None) -> None:
        if value != self.may_hold:
            self.may_hold = value
            self.runtime.store.put_state(self.name, "may_hold", value)

    def _uncontrollable(self, why: str) -> None:
        if why != self.problem:
            self.runtime.events.warning(f"{why}; counted at {self._held_limit():g} A", self.name)
        self.problem = why

    def _held_limit(self) -> float:
        """What it may draw without further commands: the profile it holds, or its maximum
        (no profile known, or rebooted since: it may have lost it)."""
        if self.confirmed_limit is None or self.rebooted:
            return float(self.settings["max_current"])
        return max(self.confirmed_limit, self.may_hold or 0.0)

    def _check_offered(self) -> None:
        """A station offering the car more than our limit ignores it (some firmware applies a
        changed TxDefaultProfile only to the next transaction): uncontrollable at its maximum.
        (A box drawing more than its command is the engine's to judge, from the currents.)"""
        if self.offered is None or self.confirmed_limit is None or self.tx_id is None:
            return
        now = time.monotonic()
        if self.offered <= self.confirmed_limit + OFFER_MARGIN_A:
            self.overoffer_since = None
            if self.problem.startswith("offers"):
                self.problem = ""
            return
        self.overoffer_since = self.overoffer_since or now
        if now - self.overoffer_since >= OVERDRAW_AFTER_S and not self.problem.startswith("offers"):
            self._uncontrollable(f"offers the car {self.offered:.1f} A, more than its limit {self.confirmed_limit:g} A")

    def _phases(self) -> int:
        return self.settings["phases"] or 3

    # -- Device interface ---------------------------------------------------------------------------
    @property
    def controllable(self) -> bool:
        return self.session is not None and self.configured and not self.problem

    def lm_input(self) -> Evse:
        s = self.settings
        controllable = self.controllable
        held = float(s["max_current"]) if self.problem.startswith("offers") else self._held_limit()
        self._maybe_reconfigure()
        # a backend's limit (gateway) caps what load management may give; below the minimum it pauses
        most = self.station.effective_limit(self.connector, float(s["max_current"]))
        demand = self.tx_id is not None and self.ocpp_status in DEMAND_STATES and most >= s["min_current"]
        return Evse(
            name=self.name, min_current=s["min_current"], max_current=max(most, s["min_current"]), phases=s["phases"],
            rotation=s["phase_rotation"], priority=s["priority"], offset=s["offset"], fcfs=s["fcfs"],
            enabled=s["active"], controllable=controllable, max_possible_draw=held, demand=demand,
            whole_amps=s["whole_amps"],
            plugged_at=self.plugged_at, command=self.confirmed_limit or 0.0,
            # an offline box's last reading is history, not a measurement (it may predate our last
            # reduction): without one, load management counts the box at what it may draw
            measured=self.currents if self.session is not None else None)

    def _maybe_reconfigure(self) -> None:
        """A profile install that failed at connect is tried again (the controller cannot: apply
        needs the baseline first)."""
        session = self.session
        if session is None or self.configured or self._configuring or not self.settings["active"] \
                or self.problem == "deactivated" or time.monotonic() - self._configure_at < RETRY_CONFIGURE_S:
            return
        gevent.spawn(self.configure, session)

    def apply(self, current: float, phases: int) -> bool:
        current = floor_01(self.station.effective_limit(self.connector, min(current, self.settings["max_current"])))
        session = self.session
        if session is None or not self.configured:
            return False
        if current == self.confirmed_limit and not self.problem:
            return True           # limits are sent only on change
        with self._send_lock:
            ok = self._set_profile(session, current)
        if ok and self.problem.startswith(("SetChargingProfile", "station answered", "offers")):
            self.problem = ""
        return ok

    def deactivate(self, mode: str) -> None:
        session = self.session
        if session is None:
            return
        with self._send_lock:
            if mode == "clear_limits":
                self._clear_all(session)
            else:
                held = None if self.rebooted else self.confirmed_limit
                limit = left_at(mode, held, float(self.settings["min_current"]))
                if self._set_profile(session, limit):
                    self.runtime.events.info(f"deactivated: charging profile left at {limit:g} A", self.name)
        self.configured = False
        self.problem = "deactivated"

    def _clear_all(self, session: Any) -> None:
        """Free the station: clear every profile (no filter), and again by our id and purpose,
        because some stations answer Unknown to one form (charging-manager.md §3)."""
        for req in ({}, {"id": PROFILE_ID_BASE + self.connector},
                    {"connectorId": self.connector, "chargingProfilePurpose": "TxDefaultProfile"}):
            try:
                session.call("ClearChargingProfile", req)
            except CallFailed as e:
                log.info("%s: ClearChargingProfile %s failed: %s", self.cpid, req, e)
        self.confirmed_limit = None
        self.runtime.store.put_state(self.name, "confirmed_limit", None)
        self.runtime.events.info("deactivated: all charging profiles cleared (free charging)", self.name)

    def status(self) -> DeviceStatus:
        st = DeviceStatus(name=self.name, type=self.kind, online=self.session is not None)
        st.state = self._state()
        st.limit_a = self.confirmed_limit
        st.currents_a = list(self.currents or (0.0, 0.0, 0.0))
        st.power_w = self.power_w
        if self.tx_id is not None and self.energy_reg is not None and self.meter_start is not None:
            st.energy_wh = max(0.0, self.energy_reg - self.meter_start)
        st.transaction, st.id_tag = self.tx_id, self.id_tag
        alloc = (self.runtime.lm_status.get("allocations") or {}).get(self.name) or {}
        st.reason = alloc.get("reason", "")
        st.error = self.problem if self.problem not in ("deactivated",) else ""
        st.extra = {"ocpp_status": self.ocpp_status, "charge_box_id": self.cpid, "connector": self.connector,
                    "controllable": self.controllable, "error_code": self.error_code}
        return st

    def _state(self) -> str:
        if self.session is None:
            return OFFLINE
        status = self.ocpp_status
        if status == Status.FAULTED:     # a fault code with another status is only a warning
            return ERROR
        if status == Status.CHARGING:
            return CHARGING
        if status == Status.SUSPENDED_EVSE and self.tx_id is not None:
            return PAUSED
        if status in (Status.PREPARING, Status.SUSPENDED_EV, Status.FINISHING, Status.SUSPENDED_EVSE):
            return CONNECTED
        return AVAILABLE
