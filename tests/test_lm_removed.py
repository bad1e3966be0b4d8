"""Everything that can draw current is in the budget (issue 15 item 2): a wallbox removed from the
configuration (on the page, or by rewriting the file) or disabled while its car charges stays counted at
what it was left at until its car stops or it disconnects; a paused box is never raised by its
deactivation. Real simulated OCPP wallboxes on a real central system; the limits recorded on the
wallboxes' side prove what could flow."""
from __future__ import annotations

import pytest

from appliance.sim.ocpp_wallbox import SimWallbox
from appliance.webapp import changes
from conftest import fast_site_conf, wait_for
from test_lm_e2e import worst_sum

GRID = 20.0
BOXES = {"a": "type = ocpp16\naddress = BOXA", "b": "type = ocpp16\naddress = BOXB"}


def _site(central, grid: float = GRID):
    controller = pytest.importorskip("appliance.lm.controller")
    cs = central(fast_site_conf(grid, BOXES))
    ctl = controller.start(cs.runtime)
    boxes = {n: SimWallbox(cs.url(f"BOX{n.upper()}"), meter_interval=0.3, car_max=16) for n in "ab"}
    for box in boxes.values():
        box.connect()
    wait_for(lambda: all(cs.runtime.devices[n].configured for n in "ab"), what="profiles installed")
    return cs, ctl, boxes


def _could_flow(boxes, grid: float = GRID) -> float:
    worst, when = worst_sum([[(t, n, v) for t, _, v in box.timeline] for n, box in boxes.items()])
    assert worst <= grid, f"{worst} A could flow at {when}"
    return worst


def _remove_by_rewriting_the_file(rt) -> None:
    text = rt.config.path.read_text(encoding="utf-8")
    rt.config.path.write_text(text[:text.index("[[b]]")] + "\n", encoding="utf-8")
    import os
    import time
    os.utime(rt.config.path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert rt.config.refresh()          # what the appliance's file watcher does
    rt.load_devices()


@pytest.mark.parametrize("how", ["page", "file"])
def test_a_removed_box_whose_car_charges_stays_counted_until_its_car_stops(central, how):
    cs, ctl, boxes = _site(central)
    a, b = boxes["a"], boxes["b"]
    try:
        a.start(1)
        b.start(1)
        wait_for(lambda: a.limit(1) == 10.0 and b.limit(1) == 10.0, what="10 A each")
        if how == "page":
            changes.remove_device(cs.runtime, "b")
        else:
            _remove_by_rewriting_the_file(cs.runtime)
        # b is left at its min current (on_deactivate = min_current) and stays in the budget
        wait_for(lambda: b.limit(1) == 6.0, what=lambda: f"b left at 6 A: {b.limit(1)}")
        wait_for(lambda: a.limit(1) == 14.0, what=lambda: f"a at 20 - 6 A: {a.limit(1)} {cs.runtime.lm_status}")
        assert cs.runtime.lm_status["allocations"]["b"]["counted"] == 6.0
        _could_flow(boxes)
        b.stop(1)                                                 # its car stops: no longer counted
        wait_for(lambda: a.limit(1) == 16.0, what=lambda: f"a at its max: {a.limit(1)}")
        wait_for(lambda: "b" not in cs.runtime.devices, what="b gone")
        wait_for(lambda: "b" not in cs.runtime.lm_status["allocations"], what="b no longer counted")
        wait_for(lambda: b.limit(1) == 0.0, what="b, unmanaged now, held at 0 A")
        _could_flow(boxes)
    finally:
        for box in boxes.values():
            box.close()
        ctl.stop()


def test_a_paused_box_is_not_raised_when_it_is_disabled(central):
    cs, ctl, boxes = _site(central, grid=10.0)
    a, b = boxes["a"], boxes["b"]
    try:
        a.start(1)
        wait_for(lambda: a.limit(1) == 10.0, what="a at 10 A")
        b.start(1)                                                # 6 + 6 A do not fit in 10: b waits at 0 A
        wait_for(lambda: cs.runtime.lm_status["allocations"]["b"]["reason"].startswith("waiting"), what="b waits")
        assert b.limit(1) == 0.0
        changes.set_active(cs.runtime, "b", False)                # on_deactivate = min_current
        wait_for(lambda: cs.runtime.devices["b"].problem == "deactivated", what="b deactivated")
        wait_for(lambda: any("deactivated" in e["message"] for e in cs.runtime.store.events(device="b")),
                 what="deactivation logged")
        assert b.limit(1) == 0.0, "raised to its min current without any budget"
        assert a.limit(1) == 10.0
        _could_flow(boxes, grid=10.0)
    finally:
        for box in boxes.values():
            box.close()
        ctl.stop()
