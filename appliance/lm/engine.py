"""The allocation engine (charging-manager.md §2.6): configuration + measurements + previous state ->
a command per EVSE. Pure and deterministic: no I/O, no clock (time comes in as `meas.now`), no logging.

Internally currents are counted in 0.1 A steps ("deci-amps"): commands are integers there, so rounding
down to 0.1 A is exact and the fair share has a closed form per round (see `_fill`).

Not done: automatic 1p/3p phase switching (§2.6.8) -- a car is allocated on the phases it reports.
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

# reasons shown on the page and in the event log (stable across cycles, so a change means something)
IDLE = "no car"
INACTIVE = "inactive"
UNCONTROLLABLE = "uncontrollable"
OVERDRAWING = "draws more than commanded"
PAUSE = "pause after stop"
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
        self.known = set(self.paused_until).union(self.charging_since, self.waiting_since, self.low_since,
                                                  self.unused_cap, self.over_since)
        limit = site.max_current_per_phase * site.share_percent / 100.0 - site.reserve
        wall = site.max_wallbox_current if site.max_wallbox_current > 0 else math.inf
        self.budget = [min(limit - meas.penalty[p] - meas.house_load[p], wall) * DECI for p in range(3)]
        self.phase_reason = [f"L{p + 1} limit" if limit - meas.penalty[p] - meas.house_load[p] <= wall
                             else "wallbox line limit" for p in range(3)]
        self.load = [0.0, 0.0, 0.0]          # deci: wallbox load per building phase (budget check)
        self.house = [h * DECI for h in meas.house_load] if site.imbalance_incl_consumption else [0.0] * 3
        self.imb_limit = site.max_imbalance * DECI   # raised to the uncontrolled loads' own imbalance later

    def forget(self, name: str) -> None:
        # `known` is the names with state at the start; an EVSE is forgotten on a path where nothing
        # was added for it in this call, so most idle boxes return here at once
        if name not in self.known:
            return
        for d in (self.paused_until, self.charging_since, self.waiting_since, self.low_since,
                  self.unused_cap, self.over_since):
            d.pop(name, None)

    def add(self, phases: tuple[int, ...], deci: float) -> None:
        for p in phases:
            self.load[p] += deci

    def imbalance(self) -> float:
        m = [self.load[p] + self.house[p] for p in range(3)]
        return max(m) - min(m)

    def state(self, names: set[str]) -> EngineState:
        keep = lambda d: {k: v for k, v in d.items() if k in names}  # noqa: E731
        return EngineState(keep(self.paused_until), keep(self.charging_since), keep(self.waiting_since),
                           {"low_since": keep(self.low_since), "unused_cap": keep(self.unused_cap),
                            "over_since": keep(self.over_since)})


def allocate(site: Site, evses: list[Evse], meas: Measurements,
             state: EngineState) -> tuple[dict[str, Allocation], EngineState]:
    """One decision: a command per EVSE (0 = paused) with the reason, and the state for next time."""
    w = _Work(site, meas, state)
    out: dict[str, Allocation] = {}
    cands: list[_Car] = []
    now, paused_until = w.now, w.paused_until    # locals: this loop runs once per EVSE every cycle
    for ev in evses:
        name = ev.name
        nph = ev.phases if 1 <= ev.phases <= 3 else 3
        phases = _WIRED.get((nph, ev.rotation)) or building_phases(ev)   # the table holds every valid wiring
        # box draw: the highest measured current on the box phases the car uses (None: no meter); both
        # the overdraw and the unused-current rule need it, so it is taken once here
        draw = None if ev.measured is None else max(ev.measured[:nph])
        fixed = _fixed_charge(ev, site, w, draw)
        if fixed is not None:                      # §2.6.3: counted at U, first
            u, why = fixed
            w.add(phases, u * DECI)
            out[name] = Allocation(name, 0.0, nph, f"{why}: counted at {u:g} A", counted=u)
        elif not ev.demand:
            w.forget(name)
            out[name] = Allocation(name, 0.0, nph, IDLE)
        elif paused_until.get(name, -math.inf) > now:
            out[name] = Allocation(name, 0.0, nph, PAUSE)
        else:
            if ev.command > 0:   # charging already (e.g. after a restart): its turn and pause rules apply
                w.charging_since.setdefault(name, now)
            cands.append(_candidate(ev, nph, phases, draw, w))
    w.imb_limit = max(w.imb_limit, w.imbalance())   # cars never add to what uncontrolled loads already cause
    for prio in sorted({c.ev.priority for c in cands}, reverse=True):   # §2.6.5: highest level first, fully
        level = _rank([c for c in cands if c.ev.priority == prio], site, w)
        admitted = _admit(level, w)
        _fill(admitted, w)
        _whole_amps(admitted, w)
    for c in cands:
        _remember(c, site, w)
        out[c.ev.name] = Allocation(c.ev.name, c.x / DECI, c.nph, c.reason)
    return out, w.state({ev.name for ev in evses})


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
    return _Car(ev, nph, phases, lo, hi, capped)


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
    due = [c for c in charging if waiting and w.now - w.charging_since[c.ev.name] >= site.rotation_s]
    keep = [c for c in charging if not (waiting and w.now - w.charging_since[c.ev.name] >= site.rotation_s)]
    return fcfs + keep + waiting + due


def _admit(ranked: list[_Car], w: _Work) -> list[_Car]:
    """Admit cars at min (+ offset) in rank order where that fits every building phase they use; then
    pause the lowest-ranked cars loading the highest phase until the imbalance is within its limit."""
    admitted: list[_Car] = []
    rejected: list[_Car] = []
    for c in ranked:
        if c.lo > c.hi:
            c.reason = MIN_ABOVE_MAX
        elif _fits(c, w):
            c.x = c.lo
            w.add(c.phases, c.lo)
            admitted.append(c)
        else:
            short = [p for p in c.phases if w.load[p] + c.lo > w.budget[p] + EPS]
            c.reason = f"{NO_CURRENT} L{short[0] + 1}"
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


def _fits(c: _Car, w: _Work) -> bool:
    for p in c.phases:
        if w.load[p] + c.lo > w.budget[p] + EPS:
            return False
    return True


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
    if c.x > 0:
        w.charging_since.setdefault(name, w.now)
        w.waiting_since.pop(name, None)
        return
    if name in w.charging_since:           # it was charging and no longer fits: stop, and pause
        del w.charging_since[name]
        w.paused_until[name] = w.now + site.pause_s
        w.low_since.pop(name, None)
        w.unused_cap.pop(name, None)
    w.waiting_since.setdefault(name, w.now)
