"""Stations nobody adopted are held at 0 A and counted (issue 15 item 1): a station that connects without
being configured gets a zero TxDefaultProfile and its car draws nothing; one that refuses it is counted
at the connection limit while a car is connected; the page says which. Real simulated OCPP stations
on a real central system; what could flow is read from the stations' own records."""
from __future__ import annotations

import pytest

from appliance.sim.ocpp_wallbox import SimWallbox
from appliance.webapp import changes
from conftest import fast_site_conf, wait_for
from test_lm_e2e import worst_sum

GRID = 16.0


def _status(cs, cpid: str) -> dict:
    return next((u for u in cs.runtime.status()["unconfigured"] if u["charge_box_id"] == cpid), {})


def test_an_unadopted_station_is_held_at_0_a_and_one_that_refuses_is_counted(central):
    controller = pytest.importorskip("appliance.lm.controller")
    cs = central(fast_site_conf(GRID, {"a": "type = ocpp16\naddress = OURS"}))
    ctl = controller.start(cs.runtime)
    ours = SimWallbox(cs.url("OURS"), meter_interval=0.3, car_max=16)
    stranger = SimWallbox(cs.url("STRANGER"), meter_interval=0.3, car_max=32, box_max=32)
    rogue = SimWallbox(cs.url("ROGUE"), meter_interval=0.3, car_max=32, box_max=32, reject_profiles=True)
    try:
        for box in (ours, stranger):
            box.connect()
        wait_for(lambda: _status(cs, "STRANGER").get("held"), what="stranger held")
        assert _status(cs, "STRANGER")["state"] == "unmanaged, held at 0 A"
        ours.start(1)
        stranger.start(1)                                   # its car gets nothing
        wait_for(lambda: ours.limit(1) == 16.0, what="ours at 16 A")
        assert stranger.limit(1) == 0.0 and stranger.allowed(1) == 0.0

        rogue.connect()
        wait_for(lambda: _status(cs, "ROGUE").get("problem"), what="rogue refused the hold")
        assert _status(cs, "ROGUE")["state"].startswith("unmanaged, NOT held")
        assert ours.limit(1) == 16.0                        # no car at the rogue: nothing to count
        rogue.start(1)
        wait_for(lambda: ours.limit(1) == 0.0 and (cs.runtime.lm_status["allocations"].get("unmanaged:ROGUE") or {})
                 .get("counted") == GRID, what=lambda: f"rogue counted, ours paused: {cs.runtime.lm_status}")
        rogue.stop(1)
        rogue.unplug(1)
        ours.send_meter_values(1)
        wait_for(lambda: "unmanaged:ROGUE" not in cs.runtime.lm_status["allocations"], what="rogue no longer counted")

        name, = changes.adopt(cs.runtime, "STRANGER")       # adopted: managed like any other
        wait_for(lambda: cs.runtime.devices[name].configured, what="adopted and configured")
        wait_for(lambda: stranger.limit(1) > 0, timeout=15, what=lambda: f"stranger charges: {cs.runtime.lm_status}")
        worst, when = worst_sum([[(t, n, v) for t, _, v in box.timeline] for n, box in
                                 (("ours", ours), ("stranger", stranger))])
        assert worst <= GRID, f"{worst} A could flow at {when}"
    finally:
        for box in (ours, stranger, rogue):
            box.close()
        ctl.stop()


def test_a_station_allowing_only_stack_level_0_is_held_too(central):
    cs = central()
    box = SimWallbox(cs.url("LEVEL0"), max_stack_level=0, meter_interval=3600)
    try:
        box.connect()
        wait_for(lambda: _status(cs, "LEVEL0").get("held"), what="held at stack level 0")
        assert [(p["connector"], p["stack"], p["limit_a"]) for p in box.profiles.describe()] == [(0, 0, 0.0)]
    finally:
        box.close()
