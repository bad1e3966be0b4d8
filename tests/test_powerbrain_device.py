"""PowerBrainEvse against the simulator: readings, commands, RFID transactions, flash registers written
only on change, and the safety bound U while a box does not answer or lies."""
import time

import gevent
import pytest

from appliance.devices.powerbrain import PowerBrainEvse
from appliance.modbus.bus import BusError
from appliance.sim.powerbrain import SimProcess
from conftest import subprocess_env
from modbus_fixtures import PtyPair, close_runtime, events, make_runtime, one_box, tcp_sim, wait_for

BOX = {"type": "powerbrain", "unit": 1, "max_current": 16, "failsafe_current": 6, "failsafe_timeout": 180}


@pytest.fixture
def site(tmp_path):
    with one_box(tmp_path, BOX) as (sim, rt, dev):
        assert isinstance(dev, PowerBrainEvse)
        yield sim, rt, dev
        close_runtime(rt)


def test_reads_commands_and_charges(site):
    sim, rt, dev = site
    assert dev.status().state == "available"
    assert dev.status().extra["serial"] == "SIM00001" and dev.identity["vendor_id"] == 0xCF05
    sim.send({"cmd": "plug", "unit": 1, "car_max": 10})
    wait_for(lambda: dev.status().state in ("charging", "car_connected"), what="plug-in seen")
    assert dev.apply(13.37, 3) is True
    box = sim.send({"cmd": "get", "unit": 1})
    assert (box["limit"], box["enable"]) == (13.3, 1)          # rounded down to 0.1 A
    wait_for(lambda: dev.status().state == "charging" and dev.status().currents_a == [10.0, 10.0, 10.0],
             what="car draws min(limit, car max)")
    ev = dev.lm_input()
    assert ev.controllable and ev.demand and ev.measured == (10.0, 10.0, 10.0) and ev.command == 13.3
    assert dev.apply(0, 3) is True                              # pause = enable 0, never a limit < 6 A
    box = sim.send({"cmd": "get", "unit": 1})
    assert (box["limit"], box["enable"]) == (6.0, 0)
    wait_for(lambda: dev.status().state == "car_connected" or dev.status().state == "paused", what="paused")
    assert dev.apply(40, 3) is True and sim.send({"cmd": "get", "unit": 1})["limit"] == 16.0   # capped at max


def test_rfid_swipe_starts_and_unplug_stops_a_transaction(site):
    sim, rt, dev = site
    dev.apply(16, 3)
    sim.send({"cmd": "plug", "unit": 1})
    sim.send({"cmd": "swipe", "unit": 1, "rfid": "04A1B2C3"})
    wait_for(lambda: dev.tx is not None, what="transaction")
    tx = rt.store.get_transaction(dev.tx["id"])
    assert (tx["id_tag"], tx["source"], tx["state"], tx["connector"]) == ("04A1B2C3", "powerbrain", "active", 1)
    wait_for(lambda: sim.send({"cmd": "get", "unit": 1})["energy_wh"] - tx["meter_start"] >= 2, what="energy")
    wait_for(lambda: dev.status().energy_wh >= 1, what="session energy")
    assert dev.status().transaction == tx["id"]
    sim.send({"cmd": "unplug", "unit": 1})
    wait_for(lambda: dev.tx is None, what="stop")
    tx = rt.store.get_transaction(tx["id"])
    assert tx["state"] == "stopped" and tx["meter_stop"] >= tx["meter_start"] + 1 and tx["stop_reason"] == "EVDisconnected"
    assert [t["id"] for t in rt.store.transactions(device="box")] == [tx["id"]]
    contexts = {(m["context"], m["measurand"]) for m in rt.store.meter_values(tx["id"])}
    assert ("Transaction.Begin", "Energy.Active.Import.Register") in contexts
    assert ("Transaction.End", "Energy.Active.Import.Register") in contexts
    assert ("Transaction.End", "Current.Import") in contexts


def test_fixed_rfid_and_resume_after_appliance_restart(tmp_path):
    sim, port = tcp_sim("--units", "1")
    try:
        settings = {**BOX, "port": port, "fixed_rfid": "FIXED01"}
        rt = make_runtime(tmp_path, {"box": settings})
        rt.load_devices()
        sim.send({"cmd": "plug", "unit": 1})
        dev = rt.devices["box"]
        wait_for(lambda: dev.tx is not None, what="transaction from the fixed RFID")
        first = dev.tx["id"]
        assert dev.tx["id_tag"] == "FIXED01"
        close_runtime(rt)
        rt = make_runtime(tmp_path, {"box": settings})       # same data dir: the session continues
        rt.load_devices()
        dev = rt.devices["box"]
        wait_for(lambda: dev.health.online, what="poll")
        assert dev.tx["id"] == first and len(rt.store.transactions()) == 1
        close_runtime(rt)
    finally:
        sim.stop()


def test_flash_written_once_and_never_again(site):
    sim, rt, dev = site
    writes = sim.send({"cmd": "get", "unit": 1})["writes"]
    # box defaults: timeout 300 s, fail-safe 0, power-up 16 A -> ours 180 s / 6 A / 6 A, each written once
    assert writes.get("8083") == 1 and writes.get("8085") == 1 and writes.get("8081") == 1
    for _ in range(40):
        dev.apply(10, 3)
        dev.poll()
    box = sim.send({"cmd": "get", "unit": 1})
    assert box["writes"]["8083"] == 1 and box["writes"]["8085"] == 1 and box["writes"]["8081"] == 1
    assert box["writes"]["8093"] >= 40
    assert (box["failsafe_timeout"], box["failsafe_current"]) == (180, 6.0)
    assert not {"8080", "8082"} & set(box["writes"])            # already as wanted: never written
    assert sum("flash register" in e for e in events(rt, "box")) == 3


def test_flash_matching_box_is_not_written(tmp_path):
    def prepare(sim):   # power-up 6 A, disabled: what fail-safe 0 wants
        sim.send({"cmd": "set", "unit": 1, "address": 8081, "values": [60, 0]})

    with one_box(tmp_path, {**BOX, "failsafe_current": 0}, ("--failsafe-timeout", "180"), prepare) as (sim, rt, dev):
        for _ in range(10):
            dev.poll()
        assert sim.send({"cmd": "get", "unit": 1})["writes"] == {}


def test_silent_box_counted_at_max_possible_draw_and_comes_back(site):
    sim, rt, dev = site
    assert dev.apply(12, 3)
    assert dev.lm_input().controllable
    sim.send({"cmd": "fault", "unit": 1, "mode": "silent"})
    wait_for(lambda: not dev.health.online, what="offline")
    ev = dev.lm_input()
    # U = max(confirmed 12 A, fail-safe 6 A, power-up default 6 A: it may have restarted)
    assert not ev.controllable and ev.max_possible_draw == 12.0
    assert dev.apply(6, 3) is False                     # not sent, not confirmed
    assert dev.status().state == "offline"
    for _ in range(5):
        dev.poll()
    sim.send({"cmd": "fault", "unit": 1, "mode": "none"})
    wait_for(lambda: dev.health.online, what="back")
    ev = dev.lm_input()                                 # controllable again, counted at what it really uses
    assert ev.controllable and ev.command == 12.0
    assert dev.apply(6, 3) and dev.lm_input().command == 6.0
    log = events(rt, "box")
    assert sum("no answer" in e for e in log) == 1      # one line per state change, not per cycle
    assert sum("answering again" in e for e in log) == 1 and "answering" in log


def test_restart_is_noticed_and_flash_rechecked(site):
    sim, rt, dev = site
    assert dev.apply(8, 3)
    sim.send({"cmd": "restart", "unit": 1})
    wait_for(lambda: any("box restarted" in e for e in events(rt, "box")), what="restart seen")
    assert dev.confirmed is None
    # the box is on its power-up default (ours) now (the poll that saw the restart may still be finishing)
    wait_for(lambda: dev.lm_input().command == 6.0, what="the power-up default read")
    assert sim.send({"cmd": "get", "unit": 1})["writes"]["8083"] == 1   # flash already right: not rewritten


@pytest.mark.parametrize("mode,kind", [("range", "out of range"), ("truncate", "truncated")])
def test_bad_answers_make_the_box_uncontrollable(site, mode, kind):
    sim, rt, dev = site
    dev.apply(10, 3)
    sim.send({"cmd": "fault", "unit": 1, "mode": mode})
    wait_for(lambda: not dev.health.online, what=f"{mode} noticed")
    ev = dev.lm_input()
    assert not ev.controllable and ev.max_possible_draw >= 10 and ev.measured is None
    assert kind in dev.status().error
    sim.send({"cmd": "fault", "unit": 1, "mode": "none"})
    wait_for(lambda: dev.health.online, what="back")


def test_two_boxes_on_one_rtu_bus(tmp_path):
    pty = PtyPair(tmp_path)
    sim = SimProcess(["--serial", pty.a, "--units", "1,2"], env=subprocess_env())
    try:
        port = f"{pty.b},9600,8,n,1"
        rt = make_runtime(tmp_path, {"a": {**BOX, "port": port, "unit": 1}, "b": {**BOX, "port": port, "unit": 2}})
        rt.load_devices()
        a, b = rt.devices["a"], rt.devices["b"]
        assert a.bus is b.bus                               # one serialised queue for the bus
        wait_for(lambda: a.health.online and b.health.online, what="both online")
        sim.send({"cmd": "plug", "unit": 2, "car_max": 16})
        assert a.apply(7, 3) and b.apply(9, 3)
        wait_for(lambda: b.status().currents_a == [9.0, 9.0, 9.0], what="unit 2 charging at 9 A")
        for mode, text in (("silent", "no answer"), ("crc", "CRC error"), ("truncate", "truncated")):
            sim.send({"cmd": "fault", "unit": 1, "mode": mode})
            wait_for(lambda: text in a.health.error, what=f"unit 1 {mode}")
            assert not a.lm_input().controllable and a.lm_input().max_possible_draw == 7.0
            assert b.apply(10, 3) and b.health.online       # the other box on the bus is unaffected
            for _ in range(3):
                a.poll()
        sim.send({"cmd": "fault", "unit": 1, "mode": "none"})
        wait_for(lambda: a.health.online, what="unit 1 back")
        log = events(rt, "a")
        for text in ("no answer", "CRC error", "truncated answer"):
            assert sum(text in e for e in log) == 1, log  # one line per state change
        assert not [e for e in rt.store.events(device="b") if e["level"] != "info"]   # b never had an error
        close_runtime(rt)
    finally:
        sim.stop()
        pty.stop()


def test_polling_keeps_failsafe_off_and_the_box_falls_back_when_we_stop(tmp_path):
    with one_box(tmp_path, {**BOX, "failsafe_timeout": 1, "failsafe_current": 0}) as (sim, rt, dev):
        sim.send({"cmd": "plug", "unit": 1})
        assert dev.apply(16, 3)
        t_end = time.monotonic() + 2.5           # > 2 fail-safe timeouts of polling only
        while time.monotonic() < t_end:
            assert not sim.send({"cmd": "get", "unit": 1})["failsafe"]
            gevent.sleep(0.2)
        close_runtime(rt)                                       # appliance gone: the box protects itself
        box = wait_for(lambda: (b := sim.send({"cmd": "get", "unit": 1}))["failsafe"] and b, 5, what="fail-safe")
        assert box["offered"] == 0.0 and box["currents"] == [0.0, 0.0, 0.0]


def test_phase_relay_moves_only_without_current_and_api_keeps_serving(tmp_path):
    with one_box(tmp_path, {**BOX, "phase_switching": True, "phases": 0}) as (sim, rt, dev):
        sim.send({"cmd": "plug", "unit": 1})
        wait_for(lambda: dev.lm_input().demand and dev.lm_input().switch_phases, what="car seen, may switch")
        assert dev.apply(10, 3)
        wait_for(lambda: dev.snap.charging, what="charging")
        assert dev.apply(10, 1) and sim.send({"cmd": "get", "unit": 1})["relay"] == 0   # never under load
        assert dev.apply(0, 1)                      # the engine's switch: pause, then the relay
        box = sim.send({"cmd": "get", "unit": 1})
        assert box["relay"] == 1 and box["writes"]["8087"] == 1 and box["relay_refused"] == 0
        assert dev.apply(10, 1) and dev.apply(11, 1) and dev.lm_input().phases == 1
        wait_for(lambda: sim.send({"cmd": "get", "unit": 1})["currents"] == [11.0, 0.0, 0.0], what="one phase")
        with pytest.raises(BusError):               # the box refuses to switch under load
            dev.box.select_phases(3)
        assert sim.send({"cmd": "get", "unit": 1})["relay_refused"] == 1
        assert dev.apply(0, 3) and sim.send({"cmd": "get", "unit": 1})["writes"]["8087"] == 2
        assert dev.apply(10, 3)
        wait_for(lambda: sim.send({"cmd": "get", "unit": 1})["currents"] == [10.0, 10.0, 10.0], what="three")
        sim.send({"cmd": "fault", "unit": 1, "mode": "silent"})
        wait_for(lambda: not dev.health.online, what="offline")
        status = rt.status()                                    # what /api/status serves
        (entry,) = status["devices"]
        assert entry["state"] == "offline" and entry["max_possible_draw_a"] == 10.0 and "no answer" in entry["error"]
        close_runtime(rt)


def test_without_the_capability_bit_the_relay_is_never_switched_with_a_car_plugged_in(tmp_path):
    with one_box(tmp_path, {**BOX, "phase_switching": True}) as (sim, rt, dev):
        sim.send({"cmd": "set", "unit": 1, "address": 8113, "values": [0]})
        sim.send({"cmd": "plug", "unit": 1})
        wait_for(lambda: dev.lm_input().demand, what="car seen")
        assert not dev.lm_input().switch_phases
        assert dev.apply(0, 1) and sim.send({"cmd": "get", "unit": 1})["relay"] == 0
        close_runtime(rt)


def test_unacknowledged_command_keeps_the_box_uncontrollable(site):
    sim, rt, dev = site
    assert dev.apply(12, 3)
    dev._poller.kill()                                  # drive polls by hand: no race with the poller
    sim.send({"cmd": "fault", "unit": 1, "mode": "silent"})
    assert dev.apply(6, 3) is False                     # sent, never acknowledged: a reduction not confirmed
    ev = dev.lm_input()
    assert not ev.controllable and ev.max_possible_draw == 12.0
    sim.send({"cmd": "fault", "unit": 1, "mode": "none"})
    dev.poll()
    assert dev.health.online and not dev.lm_input().controllable   # answers, but the command is unconfirmed
    assert dev.lm_input().max_possible_draw >= 12.0
    assert dev.apply(6, 3) and dev.lm_input().controllable


def test_deactivate_modes_and_tcp_without_kept_connection(tmp_path):
    with one_box(tmp_path, {**BOX, "keep_connection": False, "min_current": 7}) as (sim, rt, dev):
        # a paused box stays paused under min_current: raising it would bypass the budget
        for mode, (limit, enable) in (("clear_limits", (16.0, 1)), ("min_current", (7.0, 1)), ("stop", (6.0, 0)),
                                      ("min_current", (6.0, 0))):
            dev.deactivate(mode)
            wait_for(lambda: dev.snap is not None and dev.snap.limit_a == (limit if enable else 6.0), what="polled")
            box = sim.send({"cmd": "get", "unit": 1})
            assert (box["limit"], box["enable"]) == (limit, enable), mode
        wait_for(lambda: dev.bus.client is None, what="connection closed between cycles")
        sim.send({"cmd": "fault", "unit": 1, "mode": "silent"})
        wait_for(lambda: not dev.health.online, what="offline")
        dev.deactivate("stop")
        assert any("could not deactivate" in e for e in events(rt, "box"))
        close_runtime(rt)
