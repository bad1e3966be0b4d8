"""The load-management controller in isolation, against the Device interface: write order, failed and
slow applies, deactivation, monitor mode, status, events and history. The devices here are small
in-process Device subclasses (the controller only ever sees that interface); a real Runtime with a
real config file and SQLite store is used. End-to-end runs with simulated wallboxes live elsewhere."""
from __future__ import annotations

import time

import tempfile
from pathlib import Path

import gevent
import gevent.event
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import config as config_mod
from appliance.devices.base import Device, DeviceStatus
from appliance.lm import controller as controller_mod
from appliance.lm.controller import RETRY_S, Controller
from appliance.lm.model import Allocation, Evse
from appliance.runtime import Runtime
from conftest import wait_for


class Box(Device):
    """A wallbox that does what the test says: confirm, refuse, or block until released."""

    kind = "testbox"

    def __init__(self, name: str, journal: list, command: float = 0.0, max_current: float = 32.0,
                 priority: int = 1, active: bool = True, demand: bool = True):
        super().__init__(name, {"type": "testbox", "active": active, "max_current": max_current}, None)
        self.journal, self.command, self.max_current, self.priority = journal, command, max_current, priority
        self.demand, self.controllable, self.measured = demand, True, None
        self.refuse = False
        self.delay = 0.01                                # a reply takes a moment
        self.gate: gevent.event.Event | None = None      # set: apply blocks until the gate opens

    def lm_input(self) -> Evse:
        return Evse(self.name, max_current=self.max_current, priority=self.priority, demand=self.demand,
                    controllable=self.controllable, command=self.command, max_possible_draw=self.command,
                    measured=self.measured)

    def apply(self, current: float, phases: int) -> bool:
        self.journal.append(("send", self.name, current))
        if self.gate is not None:
            self.gate.wait()
        gevent.sleep(self.delay)
        if self.refuse:
            self.journal.append(("refused", self.name, current))
            return False
        self.command = current
        self.journal.append(("confirmed", self.name, current))
        return True

    def deactivate(self, mode: str) -> None:
        self.journal.append(("deactivate", self.name, mode))

    def status(self) -> DeviceStatus:
        return DeviceStatus(self.name, self.kind)


class Meter(Device):
    is_evse = False

    def __init__(self, name: str, load):
        super().__init__(name, {"type": "testmeter"}, None)
        self.load = load

    def house_load(self):
        return self.load

    def status(self) -> DeviceStatus:
        return DeviceStatus(self.name, "testmeter")


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def site(conf_file, data_dir):
    """A Runtime on a real config file; returns a factory taking the [load_management] lines."""
    made = []

    def make(lm: str = "", **kw) -> tuple[Runtime, Controller, Clock, list]:
        cfg = config_mod.load(conf_file("[load_management]\nsettle_s = 5\n" + lm))
        rt = Runtime(cfg, data_dir)
        clock = Clock()
        ctl = Controller(rt, apply_wait_s=kw.get("apply_wait_s", 2.0), clock=clock)
        made.append((rt, ctl))
        return rt, ctl, clock, []

    yield make
    for rt, ctl in made:
        ctl.stop()
        rt.close()


def sends(journal, name=None):
    return [(n, a) for what, n, a in journal if what == "send" and (name is None or n == name)]


def test_reductions_are_confirmed_and_settled_before_any_increase(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 32\n")
    a, b = Box("a", journal, command=16), Box("b", journal, command=16, max_current=16)
    rt.devices.update(a=a, b=b)
    assert ctl.cycle()["a"].current == 16
    assert journal == []                                  # nothing changed, nothing sent
    b.demand = False                                      # b's car leaves: b to 0, a may rise to 32
    ctl.cycle()
    assert journal == [("send", "b", 0.0), ("confirmed", "b", 0.0)]
    clock.t += 3
    ctl.cycle()                                           # confirmed, but not settled yet
    assert sends(journal, "a") == []
    clock.t += 2
    ctl.cycle()                                           # settle_s passed
    assert journal[-2:] == [("send", "a", 32.0), ("confirmed", "a", 32.0)]


def test_an_increase_may_follow_at_once_when_the_reduced_box_draw_fell(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 32\n")
    a, b = Box("a", journal, command=16), Box("b", journal, command=16, max_current=16)
    rt.devices.update(a=a, b=b)
    b.demand = False
    ctl.cycle()
    b.measured = (0.2, 0.0, 0.0)
    clock.t += 1
    ctl.cycle()
    assert sends(journal) == [("b", 0.0), ("a", 32.0)]


def test_an_unconfirmed_reduction_keeps_the_box_counted_at_its_old_value(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 32\n")
    a, b = Box("a", journal, command=16), Box("b", journal, command=16, max_current=16)
    rt.devices.update(a=a, b=b)
    b.refuse = True
    b.demand = False
    ctl.cycle()
    assert journal == [("send", "b", 0.0), ("refused", "b", 0.0)]
    for _ in range(5):                                    # well past settle_s: a must not get b's 16 A
        clock.t += 3
        alloc = ctl.cycle()
        assert alloc["a"].current == 16.0
        assert alloc["b"].counted == 16.0
    assert sends(journal, "a") == []
    assert rt.lm_status["allocations"]["b"]["reason"] == "uncontrollable: counted at 16 A"
    assert any("failed" in e["message"] for e in rt.store.events(device="b"))
    b.refuse = False                                      # the box answers again: retried, then a rises
    clock.t += RETRY_S
    ctl.cycle()
    wait_for(lambda: journal[-1] == ("confirmed", "b", 0.0), what="retry confirmed")
    clock.t += 5
    ctl.cycle()
    clock.t += 5
    ctl.cycle()
    assert sends(journal, "a") == [("a", 32.0)]


def test_a_failed_increase_counts_the_box_at_the_higher_value(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 32\n")
    a = Box("a", journal, command=0, max_current=16)
    rt.devices["a"] = a
    a.refuse = True
    ctl.cycle()
    assert journal[-1] == ("refused", "a", 16.0)
    c = Box("c", journal, max_current=32)
    rt.devices["c"] = c
    clock.t += 3
    assert ctl.cycle()["c"].current == 16.0               # a may have taken its 16 A without saying so


def test_a_blocking_box_does_not_stall_the_others_beyond_the_bounded_wait(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 32\n", apply_wait_s=0.3)
    slow, quick = Box("slow", journal, command=16), Box("quick", journal, command=16)
    rt.devices.update(slow=slow, quick=quick)
    slow.gate = gevent.event.Event()
    vip = Box("vip", journal, priority=2, max_current=32)
    rt.devices["vip"] = vip                               # takes everything: both others must drop to 0
    started = time.monotonic()
    ctl.cycle()
    assert time.monotonic() - started < 3.0               # bounded by apply_wait_s, not by the slow box
    assert ("confirmed", "quick", 0.0) in journal and ("send", "slow", 0.0) in journal
    for _ in range(3):                                    # while slow's reduction is pending: no increase
        clock.t += 5
        alloc = ctl.cycle()
        assert alloc["slow"].counted == 16.0
    assert sends(journal, "vip") == []
    assert sends(journal, "slow") == [("slow", 0.0)]      # never a second apply while one is running
    slow.gate.set()
    wait_for(lambda: journal[-1] == ("confirmed", "slow", 0.0), what="slow reduction confirmed")
    clock.t += 5
    ctl.cycle()
    assert sends(journal, "vip") == [("vip", 32.0)]


def test_an_inactive_box_is_deactivated_once_also_across_restarts(site):
    rt, ctl, clock, journal = site("on_deactivate = clear_limits\n")
    box = Box("x", journal, command=16, active=False)
    rt.devices["x"] = box
    for _ in range(3):
        clock.t += 3
        alloc = ctl.cycle()
    wait_for(lambda: journal == [("deactivate", "x", "clear_limits")], what="deactivated")
    assert alloc["x"].counted == 32.0 and alloc["x"].reason.startswith("inactive")
    again = Controller(rt, clock=clock)                   # a restart is not a deactivation
    again.cycle()
    gevent.idle()                                         # let anything spawned run: nothing more
    assert journal == [("deactivate", "x", "clear_limits")]
    box.settings["active"] = True
    again.cycle()
    box.settings["active"] = False
    again.cycle()
    wait_for(lambda: journal.count(("deactivate", "x", "clear_limits")) == 2, what="second deactivation")


def test_monitor_mode_shows_everything_and_commands_nothing(site):
    rt, ctl, clock, journal = site("mode = monitor\non_deactivate = stop\n")
    a, b = Box("a", journal, command=10), Box("b", journal)
    a.measured = (9.0, 9.0, 9.0)
    rt.devices.update(a=a, b=b)
    for _ in range(3):
        clock.t += 3
        ctl.cycle()
    wait_for(lambda: len(journal) == 2, what="both deactivated")
    assert sorted(journal) == [("deactivate", "a", "stop"), ("deactivate", "b", "stop")]
    st = rt.lm_status
    assert st["mode"] == "monitor" and st["load_a"] == [9.0, 9.0, 9.0]
    assert st["allocations"]["a"] == {"current": None, "phases": 3, "reason": "monitor mode"}


def test_status_events_and_history_show_allocations_and_their_changes(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 20\n")
    a, b = Box("a", journal), Box("b", journal, priority=2, max_current=16)
    rt.devices.update(a=a, b=b, meter=Meter("meter", (2.0, 0.0, 0.0)))
    for _ in range(4):
        clock.t += 3
        ctl.cycle()
    st = rt.status()["load_management"]
    assert st["budget_a"] == [18.0, 20.0, 20.0]
    assert st["allocations"]["b"] == {"current": 16.0, "phases": 3, "reason": "max current"}
    assert st["allocations"]["a"]["current"] == 0.0 and "L1" in st["allocations"]["a"]["reason"]
    assert isinstance(st["cycle_ms"], float) and st["cycle_s"] == 3.0
    lm_events = [e for e in rt.store.events() if e["message"].startswith("load management")]
    assert len(lm_events) == 2                             # one per device, not one per cycle
    assert rt.store.history(0)[0]["allocations"] == {"a": 0.0, "b": 16.0}


def test_an_overdraw_is_shown_and_lowers_the_budget(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 32\n")
    rt.devices["meter"] = Meter("meter", (34.0, 10.0, 10.0))
    ctl.cycle()
    st = rt.lm_status
    assert st["overdraft_a"] == [2.0, 0.0, 0.0] and st["penalty_a"] == [2.0, 0.0, 0.0]
    assert st["budget_a"] == [-4.0, 22.0, 22.0]


def test_an_unsafe_allocation_is_paused_and_logged(site, monkeypatch):
    rt, ctl, clock, journal = site("max_current_per_phase = 20\n")
    rt.devices.update(a=Box("a", journal), b=Box("b", journal, priority=2))

    def broken(site_, evses, meas, state):
        return {ev.name: Allocation(ev.name, 16.0, 3, "bug") for ev in evses}, state

    monkeypatch.setattr(controller_mod, "allocate", broken)
    alloc = ctl.cycle()
    assert alloc["a"].current == 0.0 and alloc["b"].current == 16.0
    assert any(e["level"] == "error" and "unsafe" in e["message"] for e in rt.store.events())
    assert sends(journal) == [("b", 16.0)]


def test_the_loop_runs_cycles_and_an_event_triggers_one_soon(site):
    rt, _, _, journal = site("cycle_s = 60\nmax_current_per_phase = 32\n")
    box = Box("a", journal, demand=False)
    rt.devices["a"] = box
    ctl = controller_mod.start(rt)
    try:
        deadline = time.monotonic() + 5
        while "allocations" not in rt.lm_status and time.monotonic() < deadline:
            gevent.sleep(0.02)
        assert rt.lm_status["allocations"]["a"]["reason"] == "no car"
        box.demand = True
        rt.lm_trigger()                                    # not 60 s: about one second
        while not journal and time.monotonic() < deadline:
            gevent.sleep(0.02)
        assert journal[:1] == [("send", "a", 32.0)]
    finally:
        ctl.stop()


def test_a_stopped_car_shows_its_pause_time_left(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 16\npause_s = 300\n")
    a = Box("a", journal, max_current=16)
    rt.devices["a"] = a
    ctl.cycle()
    assert a.command == 16.0
    rt.devices["b"] = Box("b", journal, priority=2, max_current=16)
    clock.t += 3
    ctl.cycle()
    assert a.command == 0.0
    clock.t += 100
    ctl.cycle()
    assert rt.lm_status["allocations"]["a"] == {
        "current": 0.0, "phases": 3, "reason": "pause after stop (waiting: not enough current on L1)",
        "pause_left_s": 200}


def possible_draw_never_exceeds(journal: list, limit: float) -> None:
    """Replay the journal: a box may draw its last confirmed command, or anything sent to it since
    (a refused or unanswered command may still have taken effect). Their sum must stay <= limit."""
    confirmed: dict[str, float] = {}
    since: dict[str, list[float]] = {}
    for what, name, amps in journal:
        if what == "send":
            since.setdefault(name, []).append(amps)
        elif what == "confirmed":
            confirmed[name], since[name] = amps, []
        total = sum(max([confirmed.get(n, 0.0)] + since.get(n, [])) for n in set(confirmed) | set(since))
        assert total <= limit + 1e-9, (what, name, amps, total)


@settings(derandomize=True, database=None, max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["plug", "plug", "unplug", "refuse", "slow", "slow", "quick"]),
                          st.sampled_from([0.5, 3.0, 6.0, 31.0])), min_size=5, max_size=20),
       st.sampled_from(["0", "5"]))
def test_what_may_flow_never_exceeds_the_limit_whatever_the_boxes_do(actions, settle):
    """Cars come and go while boxes refuse, answer slowly (beyond the cycle's wait) or normally."""
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "ampgate.conf"
        conf.write_text(f"[load_management]\nmax_current_per_phase = 32\nsettle_s = {settle}\n", encoding="utf-8")
        rt = Runtime(config_mod.load(conf), Path(tmp) / "var")
        clock, journal = Clock(), []
        ctl = Controller(rt, apply_wait_s=0.02, clock=clock)
        boxes = [Box(f"b{i}", journal, max_current=16 + 8 * (i % 2), priority=1 + i % 2, demand=False)
                 for i in range(4)]
        rt.devices.update({b.name: b for b in boxes})
        try:
            for index, action, dt in actions:
                box = boxes[index]
                if action in ("plug", "unplug"):
                    box.demand = action == "plug"
                else:
                    box.refuse = action == "refuse"
                    box.delay = 0.05 if action == "slow" else 0.001
                clock.t += dt
                ctl.cycle()
            gevent.sleep(0.1)                             # let slow answers arrive
            possible_draw_never_exceeds(journal, 32.0)
        finally:
            ctl.stop()
            rt.close()
