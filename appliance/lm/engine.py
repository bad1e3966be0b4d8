"""The allocation engine (charging-manager.md §2.6): configuration + measurements + previous state ->
a command per EVSE. Pure and deterministic: no I/O, no clock (time comes in as `meas.now`), no logging.

Internally currents are counted in 0.1 A steps ("deci-amps"): commands are integers there, so rounding
down to 0.1 A is exact and the fair share has a closed form per round (see `_fill`).

Pauses (§2.6.5) protect cars and contactors from switching caused by real shortage. A transient -- a
box counted above its command for less than TRANSIENT_S (newly adopted, not answering for a few
cycles), a changed site configuration, or what the controller reports as unsettled -- never starts
one: a charging car it stops is "held" (it keeps its place and restarts as soon as it fits); if the
shortage outlasts the transient, its pause counts from when it was stopped.

Phase switching (§2.6.8), for cars whose box may switch them (`Evse.switch_phases`): a 3-phase car
that cannot get its min on all its building phases but can on its box L1 goes to 1 phase; a switched
car goes back to 3 once its min has fitted on all three for `delay_3p_s`. A switch is commanded as
current 0 with the new phase count (the box moves its relay only with no current flowing); the car's
min stays reserved on the new phases until the box reports them, for at most SWITCH_TIMEOUT_S.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from appliance.lm.model import OVERDRAW_AFTER_S, Allocation, EngineState, Evse, Measurements, Site

DECI = 10                  # engine unit: 0.1 A
EPS = 1e-6                 # float slack when comparing deci-amp loads
UNUSED_MARGIN_A = 1.0      # a car drawing this far below its share ...
UNUSED_AFTER_S = 60.0      # ... for this long is capped at its draw + headroom
UNUSED_HEADROOM_A = 2.0
OVERDRAW_A = 1.0           # a box drawing this much above its command for OVERDRAW_AFTER_S (model.py)
TRANSIENT_S = 30.0         # a box counted above its command this briefly, or a config change: transient
SWITCH_TIMEOUT_S = 60.0    # a box that has not switched phases by then is left on the phases it has
# hysteresis against switching on noise: a car stopped before restarts only when its min fits with this
# much to spare on each of its phases, and a switched car goes back to 3 phases only with this much more
RESTART_MARGIN = 10        # deci: 1 A
BACK_TO_3_MARGIN = 20      # deci: 2 A

# reasons shown on the page and in the event log (stable across cycles, so a change means something)
IDLE = "no car"
INACTIVE = "inactive"
UNCONTROLLABLE = "uncontrollable"
OVERDRAWING = "draws more than commanded"
PAUSE = "pause after stop"
HELD = "held, no pause"
SWITCHING = "switching to"
TURN_OVER = "gave way to a waiting car"
IDLE_TURN = "not drawing: gave way to a waiting car"
GRID_OPERATOR = "grid operator limit"
MIN_ABOVE_MAX = "min current + offset above max current"
IMBALANCE = "phase imbalance"
AT_MAX = "max current"
UNUSED = "unused current"
NO_CURRENT = "waiting: not enough current on"


# (box phases used, rotation) -> building phases: box phase i -> (i + rotation/120) mod 3
_WIRED = {(n, r): tuple((i + r // 120) % 3 for i in range(n)) for n in (1, 2, 3) for r in (0, 120, 240)}


# ordered pairs of distinct building phases, for the imbalance checks (a phase is never out of balance
# with itself)
_PAIRS = tuple((p, q) for p in range(3) for q in range(3) if p != q)


def building_phases(evse: Evse) -> tuple[int, ...]:
    """Building phases a car loads; unknown phases (0) count as all three."""
    n = evse.phases if 1 <= evse.phases <= 3 else 3
    wired = _WIRED.get((n, evse.rotation))
    return wired if wired is not None else tuple((i + evse.rotation // 120) % 3 for i in range(n))


def _deci_up(a: float) -> int:
    return math.ceil(a * DECI - EPS)


def _deci_down(a: float) -> int:
    return math.floor(a * DECI + EPS)


@dataclass(eq=False, slots=True)   # slots: its fields are read in every inner loop
class _Car:
    """A candidate during one allocation."""

    ev: Evse
    nph: int               # box phases used (for the Allocation)
    phases: tuple[int, ...]
    lo: int                # deci: min + offset
    hi: int                # deci: max (or the unused-current cap)
    capped: bool           # hi comes from the unused-current cap
    x: int = 0             # deci: command (0 = not admitted)
    reason: str = ""
    alt: tuple[int, ...] = ()   # building phases after a 1p/3p switch (empty: cannot switch)
    due: bool = False      # its turn is over (rotation)
    idle: bool = False     # draws nothing for UNUSED_AFTER_S though offered its share (a full car)


class _Work:
    """Mutable per-call state: a copy of EngineState plus the running per-phase loads."""

    def __init__(self, site: Site, meas: Measurements, state: EngineState):
        self.now = meas.now
        self.paused_until = dict(state.paused_until)
        self.charging_since = dict(state.charging_since)
        self.waiting_since = dict(state.waiting_since)
        self.low_since: dict[str, float] = dict(state.extra.get("low_since", {}))       # type: ignore[call-overload]
        self.unused_cap: dict[str, int] = dict(state.extra.get("unused_cap", {}))      # type: ignore[call-overload]
        self.over_since: dict[str, float] = dict(state.extra.get("over_since", {}))    # type: ignore[call-overload]
        ex = state.extra
        self.held_since: dict[str, float] = dict(ex.get("held_since", {}))      # type: ignore[call-overload]
        self.pause_why: dict[str, str] = dict(ex.get("pause_why", {}))          # type: ignore[call-overload]
        self.switch_to: dict[str, tuple[int, float]] = dict(ex.get("switch_to", {}))  # type: ignore[call-overload]
        self.ok3_since: dict[str, float] = dict(ex.get("ok3_since", {}))        # type: ignore[call-overload]
        self.no_switch: dict[str, float] = dict(ex.get("no_switch", {}))        # type: ignore[call-overload]
        self.first_seen: dict[str, float] = dict(ex.get("first_seen", {}))      # type: ignore[call-overload]
        self.above_since: dict[str, float] = dict(ex.get("above_since", {}))    # type: ignore[call-overload]
        self.per_car = (self.paused_until, self.charging_since, self.waiting_since, self.low_since,
                        self.unused_cap, self.over_since, self.held_since, self.pause_why, self.switch_to,
                        self.ok3_since, self.no_switch)
        self.known = set().union(*self.per_car)
        self.site_key = (site.max_current_per_phase, site.reserve, site.share_percent, site.max_wallbox_current,
                         site.max_imbalance, site.power_limit_w, site.voltage)
        self.site_changed = ex.get("site_changed")
        if "site_key" in ex and ex["site_key"] != self.site_key:
            self.site_changed = meas.now
        self.transients: list[str] = [meas.transient] if meas.transient else []
        if self.site_changed is not None and meas.now - self.site_changed < TRANSIENT_S:   # type: ignore[operator]
            self.transients.append("configuration change")
        limit = site.max_current_per_phase * site.share_percent / 100.0 - site.reserve
        wall = site.max_wallbox_current if site.max_wallbox_current > 0 else math.inf
        self.budget = [min(limit - meas.penalty[p] - meas.house_load[p], wall) * DECI for p in range(3)]
        self.phase_reason = [f"L{p + 1} limit" if limit - meas.penalty[p] - meas.house_load[p] <= wall
                             else "wallbox line limit" for p in range(3)]
        self.load = [0.0, 0.0, 0.0]          # deci: wallbox load per building phase (budget check)
        self.house = [h * DECI for h in meas.house_load] if site.imbalance_incl_consumption else [0.0] * 3
        self.imb_limit = site.max_imbalance * DECI   # raised to the uncontrolled loads' own imbalance later
        # the grid operator's limit (§14a EnWG): all wallboxes together, summed over their phases
        self.total_budget = site.power_limit_w / site.voltage * DECI if site.power_limit_w > 0 else math.inf

    def forget(self, name: str) -> None:
        # `known` is the names with state at the start; an EVSE is forgotten on a path where nothing
        # was added for it in this call, so most idle boxes return here at once
        if name not in self.known:
            return
        for d in self.per_car:
            d.pop(name, None)

    def add(self, phases: tuple[int, ...], deci: float) -> None:
        for p in phases:
            self.load[p] += deci

    def reserve(self, phases: tuple[int, ...], deci: float) -> None:
        """Budget kept for a car being switched: it counts against the limits, but not in the imbalance
        (nothing flows there yet; what the imbalance sees must be what is commanded)."""
        for p in phases:
            self.load[p] += deci
            self.house[p] -= deci

    def imbalance(self) -> float:
        m = [self.load[p] + self.house[p] for p in range(3)]
        return max(m) - min(m)

    def total(self) -> float:
        return self.load[0] + self.load[1] + self.load[2]

    def state(self, names: set[str]) -> EngineState:
        keep = lambda d: {k: v for k, v in d.items() if k in names}  # noqa: E731
        return EngineState(keep(self.paused_until), keep(self.charging_since), keep(self.waiting_since),
                           {"low_since": keep(self.low_since), "unused_cap": keep(self.unused_cap),
                            "over_since": keep(self.over_since), "held_since": keep(self.held_since),
                            "pause_why": keep(self.pause_why), "switch_to": keep(self.switch_to),
                            "ok3_since": keep(self.ok3_since), "no_switch": keep(self.no_switch),
                            "first_seen": keep(self.first_seen), "above_since": keep(self.above_since),
                            "site_key": self.site_key, "site_changed": self.site_changed})


def allocate(site: Site, evses: list[Evse], meas: Measurements,
             state: EngineState) -> tuple[dict[str, Allocation], EngineState]:
    """One decision: a command per EVSE (0 = paused) with the reason, and the state for next time."""
    w = _Work(site, meas, state)
    out: dict[str, Allocation] = {}
    cands: list[_Car] = []
    switching: list[_Car] = []
    now, paused_until, first_seen = w.now, w.paused_until, w.first_seen   # locals: once per EVSE every cycle
    for ev in evses:
        name = ev.name
        nph = ev.phases if 1 <= ev.phases <= 3 else 3
        phases = _WIRED.get((nph, ev.rotation)) or building_phases(ev)   # the table holds every valid wiring
        # box draw: the highest measured current on the box phases the car uses (None: no meter); both
        # the overdraw and the unused-current rule need it, so it is taken once here
        draw = None if ev.measured is None else max(ev.measured[:nph])
        seen = first_seen.setdefault(name, now)
        fixed = _fixed_charge(ev, site, w, draw)
        if fixed is not None:                      # §2.6.3: counted at U, first
            u, why = fixed
            w.add(phases, u * DECI)
            out[name] = Allocation(name, 0.0, nph, f"{why}: counted at {u:g} A", counted=u)
            _note_transient(name, u > ev.command + 0.05, seen, why, w)
            continue
        w.above_since.pop(name, None)
        if not ev.demand:
            w.forget(name)
            out[name] = Allocation(name, 0.0, nph, IDLE)
        elif paused_until.get(name, -math.inf) > now:
            paused_for = w.pause_why.get(name)
            out[name] = Allocation(name, 0.0, nph, f"{PAUSE} ({paused_for})" if paused_for else PAUSE)
        else:
            if ev.command > 0:   # charging already (e.g. after a restart): its turn and pause rules apply
                w.charging_since.setdefault(name, now)
            c = _candidate(ev, nph, phases, draw, w)
            if c.alt and name in w.switch_to:
                (switching if _still_switching(c, w) else cands).append(c)
            else:
                cands.append(c)
    for c in switching:     # their min stays reserved on the new phases until the box reports them
        _reserve(c, w)
    w.imb_limit = max(w.imb_limit, w.imbalance())   # cars never add to what uncontrolled loads already cause
    for prio in sorted({c.ev.priority for c in cands}, reverse=True):   # §2.6.5: highest level first, fully
        level = _rank([c for c in cands if c.ev.priority == prio], site, w)
        admitted = _admit(level, w, site.delay_3p_s)
        _fill(admitted, w)
        _whole_amps(admitted, w)
    for c in cands:
        _remember(c, site, w)
        target = w.switch_to.get(c.ev.name)
        out[c.ev.name] = Allocation(c.ev.name, c.x / DECI, target[0] if target else c.nph, c.reason)
    for c in switching:
        out[c.ev.name] = Allocation(c.ev.name, 0.0, w.switch_to[c.ev.name][0], c.reason)
    return out, w.state({ev.name for ev in evses})


def _note_transient(name: str, above: bool, seen: float, why: str, w: _Work) -> None:
    """A box counted above its command is a transient while it is new or only briefly so."""
    if not above:
        w.above_since.pop(name, None)
        return
    since = w.above_since.setdefault(name, w.now)
    if w.now - since < TRANSIENT_S or w.now - seen < TRANSIENT_S:
        w.transients.append(f"{name} {why}")


def _fixed_charge(ev: Evse, site: Site, w: _Work, draw: float | None) -> tuple[float, str] | None:
    """(U, why) for an EVSE we do not command this cycle, else None. `draw` is its box draw."""
    if not ev.enabled:
        w.forget(ev.name)
        left_at = {"stop": 0.0, "min_current": ev.min_current}.get(site.on_deactivate, ev.max_current)
        return max(ev.max_possible_draw, left_at), INACTIVE
    if not ev.controllable:
        return ev.max_possible_draw, UNCONTROLLABLE   # pauses and turns are kept for when it returns
    if draw is not None and draw > ev.command + OVERDRAW_A:
        since = w.over_since.setdefault(ev.name, w.now)
        if w.now - since >= OVERDRAW_AFTER_S:
            return max(ev.max_possible_draw, ev.max_current, ev.command, draw), OVERDRAWING
    else:
        w.over_since.pop(ev.name, None)
    return None


def _candidate(ev: Evse, nph: int, phases: tuple[int, ...], draw: float | None, w: _Work) -> _Car:
    step = DECI if ev.whole_amps else 1
    lo = -(-_deci_up(ev.min_current + ev.offset) // step) * step
    hi = _deci_down(ev.max_current) // step * step
    _track_unused(ev, draw, w)
    cap = w.unused_cap.get(ev.name)
    capped = cap is not None and cap < hi
    if capped:
        hi = max(lo, cap // step * step)   # type: ignore[operator]
    since = w.low_since.get(ev.name)
    idle = draw is not None and draw < UNUSED_MARGIN_A and since is not None and w.now - since >= UNUSED_AFTER_S
    alt: tuple[int, ...] = ()
    if ev.switch_phases and nph in (1, 3) and w.no_switch.get(ev.name, -math.inf) <= w.now:
        alt = _WIRED[(4 - nph, ev.rotation % 360 if ev.rotation % 360 in (0, 120, 240) else 0)]
    return _Car(ev, nph, phases, lo, hi, capped, alt=alt, idle=idle)


def _still_switching(c: _Car, w: _Work) -> bool:
    """A switch commanded earlier: still under way, or done (the box reports the new phases), or given
    up after SWITCH_TIMEOUT_S (then the car stays as it is and is not switched again for a while)."""
    name = c.ev.name
    target, since = w.switch_to[name]
    if c.nph == target:
        del w.switch_to[name]
        return False
    if w.now - since >= SWITCH_TIMEOUT_S:
        del w.switch_to[name]
        w.no_switch[name] = w.now + 10 * SWITCH_TIMEOUT_S
        c.alt = ()
        return False
    c.reason = f"{SWITCHING} {target} phase{'s' if target > 1 else ''}"
    return True


def _reserve(c: _Car, w: _Work) -> None:
    """Keep a switching car's min free on its new phases (if it still fits; it draws nothing now)."""
    if c.lo <= c.hi and _fits_on(c.alt, c.lo, w):
        w.reserve(c.alt, c.lo)


def _switch(c: _Car, w: _Work) -> None:
    """Command the switch to the car's other phase count: current 0, its min reserved there."""
    target = 4 - c.nph
    w.switch_to[c.ev.name] = (target, w.now)
    w.ok3_since.pop(c.ev.name, None)
    w.reserve(c.alt, c.lo)
    c.x, c.reason = 0, f"{SWITCHING} {target} phase{'s' if target > 1 else ''}"


def _track_unused(ev: Evse, draw: float | None, w: _Work) -> None:
    """§2.6.6: a metered car drawing > 1 A below its share for 60 s is capped at draw + 2 A (>= min);
    the cap goes when the car's draw comes within 1 A of it. `draw` is its box draw (None: no meter)."""
    name = ev.name
    if draw is None or ev.command <= 0:
        w.low_since.pop(name, None)
        return
    cap = w.unused_cap.get(name)
    if cap is not None and draw * DECI >= cap - _deci_down(ev.offset) - UNUSED_MARGIN_A * DECI - EPS:
        w.unused_cap.pop(name)
    share = ev.command - ev.offset
    if draw < share - UNUSED_MARGIN_A:
        since = w.low_since.setdefault(name, w.now)
        if w.now - since >= UNUSED_AFTER_S:
            w.unused_cap[name] = _deci_down(max(ev.min_current, draw + UNUSED_HEADROOM_A) + ev.offset)
    else:
        w.low_since.pop(name, None)


def _rank(level: list[_Car], site: Site, w: _Work) -> list[_Car]:
    """§2.6.5 admission order: first-come-first-served cars by plug-in time; then charging cars; then
    waiting cars, longest waiting first; last, charging cars whose turn is over (charged rotation_s
    while others of the level wait), so the longest-waiting car takes their place."""
    fcfs = sorted((c for c in level if c.ev.fcfs),
                  key=lambda c: (c.ev.plugged_at if c.ev.plugged_at is not None else math.inf, c.ev.name))
    rest = [c for c in level if not c.ev.fcfs]
    waiting = sorted((c for c in rest if c.ev.name not in w.charging_since),
                     key=lambda c: (w.waiting_since.get(c.ev.name, w.now), c.ev.name))
    charging = sorted((c for c in rest if c.ev.name in w.charging_since),
                      key=lambda c: (w.charging_since[c.ev.name], c.ev.name))
    # a car that draws nothing (full) gives way at once; others after rotation_s
    due = [c for c in charging if waiting and (c.idle or w.now - w.charging_since[c.ev.name] >= site.rotation_s)]
    keep = [c for c in charging if not (waiting and (c.idle or w.now - w.charging_since[c.ev.name] >= site.rotation_s))]
    for c in due:
        c.due = True
    return fcfs + keep + waiting + due


def _admit(ranked: list[_Car], w: _Work, site_delay: float) -> list[_Car]:
    """Admit cars at min (+ offset) in rank order where that fits every building phase they use; then
    pause the lowest-ranked cars loading the highest phase until the imbalance is within its limit."""
    admitted: list[_Car] = []
    rejected: list[_Car] = []
    for c in ranked:
        if c.lo > c.hi:
            c.reason = MIN_ABOVE_MAX
        elif _fits(c, w, RESTART_MARGIN if c.ev.name in w.pause_why else 0):
            if c.alt and c.nph == 1 and _back_to_3(c, site_delay, w):
                _switch(c, w)
                continue
            c.x = c.lo
            w.add(c.phases, c.lo)
            admitted.append(c)
        elif c.alt and _switch_fits(c, w):
            _switch(c, w)
        else:
            w.ok3_since.pop(c.ev.name, None)
            short = [p for p in c.phases if w.load[p] + c.lo > w.budget[p] + EPS]
            c.reason = (IDLE_TURN if c.idle else TURN_OVER) if c.due else \
                f"{NO_CURRENT} L{short[0] + 1}" if short else GRID_OPERATOR
            rejected.append(c)
    while w.imbalance() > w.imb_limit + EPS:
        m = [w.load[p] + w.house[p] for p in range(3)]
        top, bottom = m.index(max(m)), m.index(min(m))
        victim = next((c for c in reversed(admitted) if top in c.phases and bottom not in c.phases), None)
        if victim is None:   # cannot happen while earlier levels kept the limit; never loop on it
            break
        admitted.remove(victim)
        w.add(victim.phases, -victim.x)
        victim.x, victim.reason = 0, IMBALANCE
    for c in rejected:                     # a second chance for cars the imbalance pass made room for
        if _fits(c, w):
            w.add(c.phases, c.lo)
            if w.imbalance() <= w.imb_limit + EPS:
                c.x = c.lo
                admitted.append(c)
            else:
                w.add(c.phases, -c.lo)
    return admitted


def _fits(c: _Car, w: _Work, margin: int = 0) -> bool:
    return _fits_on(c.phases, c.lo, w, margin)


def _fits_on(phases: tuple[int, ...], lo: int, w: _Work, margin: int = 0) -> bool:
    for p in phases:
        if w.load[p] + lo + margin > w.budget[p] + EPS:
            return False
    return w.total() + len(phases) * lo <= w.total_budget + EPS


def _switch_fits(c: _Car, w: _Work, margin: int = 0) -> bool:
    """Would the car get its min after switching (3 -> 1 only when short; 1 -> 3 whenever it fits),
    within the imbalance limit?"""
    if not _fits_on(c.alt, c.lo, w, margin):
        return False
    w.add(c.alt, c.lo)
    ok = w.imbalance() <= w.imb_limit + EPS
    w.add(c.alt, -c.lo)
    return ok


def _back_to_3(c: _Car, delay: float, w: _Work) -> bool:
    """A switched car returns to 3 phases once its min has fitted on all three for `delay_3p_s`."""
    if not _switch_fits(c, w, BACK_TO_3_MARGIN):
        w.ok3_since.pop(c.ev.name, None)
        return False
    return w.now - w.ok3_since.setdefault(c.ev.name, w.now) >= delay


def _fill(cars: list[_Car], w: _Work) -> None:
    """Fair share: raise all admitted cars together in 0.1 A steps until each hits its max, a phase it
    uses is exhausted or the imbalance limit binds.

    Closed form instead of stepping: cars on the same building phases form a group (at most 7), and
    since every rising car rises by the same amount, a round computes how many steps all can take
    together (`_steps`), takes them, and freezes the cars a limit stops: those reaching their max one
    by one (each group is sorted by headroom), whole groups when a phase or the imbalance binds. Every
    round freezes at least one car."""
    groups: dict[tuple[int, ...], list[_Car]] = {}
    for c in cars:
        if c.x >= c.hi:
            c.reason = UNUSED if c.capped else AT_MAX
        else:
            groups.setdefault(c.phases, []).append(c)
    for g in groups.values():
        g.sort(key=lambda c: c.x - c.hi)     # the car with the least headroom last
    k = _counts(groups)     # rising cars per building phase: kept current as cars freeze, not recounted
    raised = 0
    while groups:
        steps = _steps(groups, k, raised, w)
        raised += steps
        if steps:   # load is added group by group as before: summing first could round differently
            for phases, g in groups.items():
                for p in phases:
                    w.load[p] += len(g) * steps
        for phases, g in list(groups.items()):
            while g and g[-1].hi - g[-1].x <= raised:
                c = g.pop()
                c.x, c.reason = c.hi, UNUSED if c.capped else AT_MAX
                for p in phases:
                    k[p] -= 1
            if not g:
                del groups[phases]
        for phases, why in _binding(groups, k, w):
            g = groups.pop(phases)
            for c in g:
                c.x, c.reason = c.x + raised, why
            for p in phases:
                k[p] -= len(g)


def _counts(groups: dict[tuple[int, ...], list[_Car]]) -> list[int]:
    k = [0, 0, 0]
    for phases, g in groups.items():
        for p in phases:
            k[p] += len(g)
    return k


def _steps(groups: dict[tuple[int, ...], list[_Car]], k: list[int], raised: int, w: _Work) -> int:
    """How many 0.1 A steps every rising car can take together; k: rising cars per building phase."""
    load, budget, house = w.load, w.budget, w.house
    steps = min(g[-1].hi - g[-1].x for g in groups.values()) - raised
    for p in range(3):
        if k[p]:
            steps = min(steps, math.floor((budget[p] - load[p] + EPS) / k[p]))
    if w.total_budget < math.inf:
        steps = min(steps, math.floor((w.total_budget - w.total() + EPS) / (k[0] + k[1] + k[2])))
    m = [load[p] + house[p] for p in range(3)]
    for p, q in _PAIRS:
        if k[p] > k[q]:   # raising everyone widens the gap p - q by (k_p - k_q) per step
            steps = min(steps, math.floor((w.imb_limit - (m[p] - m[q]) + EPS) / (k[p] - k[q])))
    return max(steps, 0)


def _binding(groups: dict[tuple[int, ...], list[_Car]], k: list[int],
             w: _Work) -> list[tuple[tuple[int, ...], str]]:
    """Groups that cannot rise one more step together with the others, and why."""
    full = [p for p in range(3) if k[p] and w.load[p] + k[p] > w.budget[p] + EPS]
    m = [w.load[p] + w.house[p] for p in range(3)]
    gaps = [(p, q) for p, q in _PAIRS
            if k[p] > k[q] and (m[p] - m[q]) + (k[p] - k[q]) > w.imb_limit + EPS]
    if w.total_budget < math.inf and w.total() + k[0] + k[1] + k[2] > w.total_budget + EPS:
        return [(phases, GRID_OPERATOR) for phases in groups]   # everyone shares the one total
    if not full and not gaps:   # the usual round: only cars reaching their max stop; skip the groups
        return []
    out = []
    for phases in groups:
        on_full = [p for p in full if p in phases]
        if on_full:
            out.append((phases, w.phase_reason[on_full[0]]))
        elif any(p in phases and q not in phases for p, q in gaps):
            out.append((phases, IMBALANCE))
    return out


def _whole_amps(cars: list[_Car], w: _Work) -> None:
    """Round the commands of whole-ampere boxes down; that lowers loads, but lowering a car on the
    least loaded phase can widen the imbalance, so then lower (or pause) the lowest-ranked cars on the
    most loaded phase, one step at a time, until the imbalance is within its limit again."""
    for c in cars:
        if c.ev.whole_amps and c.x % DECI:
            w.add(c.phases, -(c.x % DECI))
            c.x -= c.x % DECI
    while w.imbalance() > w.imb_limit + EPS:
        m = [w.load[p] + w.house[p] for p in range(3)]
        top, bottom = m.index(max(m)), m.index(min(m))
        low = next((c for c in reversed(cars) if c.x and top in c.phases and bottom not in c.phases), None)
        if low is None:
            break
        step = DECI if low.ev.whole_amps else 1
        cut = step if low.x - step >= low.lo else low.x
        w.add(low.phases, -cut)
        low.x -= cut
        low.reason = IMBALANCE


def _remember(c: _Car, site: Site, w: _Work) -> None:
    """Keep turns: when a car started, since when one waits, and a pause after a charging car stopped."""
    name = c.ev.name
    if c.x > 0 or name in w.switch_to:     # a car being switched is about to charge: it keeps its place
        w.charging_since.setdefault(name, w.now)
        w.waiting_since.pop(name, None)
        w.held_since.pop(name, None)
        w.pause_why.pop(name, None)
        return
    if name in w.charging_since:           # it was charging and no longer fits: stop
        if w.transients:                   # ... for a moment only: no pause, it keeps its place
            w.held_since.setdefault(name, w.now)
            c.reason = f"{c.reason}; {HELD} ({w.transients[0]})"
            return
        del w.charging_since[name]         # real shortage: pause, counted from when it stopped
        w.paused_until[name] = w.held_since.pop(name, w.now) + site.pause_s
        w.pause_why[name] = c.reason
        w.low_since.pop(name, None)
        w.unused_cap.pop(name, None)
    w.waiting_since.setdefault(name, w.now)
