"""A Power Brain EVSE unit as a Device: polled once per control cycle, commanded by load management,
sessions stored as transactions (source 'powerbrain').

Safety (charging-manager.md §2.7): while the unit does not answer, or a command was not acknowledged,
it is uncontrollable and counted at its maximum possible draw U = max(last confirmed command, the
limit it was last seen using, its fail-safe current, and its power-up default — a silent box may have
restarted; after it answers the restart counter 8120 tells whether it did).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import gevent.lock

from appliance.devices import base
from appliance.devices.base import Device, DeviceStatus, left_at
from appliance.domain import Identified, MeterSampled, Origin, TransactionStarted, TransactionStopped
from appliance.lm.model import Evse
from appliance.modbus import registers as R
from appliance.modbus.bus import BusError, check_shareable
from appliance.modbus.health import Health, ModbusPolled, error_kind
from appliance.modbus.powerbrain import PowerBrainUnit, Snapshot, failsafe_amps, failsafe_raw
from appliance.store import MeterSample
from appliance.timefmt import utc_now

if TYPE_CHECKING:
    from appliance.runtime import Runtime

PHASE_READINGS = 3   # "determine phases": this many agreeing readings before a count is trusted
NO_CURRENT_A = 0.5   # the phase relay moves only while every phase draws less than this
METER_SAMPLE_S = 60.0   # meter values stored with a running transaction, as OCPP's default sample interval


class PowerBrainEvse(ModbusPolled, Device):
    kind = "powerbrain"

    def __init__(self, name: str, settings: dict[str, Any], runtime: "Runtime"):
        super().__init__(name, settings, runtime)
        self.link = check_shareable(settings["port"])   # a bad port fails here, with one clear error
        self.unit_id = int(settings["unit"])
        self.health = Health(name, runtime.events)
        self.box: PowerBrainUnit | None = None
        self.snap: Snapshot | None = None
        self.confirmed: float | None = None   # last command the box acknowledged (A, 0 = paused)
        self.unconfirmed: float | None = None  # highest command sent without acknowledgement
        self.defaults_a = 0.0                 # power-up default from flash (8081 × 8082, 8080)
        self.failsafe_box_a: float | None = None
        self.flash_checked = False
        self.restarts: int | None = None
        self.tx: dict[str, Any] | None = None
        self.plugged_at: float | None = None
        self.phases_cmd = 3
        self.phases_seen = 0          # "determine": the most phases this car used, once stable
        self._phase_votes: list[int] = []
        self._voted: Snapshot | None = None
        self._sampled_at = -math.inf
        self.identity: dict[str, Any] = {}     # serial, name, firmware from the identification block
        self._io = gevent.lock.Semaphore()    # one poll or command at a time per box

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.box = PowerBrainUnit(self.open_bus(), self.unit_id)
        self.tx = self.runtime.store.active_transaction(self.link.key, self.unit_id)
        self.start_polling(self.poll)

    def stop(self) -> None:
        self.stop_polling()

    @property
    def origin(self) -> Origin:
        return Origin(self.name, self.link.key, self.unit_id, source="powerbrain")

    # -- polling --------------------------------------------------------------------------------------
    def poll(self) -> None:
        if self.box is None:
            return
        with self._io:
            try:
                snap = self.box.read()
                if not self.flash_checked or (self.restarts is not None and snap.restarts != self.restarts):
                    self._check_flash(snap)
            except (BusError, R.OutOfRange) as e:
                kind, msg = error_kind(e)
                self.health.failed(kind, msg, lambda: f"counted at its maximum possible draw {self.max_possible_draw():g} A")
                return
        self.health.ok()
        if self.snap is None:          # start from the relay position the box really has
            self.phases_cmd = 1 if snap.one_phase else 3
        self.snap = snap
        self.restarts = snap.restarts
        self._track_session(snap)

    def _check_flash(self, snap: Snapshot) -> None:
        """After (re)connection or a restart: read the flash settings, write only what differs."""
        if self.restarts is not None and snap.restarts != self.restarts:
            self.runtime.events.warning(f"box restarted (restart counter {self.restarts} -> {snap.restarts})",
                                        self.name)
            self.confirmed = None     # it runs on its power-up defaults now
        assert self.box is not None
        if not self.identity:     # for the page and the gateway's BootNotification
            self.identity = self.box.identify()
            i = self.identity
            self.runtime.recorder.record(Identified(self.origin, "Power Brain", str(i.get("name") or ""),
                                                    str(i.get("serial") or ""), str(i.get("firmware") or "")))
        flash = self.box.read_flash()
        wanted = self._wanted_flash()
        for reg, raw in wanted.items():
            if flash[reg.address] != raw:
                self.box.write_flash(reg, raw)
                self.runtime.events.info(f"flash register {reg.address} set to {raw} (was {flash[reg.address]})",
                                         self.name)
                flash[reg.address] = raw
        self.failsafe_box_a = failsafe_amps(flash[R.FAILSAFE_CURRENT.address])
        default = flash[R.DEFAULT_LIMIT.address] / 10 if flash[R.DEFAULT_ENABLE.address] else 0.0
        self.defaults_a = max(default, flash[R.DEFAULT_FIXED_CURRENT.address] / 10)
        self.flash_checked = True

    def _wanted_flash(self) -> dict[R.Reg, int]:
        """Flash settings from the configuration. The power-up defaults follow the fail-safe current, so
        a box that restarted while out of reach behaves like one that lost us: U stays max(command,
        fail-safe) instead of jumping to a factory default; the fixed-current test mode stays off."""
        failsafe = failsafe_raw(float(self.settings["failsafe_current"]))
        return {R.FAILSAFE_TIMEOUT: int(self.settings["failsafe_timeout"]), R.FAILSAFE_CURRENT: failsafe,
                R.DEFAULT_LIMIT: int(round(max(failsafe_amps(failsafe), R.MIN_CURRENT_A) * 10)),
                R.DEFAULT_ENABLE: 1 if failsafe else 0, R.DEFAULT_FIXED_CURRENT: 0}

    # -- sessions -> transactions ---------------------------------------------------------------------
    def _track_session(self, snap: Snapshot) -> None:
        if snap.plugged and self.plugged_at is None:
            self.plugged_at = time.monotonic()
            self.runtime.events.info("car plugged in", self.name)
        if not snap.plugged and self.plugged_at is not None:
            self.plugged_at = None
            self.phases_seen, self._phase_votes = 0, []   # the next car may use other phases
            self.runtime.events.info("car unplugged", self.name)
        if self.tx is None and self._session_starts(snap):
            self._start_tx(snap)
            self._store_sample(snap, "Transaction.Begin")
        elif self.tx is not None and not snap.plugged and not snap.fault:
            self._store_sample(snap, "Transaction.End")
            self._stop_tx(snap, "EVDisconnected")
        elif self.tx is not None and time.monotonic() - self._sampled_at >= METER_SAMPLE_S:
            self._store_sample(snap, "Sample.Periodic")

    def _store_sample(self, snap: Snapshot, context: str) -> None:
        """Meter values with the transaction, in OCPP's terms, for billing and a later gateway."""
        assert self.tx is not None
        self._sampled_at = time.monotonic()
        ts = utc_now()
        samples = [MeterSample(ts, "Energy.Active.Import.Register", f"{snap.energy_wh:.0f}", unit="Wh", context=context),
                   MeterSample(ts, "Power.Active.Import", f"{snap.power_w:.0f}", unit="W", context=context),
                   MeterSample(ts, "Current.Offered", f"{snap.signalled_a:.1f}", unit="A", context=context)]
        samples += [MeterSample(ts, "Current.Import", f"{a:.1f}", phase=f"L{i + 1}", unit="A", context=context)
                    for i, a in enumerate(snap.currents)]
        self.runtime.recorder.record(MeterSampled(self.origin, self.tx["id"], samples))

    def _session_starts(self, snap: Snapshot) -> bool:
        if not snap.plugged:
            return False
        if self.runtime.config.section("load_management")["tx_start"] == "charge_start":
            return snap.charging
        return bool(snap.rfid or self.settings.get("fixed_rfid") or snap.charging)

    def _start_tx(self, snap: Snapshot) -> None:
        store = self.runtime.store
        session = int(store.get_state(self.name, "session", 0)) + 1
        store.put_state(self.name, "session", session)     # first, so a crash never reuses a key
        id_tag = snap.rfid or self.settings.get("fixed_rfid") or ""
        started = self.runtime.recorder.record(TransactionStarted(
            self.origin, id_tag, int(snap.energy_wh), utc_now(),
            dedup_key=f"powerbrain:{self.link.key}:{self.unit_id}:{session}"))
        tx_id = started.tx_id
        assert tx_id is not None
        self.tx = store.get_transaction(tx_id)
        self.runtime.events.info(f"transaction {tx_id} started, idTag {id_tag or '(none)'}, "
                                 f"meter {int(snap.energy_wh)} Wh", self.name)

    def _stop_tx(self, snap: Snapshot, reason: str) -> None:
        assert self.tx is not None
        self.runtime.recorder.record(TransactionStopped(self.origin, self.tx["id"], int(snap.energy_wh), utc_now(),
                                                        reason=reason, id_tag=self.tx["id_tag"] or None))
        self.runtime.events.info(f"transaction {self.tx['id']} stopped, "
                                 f"{int(snap.energy_wh) - self.tx['meter_start']} Wh", self.name)
        self.tx = None

    # -- load management ------------------------------------------------------------------------------
    @property
    def controllable(self) -> bool:
        return self.health.online and self.snap is not None and self.unconfirmed is None

    def max_possible_draw(self) -> float:
        """U (§2.7), per phase: the most this box can draw without further commands."""
        if self.snap is None and self.confirmed is None:
            return max(float(self.settings["max_current"]), float(self.settings["failsafe_current"]))  # unknown
        seen = self.snap.effective_a if self.snap is not None else 0.0
        failsafe = self.failsafe_box_a if self.failsafe_box_a is not None else failsafe_amps(
            failsafe_raw(float(self.settings["failsafe_current"])))
        bound = max(self.confirmed or 0.0, self.unconfirmed or 0.0, seen, failsafe)
        if not self.health.online:
            bound = max(bound, self.defaults_a)   # it may have restarted on its power-up defaults
        return bound

    def _switching_allowed(self) -> bool:
        """Phase switching on, and the box allows it with a car plugged in (8113 bit 8): detected,
        never assumed; a car already seen drawing on one phase only is not switched."""
        snap = self.snap
        return bool(self.settings.get("phase_switching")) and snap is not None \
            and bool(snap.status_bits & R.CAP_SWITCH_PHASES_PLUGGED) \
            and not (self.phases_cmd == 3 and self.phases_seen == 1)

    def _phases(self) -> int:
        fixed = int(self.settings["phases"])
        if self.settings.get("phase_switching") and self.phases_cmd == 1 \
                and self.snap is not None and self.snap.one_phase:
            return 1        # one phase only while we commanded it AND the box says so
        if fixed:
            return fixed
        snap = self.snap
        if snap is not None and snap.charging and snap is not self._voted:
            self._voted = snap   # one vote per reading, however often we are asked
            # one reading is not enough: a 3-phase car ramping up may show one phase first. The
            # count holds once PHASE_READINGS readings agree, never goes down within a session,
            # and is unknown (counted on all three phases) until then
            self._phase_votes = (self._phase_votes + [sum(1 for a in snap.currents if a > 1.0)])[-PHASE_READINGS:]
            if len(self._phase_votes) == PHASE_READINGS and len(set(self._phase_votes)) == 1:
                self.phases_seen = max(self.phases_seen, self._phase_votes[0])
        return self.phases_seen

    def lm_input(self) -> Evse:
        s, snap = self.settings, self.snap
        online = self.health.online and snap is not None
        return Evse(
            name=self.name, min_current=float(s["min_current"]), max_current=float(s["max_current"]),
            phases=self._phases(), rotation=int(s["phase_rotation"]), priority=int(s["priority"]),
            offset=float(s["offset"]), fcfs=bool(s["fcfs"]), enabled=bool(s["active"]),
            whole_amps=bool(s["whole_amps"]), switch_phases=self._switching_allowed(),
            controllable=self.controllable, max_possible_draw=self.max_possible_draw(),
            demand=bool(online and snap.plugged and not snap.fault),
            plugged_at=self.plugged_at, measured=snap.currents if online else None,
            command=snap.effective_a if snap is not None else (self.confirmed or 0.0))   # last known; U separate

    def apply(self, current: float, phases: int) -> bool:
        """Write limit + enable (and the phase relay where allowed). True only when acknowledged."""
        if self.box is None or not self.health.online:
            return False      # nothing sent: a silent box costs no bus time; it is counted at U
        step = 1.0 if self.settings.get("whole_amps") else 0.1
        current = 0.0 if current <= 0 else int(current / step + 1e-9) * step
        current = round(min(current, float(self.settings["max_current"])), 1)
        with self._io:
            try:
                if current == 0 and phases in (1, 3) and phases != self.phases_cmd and self._switching_allowed():
                    self._switch_relay(phases)
                self.unconfirmed = max(self.unconfirmed or 0.0, current)
                self.box.command(current or R.MIN_CURRENT_A, enable=current > 0)
            except BusError as e:
                kind, msg = error_kind(e)
                self.health.failed(kind, f"command {current:g} A not acknowledged: {msg}",
                                   lambda: f"counted at {self.max_possible_draw():g} A")
                return False
        self.confirmed, self.unconfirmed = current, None
        if self.snap is not None:   # the box holds what it acknowledged; don't wait for the next poll
            self.snap = dataclasses.replace(self.snap, limit_a=current or R.MIN_CURRENT_A, enabled=current > 0)
        return True

    def _switch_relay(self, phases: int) -> None:
        """Pause, read back, and move the relay only if no current flows; otherwise a later apply
        (the engine keeps asking while it waits) tries again."""
        assert self.box is not None
        self.box.command(R.MIN_CURRENT_A, enable=False)
        now = self.box.read()
        if now.charging or max(now.currents) >= NO_CURRENT_A:
            return
        self.box.select_phases(phases)
        self.phases_cmd = phases
        self.snap = dataclasses.replace(now, one_phase=phases == 1)
        self.runtime.events.info(f"switched to {phases} phase{'s' if phases > 1 else ''}", self.name)

    def deactivate(self, mode: str) -> None:
        s = self.settings
        held = self.snap.effective_a if self.snap is not None else self.confirmed
        target = float(s["max_current"]) if mode == "clear_limits" else left_at(mode, held, float(s["min_current"]))
        if self.apply(target, 3):
            self.runtime.events.info(f"deactivated ({mode}): {target:g} A", self.name)
        else:
            self.runtime.events.warning(f"could not deactivate ({mode}): box not answering; it keeps its last "
                                        "command and its own fail-safe", self.name)

    def grid_limit_signal(self, s0_input: int) -> bool | None:
        """The state of S0 input 1 or 2 (8113 bits 0/1), where a grid operator's control box may be
        wired (§14a EnWG); None while the box does not answer."""
        if not self.health.online or self.snap is None:
            return None
        return bool(self.snap.status_bits & (R.S0_INPUT_1 if s0_input == 1 else R.S0_INPUT_2))

    # -- page / API -----------------------------------------------------------------------------------
    def status(self) -> DeviceStatus:
        snap = self.snap
        st = DeviceStatus(name=self.name, type=self.kind, online=self.health.online,
                          limit_a=self.confirmed, error=self.health.error,
                          extra={"port": self.link.key, "unit": self.unit_id, "errors": self.health.errors,
                                 "max_possible_draw_a": self.max_possible_draw(),
                                 "serial": self.identity.get("serial"), "firmware": self.identity.get("firmware")})
        if self.tx is not None:
            st.transaction, st.id_tag = self.tx["id"], self.tx["id_tag"]
        if snap is None:
            return st
        st.currents_a = list(snap.currents)
        st.power_w = snap.power_w
        st.energy_wh = snap.energy_wh - self.tx["meter_start"] if self.tx is not None else 0.0
        st.extra.update(cp_state=snap.cp_state, signalled_a=snap.signalled_a, restarts=snap.restarts,
                        rfid=snap.rfid, energy_total_wh=snap.energy_wh)
        if not self.health.online:
            st.state = base.OFFLINE
        elif snap.fault:
            st.state = base.ERROR
        elif snap.charging:
            st.state = base.CHARGING
        elif snap.plugged:
            st.state = base.CONNECTED if snap.enabled else base.PAUSED
        else:
            st.state = base.AVAILABLE
        return st
