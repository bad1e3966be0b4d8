"""A Power Brain box is never given up for what its command registers hold or for registers the map
does not define (issue 15 item 4): a limit register outside 6-63 A (0 after a fail-safe with current 0,
or never written) is state we overwrite, and a box that answers "illegal data address" for undefined
registers inside a polled span is read in documented runs. Real simulator over Modbus TCP."""
from __future__ import annotations

import pytest

from modbus_fixtures import close_runtime, events, one_box, wait_for

BOX = {"type": "powerbrain", "unit": 1, "max_current": 16, "failsafe_current": 0, "failsafe_timeout": 180}


@pytest.mark.parametrize("raw_limit", [0, 5, 700])
def test_a_limit_register_out_of_range_is_overwritten_not_given_up(tmp_path, raw_limit):
    def prepare(sim):
        sim.send({"cmd": "set", "unit": 1, "address": 8093, "values": [raw_limit, 1]})
        sim.send({"cmd": "plug", "unit": 1, "car_max": 16})

    with one_box(tmp_path, BOX, before=prepare) as (sim, rt, dev):
        ev = dev.lm_input()
        assert ev.controllable, dev.health.error
        assert ev.max_possible_draw == min(max(raw_limit / 10, 6.0), 63.0)   # counted at what it may let flow
        assert dev.apply(10, 3)
        box = sim.send({"cmd": "get", "unit": 1})
        assert (box["limit"], box["enable"]) == (10.0, 1)
        assert not any("out of range" in e for e in events(rt, "box"))
        close_runtime(rt)


def test_a_box_refusing_undefined_registers_is_read_in_documented_runs(tmp_path):
    def prepare(sim):
        sim.send({"cmd": "strict", "unit": 1})

    with one_box(tmp_path, BOX, before=prepare) as (sim, rt, dev):
        assert dev.box.documented_only and dev.identity["serial"] == "SIM00001"
        sim.send({"cmd": "plug", "unit": 1, "car_max": 16})
        wait_for(lambda: dev.snap is not None and dev.snap.plugged, what="the car seen")
        assert dev.lm_input().controllable
        assert dev.apply(8, 3) and sim.send({"cmd": "get", "unit": 1})["limit"] == 8.0
        close_runtime(rt)


def test_a_measurement_out_of_range_still_means_do_not_trust_the_box(tmp_path):
    with one_box(tmp_path, BOX) as (sim, rt, dev):
        sim.send({"cmd": "fault", "unit": 1, "mode": "range"})
        wait_for(lambda: not dev.health.online, what="rejected")
        assert not dev.lm_input().controllable
        close_runtime(rt)
