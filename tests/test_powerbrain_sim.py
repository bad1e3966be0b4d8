"""The Power Brain simulator itself: started through the `ampgate` CLI (which must leave gevent behind),
its car model, fail-safe, the OCPP-side second limit (charging-manager.md §5) and the control channel."""
import json
import subprocess
import sys

import pytest

from appliance.modbus import registers as R
from appliance.modbus.bus import Bus, parse_port
from conftest import free_port, subprocess_env
from modbus_fixtures import tcp_sim, wait_for


@pytest.fixture
def sim_bus():
    sim, port = tcp_sim("--units", "1", "--failsafe-timeout", "1")
    bus = Bus(parse_port(port), timeout=0.25, retries=0)
    yield sim, bus
    bus.stop()
    sim.stop()


def test_cli_runs_the_server_outside_gevent():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "sim", "powerbrain", "--tcp", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=subprocess_env())
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["ready"] and ready["units"] == [1]
        bus = Bus(parse_port(f"tcp://127.0.0.1:{port}"), timeout=0.5, retries=1)
        assert R.to_int(bus.read_holding(1, R.VENDOR_ID.address, 2)) == R.VENDOR_POWERBRAIN
        bus.stop()
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


def test_car_takes_min_of_limit_and_its_max_and_ocpp_side_rules(sim_bus):
    sim, bus = sim_bus
    bus.write(1, R.LIMIT.address, [160, 1])
    box = sim.send({"cmd": "plug", "unit": 1, "car_max": 11, "phases": 1})
    assert box["cp_state"] == R.CP_C and box["currents"] == [11.0, 0.0, 0.0]
    box = sim.send({"cmd": "ocpp", "unit": 1, "limit": 8})          # backend lowers: min of both
    assert box["offered"] == 8.0 and box["currents"][0] == 8.0
    box = sim.send({"cmd": "ocpp", "unit": 1, "enable": False})     # either side can pause
    assert box["cp_state"] == R.CP_B and box["currents"][0] == 0.0
    sim.send({"cmd": "ocpp", "unit": 1, "enable": True, "limit": 32})
    bus.write(1, R.ENABLE.address, [0])
    assert sim.send({"cmd": "get", "unit": 1})["cp_state"] == R.CP_B
    bus.write(1, R.LIMIT.address, [70, 1])
    assert sim.send({"cmd": "get", "unit": 1})["currents"][0] == 7.0
    assert bus.read_holding(1, R.SIGNALLED_CURRENT.address, 1) == [70]


def test_failsafe_falls_back_when_the_master_goes_quiet(sim_bus):
    sim, bus = sim_bus
    bus.write(1, R.FAILSAFE_CURRENT.address, [80])        # 8 A
    bus.write(1, R.LIMIT.address, [160, 1])
    sim.send({"cmd": "plug", "unit": 1, "car_max": 32})
    box = wait_for(lambda: (b := sim.send({"cmd": "get", "unit": 1}))["failsafe"] and b, 5, what="fail-safe")
    assert box["offered"] == 8.0                           # falls back on its own, 1 s after the last request
    bus.write(1, R.FAILSAFE_CURRENT.address, [0])          # a request ends fail-safe; 0 = stop
    assert not sim.send({"cmd": "get", "unit": 1})["failsafe"]
    box = wait_for(lambda: (b := sim.send({"cmd": "get", "unit": 1}))["failsafe"] and b, 5, what="fail-safe")
    assert box["enable"] == 0 and box["offered"] == 0.0


def test_restart_applies_power_up_defaults(sim_bus):
    sim, bus = sim_bus
    bus.write(1, R.LIMIT.address, [70, 0])
    box = sim.send({"cmd": "restart", "unit": 1})
    assert (box["limit"], box["enable"], box["restarts"]) == (16.0, 1, 1)


def test_control_channel_rejects_bad_requests(sim_bus):
    sim, _ = sim_bus
    for bad in ({"cmd": "fly", "unit": 1}, {"cmd": "get", "unit": 9}, {"cmd": "fault", "unit": 1, "mode": "x"}):
        with pytest.raises(RuntimeError):
            sim.send(bad)
    sim.sock.sendall(b"not json\n")
    assert json.loads(sim.reader.readline())["ok"] is False
    assert sim.send({"cmd": "list"})["units"][0]["unit"] == 1   # still serving
