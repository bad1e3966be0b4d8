"""Property-based tests of the engine and of the independent safety check (charging-manager.md §2.7):
random sites, wallboxes and measurements, including uncontrollable and inactive boxes counted at U,
house load, reserve, penalty, share, the wallbox line, offsets, rotations and 1/2/3-phase cars.
Derandomized, so CI runs the same examples every time."""
from __future__ import annotations

import math
import os
from dataclasses import replace

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from appliance.lm.engine import HELD, allocate
from appliance.lm.model import Allocation, EngineState, Evse, Measurements, Site
from appliance.lm.safety import enforce, violations

# Example counts keep this module around 20 s on a loaded 2-core box. To dig deeper, run with
# LM_PROPERTY_SCALE=20 (20 times the examples, random instead of the fixed derandomized ones).
SCALE = int(os.environ.get("LM_PROPERTY_SCALE", "1"))


def _settings(examples: int) -> settings:
    return settings(derandomize=SCALE == 1, database=None, max_examples=examples * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow] if SCALE > 1 else [])


FAST, MANY, SLOW = _settings(150), _settings(400), _settings(120)

# The test's own wiring table and arithmetic: a third opinion beside the engine and the checker.
WIRING = {0: "012", 120: "120", 240: "201"}


def on(ev: Evse) -> list[int]:
    return [int(c) for c in WIRING[ev.rotation][: ev.phases or 3]]


def tenths(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.integers(round(lo * 10), round(hi * 10)).map(lambda i: i / 10)


sites = st.builds(
    Site,
    max_current_per_phase=tenths(0, 100),
    reserve=st.one_of(st.just(0.0), tenths(0, 10)),
    share_percent=st.sampled_from([100.0, 100.0, 75.0, 50.0]),
    max_wallbox_current=st.one_of(st.just(0.0), tenths(5, 80)),
    max_imbalance=st.one_of(st.just(20.0), tenths(0, 40)),
    imbalance_incl_consumption=st.booleans(),
    on_deactivate=st.sampled_from(["stop", "min_current", "clear_limits"]),
    pause_s=st.sampled_from([0.0, 300.0]),
    rotation_s=st.sampled_from([0.0, 900.0]),
    power_limit_w=st.one_of(st.just(0.0), st.just(0.0), st.integers(1000, 40000).map(float)),
)

roomy_sites = sites.map(lambda s: replace(s, max_current_per_phase=s.max_current_per_phase + 40,
                                            max_imbalance=s.max_imbalance + 20, power_limit_w=0.0,
                                            max_wallbox_current=s.max_wallbox_current and s.max_wallbox_current + 40))


def _evse(i: int, raw: tuple, all_candidates: bool) -> Evse:
    """Build one wallbox from raw integers (pre-built strategies draw far faster than composite ones)."""
    mn10, mx_frac, cmd_frac, phases, rot, prio, off10, fcfs, plug, flags, u10, meas = raw
    whole = flags % 7 == 3
    mn = mn10 / 10
    mx = (mn10 + (320 - mn10) * mx_frac // 100) / 10
    command = 0.0 if cmd_frac < 0 else (mn10 + (mx * 10 - mn10) * cmd_frac // 100) / 10
    enabled, controllable, demand = (True, True, True) if all_candidates else (
        flags % 6 != 0, flags % 5 != 0, flags % 2 == 0)
    return Evse(name=f"ev{i}", min_current=mn, max_current=mx, phases=phases, rotation=rot, priority=prio,
                offset=off10 / 10, fcfs=fcfs, plugged_at=plug, enabled=enabled, controllable=controllable,
                max_possible_draw=u10 / 10, demand=demand, measured=meas, command=round(command, 1),
                whole_amps=whole)


phases3 = st.tuples(tenths(0, 40), tenths(0, 40), tenths(0, 40))
_raw_evse = st.tuples(
    st.integers(60, 100), st.integers(0, 100), st.one_of(st.just(-1), st.integers(0, 100)),
    st.sampled_from([0, 1, 1, 2, 3, 3]), st.sampled_from([0, 120, 240]), st.integers(1, 3),
    st.one_of(st.just(0), st.integers(0, 30)), st.booleans(), st.one_of(st.none(), st.integers(0, 1000)),
    st.integers(0, 59), st.integers(0, 320), st.one_of(st.none(), phases3))


def evse_lists(n_max: int = 12, all_candidates: bool = False) -> st.SearchStrategy[list[Evse]]:
    return st.lists(_raw_evse, min_size=1 if all_candidates else 0, max_size=n_max).map(
        lambda raws: [_evse(i, r, all_candidates) for i, r in enumerate(raws)])


measurements = st.builds(Measurements, now=st.floats(0, 10_000),
                         house_load=st.one_of(st.just((0.0, 0.0, 0.0)), phases3),
                         penalty=st.one_of(st.just((0.0, 0.0, 0.0)), st.tuples(tenths(0, 5), tenths(0, 5),
                                                                               tenths(0, 5))))


def counted_at(site: Site, ev: Evse, a: Allocation) -> float:
    if not ev.enabled:
        return max(ev.max_possible_draw, {"stop": 0.0, "min_current": ev.min_current}.get(
            site.on_deactivate, ev.max_current), a.counted)
    if not ev.controllable:
        return max(ev.max_possible_draw, a.counted)
    return max(a.current, a.counted)


def assert_invariants(site: Site, evs: list[Evse], m: Measurements, alloc: dict[str, Allocation]) -> None:
    assert violations(site, evs, m, alloc) == []
    limit = site.max_current_per_phase * site.share_percent / 100 - site.reserve
    load, ours = [0.0] * 3, [0.0] * 3
    for ev in evs:
        a = alloc[ev.name]
        c = a.current
        assert c == 0 or ev.min_current <= c <= ev.max_current + 1e-9, (ev, a)
        assert abs(c * 10 - round(c * 10)) < 1e-9
        if ev.whole_amps:
            assert c == int(c)
        if not (ev.enabled and ev.controllable):
            assert c == 0
        for p in on(ev):
            load[p] += counted_at(site, ev, a)
            ours[p] += c
    for p in range(3):
        if ours[p] > 0:
            assert m.house_load[p] + load[p] <= limit - m.penalty[p] + 1e-6
            if site.max_wallbox_current:
                assert load[p] <= site.max_wallbox_current + 1e-6
    if any(ours) and site.power_limit_w:
        assert sum(load) * site.voltage <= site.power_limit_w + 1e-6


@MANY
@given(sites, evse_lists(), measurements)
def test_no_limit_is_ever_exceeded(site, evs, m):
    alloc, _ = allocate(site, evs, m, EngineState())
    assert set(alloc) == {ev.name for ev in evs}
    assert_invariants(site, evs, m, alloc)


def _cycles(site: Site, evs: list[Evse], steps: list[tuple]):
    """Run the engine over `steps` (dt, which car plugs in or out, house load, extra...), checking the
    invariants each cycle; yields (now, allocation, extra) so the test can feed the commands back into
    `evs` (the same list, changed in place)."""
    state, now = EngineState(), 0.0
    for dt, flip, house, *extra in steps:
        now += dt
        if evs:
            i = flip % len(evs)
            evs[i] = replace(evs[i], demand=not evs[i].demand)
        m = Measurements(now=now, house_load=house)
        alloc, state = allocate(site, evs, m, state)
        assert_invariants(site, evs, m, alloc)
        yield now, alloc, (extra[0] if extra else None)


@SLOW
@given(sites, evse_lists(n_max=8), st.lists(st.tuples(st.floats(0.5, 400), st.integers(0, 7), phases3),
                                            min_size=5, max_size=25))
def test_limits_hold_over_time_and_a_stopped_car_never_restarts_within_pause_s(site, evs, steps):
    """Run cycles with the commands fed back, cars plugging in and out, and the house load changing.
    A car stopped by a transient (a box counted above its command just now) is held, not paused: it may
    restart early only if every cycle since its stop said so."""
    stopped_at: dict[str, tuple[float, bool]] = {}
    for now, alloc, _ in _cycles(site, evs, steps):
        for i, ev in enumerate(evs):
            c, held = alloc[ev.name].current, HELD in alloc[ev.name].reason
            if ev.demand and ev.enabled and ev.controllable:
                if ev.command > 0 and c == 0:
                    stopped_at[ev.name] = (now, held)
                elif c == 0 and ev.name in stopped_at:
                    stopped_at[ev.name] = (stopped_at[ev.name][0], stopped_at[ev.name][1] and held)
                elif c > 0 and ev.command == 0 and ev.name in stopped_at:
                    at, only_held = stopped_at[ev.name]
                    assert only_held or now - at >= site.pause_s
            else:
                stopped_at.pop(ev.name, None)
            if ev.enabled and ev.controllable:
                evs[i] = replace(ev, command=c, max_possible_draw=c)


def _need(ev: Evse) -> float:
    """The least command that gives the car its min: min + offset, rounded up to 0.1 A or whole A."""
    return math.ceil(ev.min_current + ev.offset) if ev.whole_amps else ev.min_current + ev.offset + 0.1


def _all_at_min_fits(site: Site, evs: list[Evse], m: Measurements) -> bool:
    limit = site.max_current_per_phase * site.share_percent / 100 - site.reserve
    wall = site.max_wallbox_current or float("inf")
    need = [0.0] * 3
    for ev in evs:
        for p in on(ev):
            need[p] += _need(ev)
    if any(need[p] > min(limit - m.penalty[p] - m.house_load[p], wall) for p in range(3)):
        return False
    extra = m.house_load if site.imbalance_incl_consumption else (0, 0, 0)
    gap = max(need[p] + extra[p] for p in range(3)) - min(need[p] + extra[p] for p in range(3))
    base = max(extra) - min(extra)
    return gap <= max(site.max_imbalance, base)


@FAST
@given(roomy_sites, evse_lists(n_max=6, all_candidates=True), measurements)
def test_with_enough_current_every_car_of_one_priority_gets_at_least_its_minimum(site, evs, m):
    evs = [replace(ev, priority=1) for ev in evs]
    assume(all(_need(ev) <= (math.floor(ev.max_current) if ev.whole_amps else ev.max_current) for ev in evs))
    assume(_all_at_min_fits(site, evs, m))
    alloc, _ = allocate(site, evs, m, EngineState())
    assert all(alloc[ev.name].current >= ev.min_current for ev in evs), alloc


@FAST
@given(evse_lists(n_max=8, all_candidates=True), st.floats(0, 20))
def test_when_every_car_fits_at_its_max_every_car_gets_its_max(evs, spare):
    need = [0.0] * 3
    for ev in evs:
        for p in on(ev):
            need[p] += ev.max_current
    site = Site(max_current_per_phase=max(need) + spare, max_imbalance=1000)
    alloc, _ = allocate(site, evs, Measurements(now=0), EngineState())
    for ev in evs:
        top = math.floor(ev.max_current) if ev.whole_amps else ev.max_current
        need = math.ceil(ev.min_current + ev.offset - 1e-9) if ev.whole_amps else ev.min_current + ev.offset
        want = top if need <= top + 1e-9 else 0.0
        assert alloc[ev.name].current == want


# -- the safety check must catch broken allocations -----------------------------------------------------

def _commanded(evs: list[Evse], alloc: dict[str, Allocation]) -> list[Evse]:
    return [ev for ev in evs if ev.enabled and ev.controllable and alloc[ev.name].current > 0]


@FAST
@given(roomy_sites, evse_lists(), measurements, st.data())
def test_safety_catches_a_command_pushing_a_phase_over_its_limit(site, evs, m, data):
    alloc, _ = allocate(site, evs, m, EngineState())
    victims = _commanded(evs, alloc)
    assume(victims)
    ev = data.draw(st.sampled_from(victims))
    limit = site.max_current_per_phase * site.share_percent / 100 - site.reserve
    wall = site.max_wallbox_current or float("inf")
    slack = min(min(limit - m.penalty[p] - m.house_load[p], wall)
                - sum(counted_at(site, o, alloc[o.name]) for o in evs if p in on(o)) for p in on(ev))
    broken = dict(alloc, **{ev.name: replace(alloc[ev.name], current=round(alloc[ev.name].current + slack + 0.1, 1))})
    assert violations(site, evs, m, broken)
    fixed, found = enforce(site, evs, m, broken)
    assert found and violations(site, evs, m, fixed) == []


@FAST
@given(sites, evse_lists(), measurements, st.data())
def test_safety_catches_commands_below_min_above_max_or_off_the_grid(site, evs, m, data):
    alloc, _ = allocate(site, evs, m, EngineState())
    ctl = [ev for ev in evs if ev.enabled and ev.controllable]
    assume(ctl)
    ev = data.draw(st.sampled_from(ctl))
    bad = data.draw(st.sampled_from([ev.min_current - 0.1, 0.1, ev.max_current + 0.1, ev.min_current + 0.05]))
    broken = dict(alloc, **{ev.name: replace(alloc[ev.name], current=bad)})
    assert any(ev.name in v for v in violations(site, evs, m, broken))
    fixed, _ = enforce(site, evs, m, broken)
    assert fixed[ev.name].current == 0 and violations(site, evs, m, fixed) == []


@FAST
@given(sites, evse_lists(), measurements, st.data())
def test_enforce_makes_any_allocation_safe_pausing_lowest_priority_first(site, evs, m, data):
    alloc = {ev.name: Allocation(ev.name, data.draw(st.sampled_from([0.0, ev.min_current, ev.max_current])),
                                 3, "random") for ev in evs}
    fixed, found = enforce(site, evs, m, alloc)
    assert violations(site, evs, m, fixed) == []
    assert bool(found) == bool(violations(site, evs, m, alloc))
    paused = [ev for ev in evs if alloc[ev.name].current > 0 and fixed[ev.name].current == 0]
    kept = [ev for ev in _commanded(evs, fixed)]
    if paused and kept:
        assert min(ev.priority for ev in paused) <= max(ev.priority for ev in kept)


def test_safety_counts_an_uncontrollable_box_at_u():
    site = Site(max_current_per_phase=32)
    silent = Evse("silent", controllable=False, max_possible_draw=16.0, demand=True)
    other = Evse("other", max_current=32, demand=True)
    blind = {"silent": Allocation("silent", 0.0, 3, "x"), "other": Allocation("other", 32.0, 3, "x")}
    assert any("L1" in v for v in violations(site, [silent, other], Measurements(now=0), blind))


def test_safety_catches_imbalance_from_single_phase_cars():
    site = Site(max_current_per_phase=63, max_imbalance=20)
    evs = [Evse("a", phases=1, max_current=32, demand=True), Evse("b", phases=1, max_current=32, demand=True)]
    alloc = {"a": Allocation("a", 11.0, 1, "x"), "b": Allocation("b", 10.0, 1, "x")}
    assert violations(site, evs, Measurements(now=0), alloc) == ["imbalance 21.0 A > 20.0 A"]
    fixed, _ = enforce(site, evs, Measurements(now=0), alloc)
    assert fixed["a"].current == 0.0 and fixed["b"].current == 10.0


@SLOW
@given(sites, evse_lists(n_max=8), st.lists(st.booleans(), min_size=8, max_size=8),
       st.lists(st.tuples(st.floats(0.5, 400), st.integers(0, 7), phases3, st.booleans()), min_size=5, max_size=25))
def test_limits_hold_with_any_mix_of_1p_3p_cars_and_switching_states(site, evs, switchable, steps):
    """Boxes that may switch phases, and boxes whose relay is slow or stuck: the relay moves only while
    the command is 0 (and only when `moves`), and the phases a box reports are what it is counted on."""
    evs = [replace(ev, switch_phases=switchable[i], phases=ev.phases if not switchable[i] else (ev.phases or 3) // 2 * 2 + 1)
           for i, ev in enumerate(evs)]
    for _, alloc, moves in _cycles(site, evs, steps):
        for i, ev in enumerate(evs):
            a = alloc[ev.name]
            if not ev.switch_phases:
                assert a.phases == (ev.phases or 3)
            elif a.phases != ev.phases:
                assert a.current == 0             # never current on phases the box does not report
            if ev.enabled and ev.controllable:
                phases = a.phases if ev.switch_phases and a.current == 0 and moves else ev.phases
                evs[i] = replace(ev, command=a.current, max_possible_draw=a.current, phases=phases)
