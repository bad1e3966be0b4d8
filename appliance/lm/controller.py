"""The load-management loop (charging-manager.md §2.5, §2.7, §3): read every device, decide with the
pure engine, check the decision independently, then write in a safe order.

Write order: reductions and pauses go out first, in parallel, and are waited for (bounded); increases
are sent only in a later cycle, once no reduction is pending and every confirmed reduction has settled
(`settle_s` passed or the box's draw fell). A device whose apply failed or is still running is counted
at the higher of its old and new command (as uncontrollable) until an apply is confirmed, so nobody is
raised with current it may still draw. Such a device gets its lower value re-sent every RETRY_S.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

import gevent
import gevent.event

from appliance import boxactions
from appliance.devices.base import Charger, Device, HouseMeter
from appliance.domain import StatusChanged, TransactionStarted, TransactionStopped
from appliance.lm.engine import NO_CURRENT, TRANSIENT_S, allocate, building_phases
from appliance.lm.failsafe import PauseAll, show_stopped
from appliance.lm.grid_limit import GridLimit
from appliance.lm.house import HouseLoad, HouseReading
from appliance.lm.model import Allocation, EngineState, Evse, Measurements, Phases3, Site
from appliance.lm.overdraft import Overdraft
from appliance.lm.safety import enforce
from appliance.ocpp import unmanaged

if TYPE_CHECKING:
    from appliance.runtime import Runtime

log = logging.getLogger("ampgate.lm")

APPLY_WAIT_S = 5.0       # how long a cycle waits for reductions before moving on (slow boxes keep going)
RETRY_S = 30.0           # re-send the lower value to a device whose command was not confirmed
# Extra cycles on events: a burst of EVENT_BURST back to back, then at most one per MIN_GAP_S.
# §2.5 suggests one per second, but a plug-in (StatusNotification) is followed by StartTransaction
# within milliseconds, and the second event then waited for its gap: every car waited for its
# current. A cycle costs about a millisecond at 100 boxes.
EVENT_BURST = 3
MIN_GAP_S = 0.2
HISTORY_S = 10.0         # one history point for the dashboard plot per this many seconds
SLOW_CYCLE_S = 10.0      # a cycle longer than this is worth a warning (§2.5)
FAIL_SAFE_AFTER = 3      # failed cycles in a row before every wallbox is paused
DEFAULT_CYCLE_S = 3.0    # the cycle period when even the configuration cannot be read
SETTLED_MARGIN_A = 0.5   # a reduced box drawing at most its new command + this has settled
MONITOR = "monitor"
STATE_KEY = "lm_active"  # store.device_state key: was the device under control when last seen


def site_from(cfg: dict[str, Any], share_percent: float = 100.0, power_limit_w: float = 0.0) -> Site:
    """The engine's Site from the [load_management] section (share_percent is not saved, §2.2; the grid
    operator's power limit comes from its signal)."""
    return Site(max_current_per_phase=cfg["max_current_per_phase"], reserve=cfg["reserve"],
                share_percent=share_percent, max_wallbox_current=cfg["max_wallbox_current"],
                max_imbalance=cfg["max_imbalance"], imbalance_incl_consumption=cfg["imbalance_incl_consumption"],
                voltage=cfg["voltage"], pause_s=cfg["pause_s"], rotation_s=cfg["rotation_s"],
                delay_3p_s=cfg["delay_3p_s"], on_deactivate=cfg["on_deactivate"], power_limit_w=power_limit_w)


class Controller:
    def __init__(self, runtime: "Runtime", apply_wait_s: float = APPLY_WAIT_S,
                 clock: Callable[[], float] = time.monotonic):
        self.rt = runtime
        self.apply_wait_s = apply_wait_s
        self.clock = clock
        self.share_percent = 100.0
        self.state = EngineState()
        self.overdraft = Overdraft()
        self._wake = gevent.event.Event()
        self._loop: gevent.Greenlet | None = None
        self._running = False
        self._pending: dict[str, gevent.Greenlet] = {}       # applies still running
        self._pending_down: set[str] = set()                 # ... of which reductions (they block increases)
        self._settle_s = 5.0
        self._hold: dict[str, float] = {}                    # unconfirmed: counted at least at this
        self._retry: dict[str, tuple[float, float, int]] = {}  # name -> (when, value, phases)
        self._unsettled: dict[str, tuple[float, float]] = {}   # name -> (reduced to, settled by)
        self._active: dict[str, bool] = {}
        self._shown: dict[str, Allocation] = {}
        self.house = HouseLoad(runtime.events, clock)
        self._failures = 0                                   # cycles failed in a row
        self._pause_all = PauseAll(runtime)
        self._last_cycle = -math.inf
        self._history_at = -math.inf
        self._reloaded_at = -math.inf                        # the device list last changed
        self.grid_limit = GridLimit(runtime)                 # the grid operator's signal (§14a EnWG)

    # -- the loop -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self.rt.on_reload.append(self.reloaded)
        self._loop = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop deciding; boxes keep their last command (a restart is not a deactivation, §2.7)."""
        self._running = False
        if self.reloaded in self.rt.on_reload:
            self.rt.on_reload.remove(self.reloaded)
        if self._loop is not None:
            self._loop.kill(timeout=2)
        gevent.killall(list(self._pending.values()), timeout=2)

    def trigger(self) -> None:
        """An event (plug-in, status change, device loss, config change): run a cycle soon."""
        self._wake.set()

    def reloaded(self) -> None:
        """The device list changed (added, adopted, edited, removed): a transient, no reason to pause."""
        self._reloaded_at = self.clock()
        self.trigger()

    def _run(self) -> None:
        budget = EventBudget(EVENT_BURST, MIN_GAP_S, self.clock)
        while self._running:
            started = self.clock()
            self.safe_cycle()
            try:
                period = self.rt.config.section("load_management")["cycle_s"]
            except Exception:   # the configuration in memory is broken: keep cycling (and failing safe)
                period = DEFAULT_CYCLE_S
            self._wake.wait(timeout=max(0.0, started + period - self.clock()))
            if self._wake.is_set():
                gevent.sleep(budget.take())   # events arriving meanwhile join this cycle
            self._wake.clear()

    def safe_cycle(self) -> None:
        """One cycle that never raises. A bug must not end load management: the next cycle tries
        again; after FAIL_SAFE_AFTER failed cycles in a row every wallbox is paused (and again each
        failing cycle) and the page says so, until a cycle succeeds."""
        try:
            self.cycle()
        except Exception as e:
            self._failures += 1
            log.exception("load management cycle failed (%d in a row)", self._failures)
            if self._failures >= FAIL_SAFE_AFTER:
                why = f"load management cycle failing: {type(e).__name__}: {e}"
                if self._failures == FAIL_SAFE_AFTER:
                    self.rt.events.error(f"{why}; every wallbox is paused until it runs again")
                show_stopped(self.rt, why)
                self._pause_all(skip=set(self._pending))
            return
        if self._failures >= FAIL_SAFE_AFTER:
            self.rt.events.info("load management cycle runs again")
        self._failures = 0

    # -- one cycle ------------------------------------------------------------------------------------
    def cycle(self) -> dict[str, Allocation]:
        cfg = self.rt.config.section("load_management")
        t0 = self.clock()
        monitor = cfg["mode"] == MONITOR
        devices, meters = inputs(self.rt.devices)
        managed = sum(1 for d in devices.values() if d.settings.get("active", True))
        site = site_from(cfg, self.share_percent, self.grid_limit.update(cfg, managed))
        # stations nobody adopted: counted at the connection limit while not held at 0 A with a car
        strangers = [] if monitor else unmanaged.counted(self.rt, site.max_current_per_phase)
        self._forget_removed(set(devices) | {ev.name for ev in strangers})
        self._deactivate_changed(devices, monitor, cfg["on_deactivate"])
        evses = [self._counted(self._read(dev)) for dev in devices.values()]
        self._drop_retired(devices, evses)
        evses += strangers
        house = self.house.read(dict(meters), _total_load((0.0, 0.0, 0.0), evses), site.max_current_per_phase)
        self.overdraft.penalty_s = cfg["overdraft_penalty_s"]
        self._settle_s = cfg["settle_s"]
        if house.faults:   # the load is not known: no overdraw to judge (the cars get nothing anyway)
            penalty = self.overdraft.penalty(t0)
        else:
            penalty = self.overdraft.update(t0, _total_load(house.measured, evses), site.max_current_per_phase)
        transient = "device list changed" if t0 - self._reloaded_at < TRANSIENT_S else ""
        meas = Measurements(now=t0, house_load=house.budgeted, penalty=penalty, transient=transient)
        if monitor:
            alloc = {ev.name: Allocation(ev.name, 0.0, ev.phases or 3, "monitor mode") for ev in evses}
        else:
            alloc, self.state = allocate(site, evses, meas, self.state)
            alloc, found = enforce(site, evses, meas, alloc)
            if found:
                self.rt.events.error("unsafe allocation (a bug); paused from the lowest priority up: "
                                     + "; ".join(found))
            self._write(devices, evses, alloc, t0)
        self._publish(site, evses, meas, alloc, monitor, t0, house)
        return alloc

    def _forget_removed(self, devices: set[str]) -> None:
        for d in (self._hold, self._retry, self._unsettled, self._active, self._shown):
            for name in [n for n in d if n not in devices]:
                del d[name]

    def _read(self, dev: Any) -> Evse:
        active = bool(dev.settings.get("active", True))
        try:
            ev = dev.lm_input()
        except Exception as e:   # unreadable: count it at the most it could draw
            log.error("%s: cannot read its state for load management: %s; counted at its max", dev.name, e)
            s = dev.settings
            return Evse(dev.name, min_current=s.get("min_current", 6.0), max_current=s.get("max_current", 16.0),
                        phases=s.get("phases", 3), rotation=int(s.get("phase_rotation", 0)), enabled=active,
                        controllable=False, max_possible_draw=s.get("max_current", 16.0))
        ev = ev if active or not ev.enabled else replace(ev, enabled=False)
        return _with_override(ev, boxactions.for_load_management(self.rt, dev.name, ev.demand))

    def _drop_retired(self, devices: dict[str, Any], evses: list[Evse]) -> None:
        """A removed wallbox is counted (as inactive) until its car stops or it disconnects; from the
        next cycle on it is no longer read."""
        for ev in evses:
            dev = devices[ev.name]
            if getattr(dev, "retired", False) and ev.name not in self._pending and \
                    (not ev.demand or not _online(dev)):
                self.rt.drop_retired(ev.name)

    def _counted(self, ev: Evse) -> Evse:
        """A device with an unconfirmed or running apply is uncontrollable at its old/new command."""
        held = self._hold.get(ev.name)
        if held is None:
            return ev
        # a disabled box too: it may still hold the higher value of a command never confirmed
        return replace(ev, controllable=False, max_possible_draw=max(ev.max_possible_draw, held))

    # -- deactivation (§3) -------------------------------------------------------------------------------
    def _deactivate_changed(self, devices: dict[str, Any], monitor: bool, mode: str) -> None:
        """Call deactivate(mode) once when a device leaves control (set inactive, or monitor mode).
        Remembered in the store, so a restart is not taken for a deactivation."""
        for name, dev in devices.items():
            active = bool(dev.settings.get("active", True)) and not monitor
            was = self._active.get(name)
            if was is None:
                was = bool(self.rt.store.get_state(name, STATE_KEY, True))
            self._active[name] = active
            if active == was:
                continue
            self.rt.store.put_state(name, STATE_KEY, active)
            if not active:
                why = "monitor mode" if monitor else "set inactive"
                self.rt.events.info(f"{why}: leaving the box as on_deactivate = {mode}", name)
                self._retry.pop(name, None)   # a pending retry must not undo the deactivation
                self._pending[name] = gevent.spawn(self._deactivate, dev, mode)
            else:
                self.rt.events.info("back under load management", name)
                gevent.spawn(dev.reactivate)

    def _deactivate(self, dev: Any, mode: str) -> None:
        try:
            dev.deactivate(mode)
        except Exception as e:
            self.rt.events.error(f"deactivation ({mode}) failed: {e}", dev.name)
        finally:
            self._pending.pop(dev.name, None)

    # -- writing (§2.7 write order) ---------------------------------------------------------------------
    def _write(self, devices: dict[str, Any], evses: list[Evse], alloc: dict[str, Allocation],
               now: float) -> None:
        self._settle(evses, now)
        down, up = [], []
        for ev in evses:
            if ev.name in self._pending:
                continue
            if not ev.enabled:
                continue
            if not ev.controllable:
                self._maybe_retry(devices.get(ev.name), now)
                continue
            a = alloc[ev.name]
            # a 1p/3p switch goes out with the reductions: the box moves its relay once nothing flows
            if a.current < ev.command or (ev.switch_phases and a.phases != (ev.phases or 3)):
                down.append((ev, a))
            elif a.current > ev.command:
                up.append((ev, a))
        if down:
            sent = [self._spawn_apply(devices[ev.name], ev.command, a) for ev, a in down]
            gevent.joinall(sent, timeout=self.apply_wait_s)
            if self._settle_s > 0:
                gevent.spawn_later(self._settle_s, self.trigger)   # the increases wait for this
            return
        if up and not self._unsettled and not self._pending_down:
            sent = [self._spawn_apply(devices[ev.name], ev.command, a) for ev, a in up]
            gevent.joinall(sent, timeout=self.apply_wait_s)

    def _spawn_apply(self, dev: Any, old: float, a: Allocation) -> gevent.Greenlet:
        self._hold[dev.name] = max(old, a.current)   # until confirmed it may draw either
        if a.current < old:
            self._pending_down.add(dev.name)
        g = gevent.spawn(self._apply, dev, old, a.current, a.phases)
        self._pending[dev.name] = g
        return g

    def _apply(self, dev: Any, old: float, new: float, phases: int) -> bool:
        name = dev.name
        try:
            ok = bool(dev.apply(new, phases))
            error = "" if ok else "not confirmed"
        except Exception as e:
            ok, error = False, str(e) or type(e).__name__
        finally:
            self._pending.pop(name, None)
            self._pending_down.discard(name)
        if ok:
            self._hold.pop(name, None)
            self._retry.pop(name, None)
            if new < old:
                self._unsettled[name] = (new, self.clock() + self._settle_s)
        else:
            self._hold[name] = max(old, new)
            self._retry[name] = (self.clock() + RETRY_S, min(old, new), phases)
            self.rt.events.warning(f"command {new:g} A failed ({error}); counted at {max(old, new):g} A"
                                   " until a command is confirmed", name)
        return ok

    def _maybe_retry(self, dev: Any, now: float) -> None:
        if dev is None or dev.name not in self._retry:
            return
        when, value, phases = self._retry[dev.name]
        if now >= when:
            self._retry[dev.name] = (now + RETRY_S, value, phases)
            held = self._hold.get(dev.name, value)
            self._pending[dev.name] = gevent.spawn(self._apply, dev, held, value, phases)

    def _settle(self, evses: list[Evse], now: float) -> None:
        """A confirmed reduction has settled when settle_s passed or the box's draw fell."""
        by_name = {ev.name: ev for ev in evses}
        for name, (new, deadline) in list(self._unsettled.items()):
            ev = by_name.get(name)
            fell = ev is not None and ev.measured is not None and \
                max(ev.measured[: ev.phases or 3]) <= new + SETTLED_MARGIN_A
            if ev is None or now >= deadline or fell:
                del self._unsettled[name]

    # -- showing -------------------------------------------------------------------------------------
    def _publish(self, site: Site, evses: list[Evse], meas: Measurements, alloc: dict[str, Allocation],
                 monitor: bool, t0: float, house: HouseReading) -> None:
        now = self.clock()
        interval = t0 - self._last_cycle
        self._last_cycle = t0
        limit = site.max_current_per_phase * site.share_percent / 100 - site.reserve
        wall = site.max_wallbox_current or math.inf
        budget = [round(min(limit - meas.penalty[p] - meas.house_load[p], wall), 1) for p in range(3)]
        load = [round(x, 1) for x in _total_load(house.measured, evses)]
        shown = {n: self._shown_allocation(a, monitor, t0, site.rotation_s) for n, a in alloc.items()}
        self.rt.lm_status.clear()
        self.rt.lm_status.update({
            "mode": MONITOR if monitor else "active", "cycle_ms": round((now - t0) * 1000, 1),
            "cycle_s": None if math.isinf(interval) else round(interval, 2), "budget_a": budget,
            "load_a": load, "overdraft_a": [round(x, 1) for x in self.overdraft.peak],
            "penalty_a": [round(x, 1) for x in meas.penalty], "share_percent": self.share_percent,
            "grid_limit": self.grid_limit.status(),
            "allocations": shown, "meter_faults": dict(house.faults),
        })
        if interval > SLOW_CYCLE_S and not math.isinf(interval):
            self.rt.events.warning(f"load management cycle took {interval:.1f} s (normal is about 3 s)")
        self._log_changes(alloc)
        if t0 - self._history_at >= HISTORY_S:
            self._history_at = t0
            self.rt.store.add_history(time.time(), {"load_a": load, "budget_a": budget,
                                                    "allocations": {n: s["current"] for n, s in shown.items()}})

    def _shown_allocation(self, a: Allocation, monitor: bool, now: float, rotation_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {"current": None if monitor else a.current, "phases": a.phases, "reason": a.reason}
        if a.counted:
            out["counted"] = a.counted
        until = self.state.paused_until.get(a.name)
        if until is not None and until > now and not monitor:
            out["pause_left_s"] = round(until - now)
        started = self.state.charging_since.values()
        if not monitor and a.current <= 0 and a.reason.startswith(NO_CURRENT) and started:
            # a waiting car gets its turn when the longest-charging car's turn is over (rotation_s)
            out["next_turn_s"] = max(0, round(min(started) + rotation_s - now))
        return out

    def _log_changes(self, alloc: dict[str, Allocation]) -> None:
        """One event per change of a device's allocation or pause, not one per cycle."""
        for name, a in alloc.items():
            before = self._shown.get(name)
            self._shown[name] = a
            if before is not None and before.reason == a.reason and (before.current > 0) == (a.current > 0) \
                    and abs(before.current - a.current) < 1.0:
                self._shown[name] = before   # small drifts are measured against the last logged value
                continue
            what = f"{a.current:g} A" if a.current > 0 else "paused" if "waiting" in a.reason else "0 A"
            self.rt.events.info(f"load management: {what} ({a.reason})", name)


BOOST_PRIORITY = 1_000_000   # "charge now": above every configured priority, still inside every limit


def _with_override(ev: Evse, kind: str | None) -> Evse:
    """An operator's wish from the page or console (appliance/boxactions.py): charge now = first in line at
    full current; pause/stop = no demand, so it gets 0 A like a box without a car."""
    if kind == boxactions.BOOST:
        return replace(ev, priority=ev.priority + BOOST_PRIORITY)
    if kind in (boxactions.PAUSE, boxactions.STOP):
        return replace(ev, demand=False)
    return ev


class EventBudget:
    """A token bucket for event-triggered cycles: `burst` may run back to back, then one per `gap` s."""

    def __init__(self, burst: int, gap: float, clock: Callable[[], float]):
        self.burst, self.gap, self.clock = burst, gap, clock
        self.tokens = float(burst)
        self.at = clock()

    def take(self) -> float:
        """Use one token; returns how long to wait for it (0 when one is left)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) / self.gap)
        self.at = now
        wait = max(0.0, (1.0 - self.tokens) * self.gap)
        self.tokens = max(0.0, self.tokens - 1.0) if wait == 0 else 0.0
        if wait:
            self.at = now + wait
        return wait


def _online(dev: Any) -> bool:
    """A device whose status cannot be read is taken as online: it stays counted."""
    try:
        return bool(dev.status().online)
    except Exception:
        return True


def _total_load(house: Phases3, evses: list[Evse]) -> Phases3:
    """Measured total per building phase: house + wallbox draw (a box without meter at its command)."""
    total = list(house)
    for ev in evses:
        phases = building_phases(ev)
        if ev.measured is not None:
            for i, p in enumerate(phases):
                total[p] += ev.measured[i]
        else:
            for p in phases:
                total[p] += ev.command
    return (total[0], total[1], total[2])


def inputs(devices: dict[str, Device]) -> tuple[dict[str, Charger], dict[str, HouseMeter]]:
    """Load management's view of the device list: the wallboxes it shares current among, and the
    meters whose reading is house load. The one place the device list is sorted for it."""
    chargers: dict[str, Charger] = {}
    meters: dict[str, HouseMeter] = {}
    for name, dev in list(devices.items()):
        if dev.is_evse:
            chargers[name] = dev
        elif isinstance(dev, HouseMeter):
            meters[name] = dev
    return chargers, meters


def start(runtime: "Runtime") -> Controller:
    """Started by `ampgate run` (appliance.app STARTERS)."""
    ctl = Controller(runtime)
    runtime.lm_controller = ctl   # the page's share/overdraft-reset controls reach it here
    runtime.lm_trigger = ctl.trigger   # devices ask for an extra cycle on plug-in, stop, loss
    # a plug-in, a status change or a transaction's start or end is worth a cycle now
    for kind in (StatusChanged, TransactionStarted, TransactionStopped):
        runtime.bus.subscribe(kind, lambda _event: ctl.trigger())
    ctl.start()
    return ctl
