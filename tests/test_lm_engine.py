"""The allocation engine against charging-manager.md §2.8 (acceptance examples) and the §2.6 details."""
from __future__ import annotations

from dataclasses import replace

import pytest

from appliance.lm import engine
from appliance.lm.engine import allocate
from appliance.lm.model import Allocation, EngineState, Evse, Measurements, Site
from appliance.lm.overdraft import Overdraft
from appliance.lm.safety import violations


def car(name: str, **kw) -> Evse:
    kw.setdefault("demand", True)
    kw.setdefault("max_possible_draw", kw.get("command", 0.0))
    return Evse(name, **kw)


def run(site: Site, evses: list[Evse], now: float = 0.0, state: EngineState | None = None, **meas):
    m = Measurements(now=now, **meas)
    alloc, new_state = allocate(site, evses, m, state or EngineState())
    assert violations(site, evses, m, alloc) == []
    return alloc, new_state


def currents(alloc) -> dict[str, float]:
    return {k: a.current for k, a in alloc.items()}


class Loop:
    """Runs the engine over time the way the controller does: commands take effect at once."""

    def __init__(self, site: Site, evses: list[Evse]):
        self.site, self.evses, self.state = site, {e.name: e for e in evses}, EngineState()

    def step(self, now: float, **meas) -> dict[str, float]:
        alloc, self.state = run(self.site, list(self.evses.values()), now, self.state, **meas)
        for name, a in alloc.items():
            ev = self.evses[name]
            if ev.enabled and ev.controllable:
                self.evses[name] = replace(ev, command=a.current, max_possible_draw=a.current)
        return currents(alloc)


# -- §2.8 acceptance examples (limit 32 A, reserve 0, min 6 A, max 16 A, priority 1) ----------------------

def test_two_three_phase_cars_get_16_a_each_three_get_10_6():
    assert currents(run(Site(), [car("a"), car("b")])[0]) == {"a": 16.0, "b": 16.0}
    assert currents(run(Site(), [car("a"), car("b"), car("c")])[0]) == {"a": 10.6, "b": 10.6, "c": 10.6}


def test_three_single_phase_cars_on_rotated_boxes_get_16_a_each():
    cars = [car(n, phases=1, rotation=r) for n, r in (("a", 0), ("b", 120), ("c", 240))]
    assert currents(run(Site(), cars)[0]) == {"a": 16.0, "b": 16.0, "c": 16.0}


@pytest.mark.parametrize("limit", [20.0, 40.0])
def test_two_single_phase_cars_on_the_same_phase_are_held_by_limit_and_imbalance(limit):
    alloc, _ = run(Site(max_current_per_phase=limit), [car("a", phases=1), car("b", phases=1)])
    assert currents(alloc) == {"a": 10.0, "b": 10.0}   # 20 A one-sided is the imbalance limit
    if limit == 40.0:
        assert alloc["a"].reason == "phase imbalance"


def test_higher_priority_is_served_fully_and_the_rest_pauses_below_min():
    alloc, _ = run(Site(max_current_per_phase=20), [car("hi", priority=2), car("lo", priority=1)])
    assert currents(alloc) == {"hi": 16.0, "lo": 0.0}
    assert "not enough current" in alloc["lo"].reason


def test_two_cars_on_10_a_take_turns_after_rotation_s_and_never_restart_within_pause_s():
    site = Site(max_current_per_phase=10, rotation_s=900, pause_s=300)
    loop = Loop(site, [car("a"), car("b")])
    first = loop.step(0)
    assert sorted(first.values()) == [0.0, 10.0]
    on, off = max(first, key=first.get), min(first, key=first.get)
    for t in range(3, 900, 3):
        assert loop.step(t) == first
    swapped = loop.step(900)
    assert swapped == {on: 0.0, off: 10.0}
    # the stopped car waits at least pause_s, and its turn comes after rotation_s of the other
    for t in range(903, 1800, 3):
        assert loop.step(t) == swapped
    assert loop.step(1800) == first


def test_a_stopped_car_does_not_restart_within_pause_s_even_with_room():
    site = Site(max_current_per_phase=10, pause_s=300)
    loop = Loop(site, [car("a", priority=1), car("b", priority=2, demand=False)])
    assert loop.step(0)["a"] == 10.0
    loop.evses["b"] = replace(loop.evses["b"], demand=True)
    assert loop.step(3) == {"a": 0.0, "b": 10.0}          # the higher priority takes the current
    loop.evses["b"] = replace(loop.evses["b"], demand=False)
    assert loop.step(6)["a"] == 0.0                       # room again, but a is in its pause
    assert loop.step(302)["a"] == 0.0
    assert loop.step(303)["a"] == 10.0


def test_house_load_on_l1_pauses_three_phase_cars_but_not_a_single_phase_car_on_l2():
    cars = [car("three"), car("one", phases=1, rotation=120)]
    alloc, _ = run(Site(), cars, house_load=(30.0, 0.0, 0.0))
    assert currents(alloc) == {"three": 0.0, "one": 16.0}
    assert alloc["three"].reason.endswith("L1")


def test_a_silent_box_stays_counted_at_its_last_command_and_nobody_is_raised():
    site = Site()
    loop = Loop(site, [car("a", max_current=32), car("b", max_current=16)])
    assert loop.step(0) == {"a": 16.0, "b": 16.0}
    loop.evses["b"] = replace(loop.evses["b"], controllable=False, max_possible_draw=16.0)
    alloc, _ = run(site, list(loop.evses.values()), 3, loop.state)
    assert alloc["a"].current == 16.0
    assert alloc["b"].counted == 16.0 and "uncontrollable" in alloc["b"].reason
    loop.evses["c"] = car("c")                   # a newcomer shares what is left, not b's 16 A
    now = loop.step(6)
    assert now["a"] + now["c"] == 16.0 and now["b"] == 0.0


def test_overdraft_34_a_on_l1_lowers_the_budget_by_2_a_for_5_minutes():
    od = Overdraft(penalty_s=300)
    assert od.update(0.0, (34.0, 20.0, 20.0), 32.0) == (2.0, 0.0, 0.0)
    assert od.peak == [2.0, 0.0, 0.0]
    cars = [car("a", max_current=32)]
    assert run(Site(), cars, penalty=od.penalty(299.0))[0]["a"].current == 30.0
    assert od.update(300.0, (30.0, 20.0, 20.0), 32.0) == (0.0, 0.0, 0.0)
    od.reset()
    assert od.peak == [0.0, 0.0, 0.0]


# -- §2.6 details ------------------------------------------------------------------------------------

def test_offset_is_added_to_the_command_and_counts_against_the_limit():
    alloc, _ = run(Site(max_current_per_phase=20), [car("a", offset=2.0, max_current=32), car("b")])
    # both start at min (a: 6 + 2), then rise together: a 8 + 2, b 6 + 2... until 20 A is used
    assert currents(alloc) == {"a": 11.0, "b": 9.0}


def test_reserve_share_and_wallbox_line_shrink_the_budget():
    assert run(Site(reserve=4), [car("a", max_current=32)])[0]["a"].current == 28.0
    assert run(Site(share_percent=50), [car("a", max_current=32)])[0]["a"].current == 16.0
    alloc, _ = run(Site(max_wallbox_current=20), [car("a"), car("b")])
    assert currents(alloc) == {"a": 10.0, "b": 10.0}
    assert alloc["a"].reason == "wallbox line limit"


def test_unknown_phases_count_on_all_three():
    alloc, _ = run(Site(), [car("a", phases=0), car("b", phases=1, rotation=240, max_current=32)])
    assert currents(alloc) == {"a": 16.0, "b": 16.0}
    assert alloc["a"].phases == 3


def test_min_plus_offset_above_max_never_charges():
    alloc, _ = run(Site(), [car("a", min_current=10, max_current=10, offset=1)])
    assert alloc["a"].current == 0.0 and "above max" in alloc["a"].reason


def test_commands_round_down_to_0_1_a():
    alloc, _ = run(Site(max_current_per_phase=20), [car(n) for n in "abc"])
    assert currents(alloc) == {"a": 6.6, "b": 6.6, "c": 6.6}


def test_first_come_first_served_ranks_the_earlier_car_first():
    cars = [car("late", fcfs=True, plugged_at=50.0), car("early", fcfs=True, plugged_at=10.0)]
    assert currents(run(Site(max_current_per_phase=10), cars)[0]) == {"late": 0.0, "early": 10.0}


def test_unused_current_goes_to_others_and_comes_back_when_the_car_wants_it():
    site = Site(max_current_per_phase=26)
    loop = Loop(site, [car("slow", measured=(5.0, 5.0, 5.0)), car("fast", max_current=32)])
    assert loop.step(0) == {"slow": 13.0, "fast": 13.0}
    for t in range(3, 63, 3):                              # low since t=3, when its command took effect
        assert loop.step(t) == {"slow": 13.0, "fast": 13.0}
    capped = loop.step(63)
    assert capped == {"slow": 7.0, "fast": 19.0}           # its draw + 2 A; the rest to the other car
    assert loop.step(66) == capped
    loop.evses["slow"] = replace(loop.evses["slow"], measured=(6.5, 6.5, 6.5))
    assert loop.step(69) == {"slow": 13.0, "fast": 13.0}   # within 1 A of the cap: raised again


def test_unused_current_cap_is_never_below_min():
    loop = Loop(Site(), [car("a", measured=(1.0, 1.0, 1.0))])
    loop.step(0)
    loop.step(3)
    assert loop.step(63)["a"] == 6.0


def test_a_box_drawing_more_than_commanded_is_counted_at_its_maximum_after_10_s():
    site = Site()
    evs = [car("liar", command=10.0, max_current=10, measured=(14.0, 14.0, 14.0)), car("b", max_current=32)]
    alloc, st = run(site, evs, 0.0)
    assert currents(alloc) == {"liar": 10.0, "b": 22.0}
    alloc, st = run(site, evs, 9.9, st)
    assert currents(alloc) == {"liar": 10.0, "b": 22.0}
    alloc, st = run(site, evs, 10.0, st)
    assert alloc["liar"].counted == 14.0 and "more than commanded" in alloc["liar"].reason
    assert alloc["b"].current == 18.0


@pytest.mark.parametrize("mode,counted", [("stop", 0.0), ("min_current", 6.0), ("clear_limits", 16.0)])
def test_an_inactive_box_is_counted_at_what_deactivation_leaves_it(mode, counted):
    site = Site(on_deactivate=mode)
    alloc, _ = run(site, [car("off", enabled=False), car("b", max_current=32)])
    assert alloc["off"].current == 0.0 and alloc["off"].counted == counted
    assert alloc["b"].current == 32.0 - counted


def test_a_car_without_demand_gets_nothing_and_its_turn_state_is_dropped():
    alloc, st = run(Site(), [car("a", demand=False, command=16.0)])
    assert alloc["a"].current == 0.0 and alloc["a"].reason == "no car"
    assert st.charging_since == {} and st.waiting_since == {}


def test_imbalance_including_consumption_counts_the_house():
    site = Site(imbalance_incl_consumption=True)
    alloc, _ = run(site, [car("a", phases=1)], house_load=(0.0, 10.0, 10.0))
    assert alloc["a"].current == 16.0                      # L1 16 vs 10/10: gap 6
    alloc, _ = run(site, [car("a", phases=1, rotation=120)], house_load=(0.0, 10.0, 0.0))
    assert alloc["a"].current == 10.0                      # L2 10 + 10 vs L1 0: gap 20


def test_the_engine_is_deterministic_and_leaves_its_input_state_alone():
    evs = [car(n, phases=1 + i % 3, rotation=(i * 120) % 360) for i, n in enumerate("abcdefg")]
    st = EngineState(paused_until={"a": 100.0})
    one = allocate(Site(max_current_per_phase=25), evs, Measurements(now=5), st)
    two = allocate(Site(max_current_per_phase=25), evs, Measurements(now=5), st)
    assert one == two
    assert st == EngineState(paused_until={"a": 100.0})


def test_whole_ampere_boxes_get_whole_amperes_and_the_imbalance_still_holds():
    alloc, _ = run(Site(max_current_per_phase=20), [car(n, whole_amps=True) for n in "abc"])
    assert currents(alloc) == {"a": 6.0, "b": 6.0, "c": 6.0}
    # the 1-phase car on L2 is whole-amp: 10.5 -> 10; the two on L1 must follow so the gap stays <= 20
    cars = [car("x", phases=1, max_current=32), car("y", phases=1, max_current=32),
            car("z", phases=1, rotation=120, whole_amps=True, min_current=6.5, max_current=10.5)]
    alloc, _ = run(Site(max_current_per_phase=63, max_imbalance=20), cars)
    assert alloc["z"].current == 10.0
    assert alloc["x"].current + alloc["y"].current <= 30.0


def test_a_car_found_charging_without_history_is_paused_when_stopped():
    """After a restart the engine has no state; a car with a command in effect counts as charging."""
    site = Site(max_current_per_phase=10, pause_s=300)
    alloc, st = run(site, [car("a", command=10.0), car("b", priority=2)], now=0)
    assert currents(alloc) == {"a": 0.0, "b": 10.0}
    assert st.paused_until == {"a": 300.0}


# -- pauses only for real shortage -----------------------------------------------------------------------

def test_an_adopted_box_counted_at_its_max_for_a_cycle_holds_charging_cars_without_a_pause():
    site = Site(max_current_per_phase=32, pause_s=300)
    loop = Loop(site, [car("a"), car("b")])
    assert loop.step(0) == {"a": 16.0, "b": 16.0}
    assert loop.step(3) == {"a": 16.0, "b": 16.0}
    loop.evses["new"] = car("new", controllable=False, max_possible_draw=32.0, max_current=32)
    held = loop.step(6)
    assert held["a"] == held["b"] == 0.0
    alloc, _ = run(site, list(loop.evses.values()), 6, loop.state)
    assert "held, no pause (new uncontrollable)" in alloc["a"].reason and alloc["a"].reason.startswith("waiting")
    loop.evses["new"] = car("new", demand=False, max_current=32)     # adopted: at 0 A, no car
    assert loop.step(9) == {"a": 16.0, "b": 16.0, "new": 0.0}       # back at once, no 300 s pause
    assert loop.state.paused_until == {}


def test_a_box_uncontrollable_longer_than_a_transient_is_a_real_shortage_paused_from_the_stop():
    site = Site(max_current_per_phase=20, pause_s=300)
    loop = Loop(site, [car("a"), car("old", command=0.0, demand=False)])
    loop.step(0)
    loop.step(100)                                           # "old" is no longer new
    loop.evses["old"] = replace(loop.evses["old"], controllable=False, max_possible_draw=16.0)
    assert loop.step(103)["a"] == 0.0                        # held while "old" is briefly silent
    assert loop.state.paused_until == {}
    assert loop.step(103 + engine.TRANSIENT_S)["a"] == 0.0   # still silent: real shortage, paused from 103
    assert loop.state.paused_until == {"a": 403.0}
    alloc, _ = run(site, list(loop.evses.values()), 200, loop.state)
    assert alloc["a"].reason.startswith("pause after stop (waiting: not enough current on L1")


def test_a_lower_limit_from_the_configuration_holds_then_pauses_if_it_stays():
    loop = Loop(Site(max_current_per_phase=32), [car("a"), car("b")])
    loop.step(0)
    loop.step(3)
    loop.site = Site(max_current_per_phase=10)
    now = loop.step(6)
    assert sorted(now.values()) == [0.0, 10.0] and loop.state.paused_until == {}
    loop.step(6 + engine.TRANSIENT_S)
    (stopped,) = [n for n, a in now.items() if a == 0]
    assert loop.state.paused_until == {stopped: 306.0}


def test_a_stop_for_rotation_says_so():
    site = Site(max_current_per_phase=10, rotation_s=900, pause_s=300)
    loop = Loop(site, [car("a"), car("b")])
    first = loop.step(0)
    on = max(first, key=first.get)
    loop.step(900)
    alloc, _ = run(site, list(loop.evses.values()), 901, loop.state)
    assert alloc[on].reason == "pause after stop (gave way to a waiting car)"


# -- 1p/3p switching (§2.6.8) --------------------------------------------------------------------------------

class Relay(Loop):
    """The loop plus a box relay: a commanded phase change happens once the command is 0."""

    def step(self, now: float, **meas) -> dict[str, float]:
        alloc, self.state = run(self.site, list(self.evses.values()), now, self.state, **meas)
        self.last = alloc
        for name, a in alloc.items():
            ev = self.evses[name]
            if ev.enabled and ev.controllable:
                phases = a.phases if ev.switch_phases and a.current == 0 else ev.phases
                self.evses[name] = replace(ev, command=a.current, max_possible_draw=a.current, phases=phases)
        return currents(alloc)


def test_a_three_phase_car_short_on_l1_switches_to_one_phase_and_back_after_delay_3p_s():
    site = Site(max_current_per_phase=32, delay_3p_s=300)
    loop = Relay(site, [car("sw", rotation=120, switch_phases=True), car("fixed")])
    assert loop.step(0, house_load=(30.0, 0.0, 0.0)) == {"sw": 0.0, "fixed": 0.0}
    assert loop.last["sw"].phases == 1 and loop.last["sw"].reason == "switching to 1 phase"
    assert loop.last["fixed"].reason.endswith("L1")
    assert loop.step(3, house_load=(30.0, 0.0, 0.0))["sw"] == 16.0     # on box L1 = building L2
    assert loop.evses["sw"].phases == 1 and loop.last["sw"].phases == 1
    for t in range(6, 300, 3):                                          # house load gone: wait delay_3p_s
        assert loop.step(t)["sw"] == 16.0
    assert loop.step(306) == {"sw": 0.0, "fixed": 16.0}
    assert loop.last["sw"].reason == "switching to 3 phases" and loop.last["sw"].phases == 3
    assert loop.step(309) == {"sw": 16.0, "fixed": 16.0}
    assert loop.state.paused_until == {}                                 # a switch is not a pause


def test_flapping_current_restarts_the_3_phase_delay():
    site = Site(max_current_per_phase=32, delay_3p_s=300)
    loop = Relay(site, [car("sw", switch_phases=True, rotation=120)])
    loop.step(0, house_load=(30.0, 0.0, 0.0))
    loop.step(3, house_load=(30.0, 0.0, 0.0))
    for t in range(6, 1200, 3):                 # L1 free every other minute: never 300 s in a row
        house = (30.0, 0.0, 0.0) if (t // 60) % 2 else (0.0, 0.0, 0.0)
        assert loop.step(t, house_load=house)["sw"] == 16.0
        assert loop.evses["sw"].phases == 1


def test_a_box_that_never_switches_is_given_up_after_the_timeout():
    site = Site(max_current_per_phase=32)
    loop = Loop(site, [car("sw", switch_phases=True, rotation=120)])    # Loop: the relay never moves
    alloc, state = run(site, list(loop.evses.values()), 0, house_load=(30.0, 0.0, 0.0))
    assert alloc["sw"].phases == 1
    alloc, state = run(site, list(loop.evses.values()), engine.SWITCH_TIMEOUT_S, state, house_load=(30.0, 0.0, 0.0))
    assert alloc["sw"].phases == 3 and alloc["sw"].reason.startswith("waiting")


def test_a_car_whose_box_cannot_switch_is_never_commanded_another_phase_count():
    alloc, _ = run(Site(), [car("x")], house_load=(30.0, 0.0, 0.0))
    assert alloc["x"].phases == 3 and alloc["x"].current == 0.0


# -- the grid operator's limit (§14a EnWG) ---------------------------------------------------------------

def test_the_grid_operator_limit_bounds_all_wallboxes_together():
    site = Site(max_current_per_phase=63, power_limit_w=2 * 4200)
    alloc, _ = run(site, [car("a"), car("b"), car("c", phases=1)])
    used = 3 * alloc["a"].current + 3 * alloc["b"].current + alloc["c"].current
    assert used * 230 <= 8400 and 8400 - used * 230 < 7 * 23        # within a step of the limit each
    assert {a.reason for a in alloc.values()} == {"grid operator limit"}
    tight, _ = run(replace(site, power_limit_w=4200), [car("a"), car("b")])
    assert sorted(currents(tight).values()) == [0.0, 6.0]          # 4.2 kW: one 3-phase car at 6 A


def test_safety_catches_commands_over_the_grid_operator_limit():
    site = Site(max_current_per_phase=63, power_limit_w=4200)
    evs = [car("a")]
    assert violations(site, evs, Measurements(now=0), {"a": Allocation("a", 7.0, 3, "x")})
