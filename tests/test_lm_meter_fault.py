"""A meter that stops answering, or never answered (issue 15 item 3): after METER_GRACE_S its house load
is the worst case (the whole connection), so every car is paused; the fault is logged once and shown;
the cars charge again once the meter answers. Unit tests on the controller, a property test of the
rule, and an end-to-end run with the SDM630 simulator going silent while Power Brain cars charge."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import config as config_mod
from appliance.lm import house as house_mod
from appliance.lm.controller import Controller
from appliance.lm.house import METER_GRACE_S
from appliance.runtime import Runtime
from conftest import fast_site_conf, wait_for
from modbus_fixtures import TEST_MODBUS, events, tcp_sim
from test_lm_controller import Box, Clock, Meter


@pytest.fixture
def site(tmp_path):
    """A Runtime on a real config file and a Controller on a test clock (as in test_lm_controller)."""
    made = []

    def make(lm: str) -> tuple[Runtime, Controller, Clock, list]:
        (tmp_path / "ampgate.conf").write_text("[load_management]\n" + lm, encoding="utf-8")
        rt = Runtime(config_mod.load(tmp_path / "ampgate.conf"), tmp_path / "var")
        clock = Clock()
        made.append((rt, Controller(rt, clock=clock)))
        return rt, made[-1][1], clock, []

    yield make
    for rt, ctl in made:
        ctl.stop()
        rt.close()


class FlakyMeter(Meter):
    """A consumption meter whose reading the test sets; None = it does not answer."""

    def __init__(self, name: str, load=None, generation: bool = False):
        super().__init__(name, load)
        self.feeds_in = generation


def test_a_silent_meter_keeps_its_value_only_for_the_grace_then_pauses_every_car(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 32\n")
    a = Box("a", journal, max_current=16)
    meter = FlakyMeter("house", (10.0, 10.0, 10.0))
    rt.devices.update(a=a, house=meter)
    assert ctl.cycle()["a"].current == 16.0
    meter.load = None                                       # stops answering
    clock.t += METER_GRACE_S - 1
    assert ctl.cycle()["a"].current == 16.0                 # within the grace: its last 10 A
    assert rt.lm_status["meter_faults"] == {}
    clock.t += 2
    assert ctl.cycle()["a"].current == 0.0                  # worst case: 32 A of house load
    assert a.command == 0.0
    assert "worst case" in rt.lm_status["meter_faults"]["house"]
    for _ in range(3):
        clock.t += 3
        ctl.cycle()
    faults = [e for e in rt.store.events(device="house") if e["level"] == "error"]
    assert len(faults) == 1 and "meter fault" in faults[0]["message"]        # logged once
    assert rt.lm_status["overdraft_a"] == [0.0, 0.0, 0.0]   # the assumed worst case is no overdraw
    meter.load = (4.0, 4.0, 4.0)                            # back
    clock.t += 400                                          # past the pause after the stop
    assert ctl.cycle()["a"].current == 16.0
    assert rt.lm_status["meter_faults"] == {}
    assert any("answering again" in e["message"] for e in rt.store.events(device="house"))


def test_a_meter_that_never_answered_counts_as_the_worst_case_after_the_grace(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 20\n")
    a = Box("a", journal, max_current=16)
    rt.devices.update(a=a, grid=FlakyMeter("grid", None))
    ctl.cycle()
    clock.t += METER_GRACE_S
    assert ctl.cycle()["a"].current == 0.0
    assert "since start" in rt.lm_status["meter_faults"]["grid"]
    assert rt.lm_status["budget_a"] == [0.0, 0.0, 0.0]


def test_a_lost_generation_meter_counts_no_generation(site):
    rt, ctl, clock, journal = site("max_current_per_phase = 16\n")
    a = Box("a", journal, max_current=16)
    pv = FlakyMeter("pv", (-10.0, -10.0, -10.0), generation=True)
    rt.devices.update(a=a, house=FlakyMeter("house", (10.0, 10.0, 10.0)), pv=pv)
    assert ctl.cycle()["a"].current == 16.0                # 16 - 10 + 10
    pv.load = None
    clock.t += METER_GRACE_S
    assert ctl.cycle()["a"].current == 6.0                 # 16 - 10: the sun is not counted on
    assert "0 A per phase" in rt.lm_status["meter_faults"]["pv"]


LIMIT = 32.0


@settings(derandomize=True, database=None, max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["silent", "silent", "value", "plug", "unplug"]),
                          st.integers(0, 30), st.sampled_from([0.5, 3.0, 6.0, 11.0])), min_size=3, max_size=25))
def test_commands_and_the_assumed_house_load_never_exceed_the_limit(steps):
    """Meters fail and recover at random while cars come and go. After every cycle, per phase: the
    commands + each meter's last reading (while within the grace) or the whole connection (after it)
    stay within the limit. So once a meter is silent past the grace, nothing may be commanded."""
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "ampgate.conf"
        conf.write_text(f"[load_management]\nmax_current_per_phase = {LIMIT:g}\npause_s = 0\n", encoding="utf-8")
        rt = Runtime(config_mod.load(conf), Path(tmp) / "var")
        clock, journal = Clock(), []
        ctl = Controller(rt, apply_wait_s=1.0, clock=clock)
        boxes = [Box(f"b{i}", journal, max_current=16, demand=False) for i in range(3)]
        meters = [FlakyMeter("m0", None), FlakyMeter("m1", (2.0, 2.0, 2.0))]
        rt.devices.update({d.name: d for d in boxes + meters})
        answered = {"m1": clock.t}
        last = {"m1": 2.0}
        try:
            for i, (what, amps, dt) in enumerate(steps):
                meter, box = meters[i % 2], boxes[i % 3]
                if what == "silent":
                    meter.load = None
                elif what == "value":
                    meter.load = (amps / 2, amps / 2, amps / 2)
                else:
                    box.demand = what == "plug"
                clock.t += dt
                ctl.cycle()
                for m in meters:
                    if m.load is not None:
                        answered[m.name], last[m.name] = clock.t, m.load[0]
                assumed = 0.0
                for m in meters:
                    silent_since = answered.get(m.name, 1000.0)
                    if m.load is None and clock.t - silent_since >= METER_GRACE_S:
                        assumed += LIMIT
                    else:
                        assumed += last.get(m.name, 0.0)
                commanded = sum(b.command for b in boxes)
                assert commanded == 0.0 or commanded + assumed <= LIMIT + 1e-9, (commanded, assumed, steps[:i + 1])
        finally:
            ctl.stop()
            rt.close()


def test_the_sdm630_going_silent_while_cars_charge_pauses_them_until_it_answers(tmp_path, monkeypatch):
    """End to end: two Power Brain boxes charging under an SDM630 grid meter, all on the simulator."""
    controller = pytest.importorskip("appliance.lm.controller")
    monkeypatch.setattr(house_mod, "METER_GRACE_S", 1.5)
    sim, port = tcp_sim("--units", "1,2", "--sdm630", "10")
    rt = None
    ctl = None
    try:
        boxes = {f"pb{u}": f'type = powerbrain\nport = "{port}"\nunit = {u}' for u in (1, 2)}
        # no overdraft penalty: the boxes start on their power-up default of 16 A under a 10 A house
        site_conf = fast_site_conf(32.0, boxes).replace("[devices]", "overdraft_penalty_s = 0\n[devices]")
        text = TEST_MODBUS + site_conf + f'[[grid]]\ntype = sdm630\nport = "{port}"\nunit = 10\nrole = consumption\n'
        (tmp_path / "ampgate.conf").write_text(text, encoding="utf-8")
        rt = Runtime(config_mod.load(tmp_path / "ampgate.conf"), tmp_path / "var")
        rt.load_devices()
        ctl = controller.start(rt)
        devs = rt.devices
        sim.send({"cmd": "meter", "unit": 10, "currents": [10.0, 10.0, 10.0]})
        for u in (1, 2):
            sim.send({"cmd": "plug", "unit": u, "car_max": 16})

        def commands() -> list[float]:
            return [devs[n].lm_input().command for n in ("pb1", "pb2")]

        # 32 A less 10 A of house (a consumption meter: the simulated meter does not see the cars)
        wait_for(lambda: commands() == [11.0, 11.0], timeout=15, what=lambda: f"11 A each: {commands()}")
        sim.send({"cmd": "fault", "unit": 10, "mode": "silent"})
        wait_for(lambda: commands() == [0.0, 0.0], timeout=15, what=lambda: f"paused: {commands()}")
        assert "grid" in rt.lm_status["meter_faults"]
        assert rt.status()["load_management"]["meter_faults"]["grid"].startswith("meter fault")
        assert sum("meter fault" in e for e in events(rt, "grid")) == 1
        sim.send({"cmd": "fault", "unit": 10, "mode": "none"})
        wait_for(lambda: commands() == [11.0, 11.0], timeout=15, what=lambda: f"charging again: {commands()}")
        assert rt.lm_status["meter_faults"] == {}
    finally:
        if ctl is not None:
            ctl.stop()
        if rt is not None:
            rt.close()
        sim.stop()
