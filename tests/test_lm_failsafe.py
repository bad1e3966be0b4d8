"""Load management is never a casualty of a crash elsewhere (issue 15 item 7): a cycle that keeps
failing pauses every wallbox and says so, and recovers; an appliance whose load management cannot
start holds every wallbox at 0 A and says so instead of running without it."""
from __future__ import annotations

import pytest

from appliance import app as app_mod
from appliance import config as config_mod
from appliance.lm import controller as controller_mod
from appliance.lm.controller import FAIL_SAFE_AFTER
from conftest import free_port, wait_for
from modbus_fixtures import TEST_MODBUS, tcp_sim
from test_lm_controller import Box
from test_lm_meter_fault import site  # noqa: F401 (the fixture)


def test_a_cycle_that_keeps_failing_pauses_every_box_and_recovers(site, monkeypatch):  # noqa: F811
    rt, ctl, clock, journal = site("max_current_per_phase = 32\n")
    a, b = Box("a", journal, max_current=16), Box("b", journal, max_current=16)
    rt.devices.update(a=a, b=b)
    ctl.safe_cycle()
    assert a.command == 16.0 and b.command == 16.0
    real = controller_mod.allocate

    def broken(*args):
        raise KeyError("corrupted in memory")

    monkeypatch.setattr(controller_mod, "allocate", broken)
    for _ in range(FAIL_SAFE_AFTER - 1):
        clock.t += 3
        ctl.safe_cycle()
    assert a.command == 16.0 and "stopped" not in rt.lm_status     # one failed cycle is not a stop
    clock.t += 3
    ctl.safe_cycle()
    wait_for(lambda: a.command == 0.0 and b.command == 0.0, what="every box paused")
    assert "every wallbox is paused" in rt.lm_status["stopped"] and "KeyError" in rt.lm_status["stopped"]
    assert sum("cycle failing" in e["message"] for e in rt.store.events()) == 1
    monkeypatch.setattr(controller_mod, "allocate", real)
    clock.t += 400
    ctl.safe_cycle()
    assert "stopped" not in rt.lm_status and a.command == 16.0
    assert any("runs again" in e["message"] for e in rt.store.events())


def test_without_load_management_every_wallbox_is_held_at_0_a_and_the_page_says_so(tmp_path, monkeypatch):
    """Load management fails to import (as an ImportError in app.py once did): the Power Brain box,
    on its power-up default of 16 A with a car, is paused and the status says why."""
    monkeypatch.setattr(app_mod, "STARTERS", [(name, spec.replace("appliance.lm.controller", "appliance.lm.gone"))
                                              for name, spec in app_mod.STARTERS])
    sim, port = tcp_sim("--units", "1")
    appliance = None
    try:
        sim.send({"cmd": "plug", "unit": 1, "car_max": 16})
        assert sim.send({"cmd": "get", "unit": 1})["enable"] == 1
        conf = tmp_path / "ampgate.conf"
        conf.write_text(f"{TEST_MODBUS}[ocpp_server]\nport = {free_port()}\nbind = 127.0.0.1\n"
                        f'[devices]\n[[pb]]\ntype = powerbrain\nport = "{port}"\nunit = 1\n', encoding="utf-8")
        appliance = app_mod.Appliance(config_mod.load_for_run(conf), str(tmp_path / "var"), web=False)
        appliance.start()
        wait_for(lambda: sim.send({"cmd": "get", "unit": 1})["enable"] == 0, what="box paused")
        st = appliance.runtime.status()["load_management"]
        assert st["mode"] == "stopped" and "could not start" in st["stopped"] and "paused" in st["stopped"]
    finally:
        if appliance is not None:
            appliance.stop()
        sim.stop()


@pytest.mark.parametrize("failure", ["ImportError", "RuntimeError"])
def test_a_starter_that_fails_is_replaced_by_the_fail_safe(tmp_path, monkeypatch, failure):
    def starter(rt):
        raise {"ImportError": ImportError, "RuntimeError": RuntimeError}[failure]("broken")

    monkeypatch.setattr(app_mod, "_resolve", lambda spec: starter if "lm" in spec else (lambda rt: None))
    conf = tmp_path / "ampgate.conf"
    conf.write_text("[load_management]\nmax_current_per_phase = 20\n", encoding="utf-8")
    appliance = app_mod.Appliance(config_mod.load_for_run(conf), str(tmp_path / "var"), web=False)
    try:
        appliance.start()
        assert f"{failure}: broken" in appliance.runtime.lm_status["stopped"]
        assert any(name == "load management" for name, _ in appliance.parts)
    finally:
        appliance.stop()
