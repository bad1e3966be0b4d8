"""The grid operator's limit (§14a EnWG): switched over the HTTP API, a Power Brain's S0 input (the
simulator) or a control box's Modbus register; while on, all wallboxes together stay within the dimmed
power; every activation is logged with its start and end; the status and /api/grid-limit say so."""
from __future__ import annotations

from appliance import config
from appliance.lm.controller import Controller
from appliance.lm.grid_limit import GRID_LIMIT
from appliance.runtime import Runtime
from appliance.webapp import create_app
from modbus_fixtures import close_runtime, make_runtime, one_box, tcp_sim, wait_for
from test_lm_controller import Box, Clock
from test_web_api import set_password


def test_api_signal_limits_all_wallboxes_together_and_logs_start_and_end(conf_file, data_dir):
    rt = Runtime(config.load(conf_file("[load_management]\nmax_current_per_phase = 63\n"
                                       "grid_limit_source = api\ngrid_limit_kw_per_device = 4.2\n")), data_dir)
    clock, journal = Clock(), []
    ctl = Controller(rt, clock=clock)
    rt.lm_controller = ctl
    try:
        a, b = Box("a", journal, max_current=16), Box("b", journal, max_current=16)
        rt.devices.update(a=a, b=b)
        ctl.cycle()
        assert (a.command, b.command) == (16.0, 16.0)
        client = create_app(rt).test_client()
        h = {"X-CSRF-Token": set_password(client)}
        r = client.post("/api/grid-limit", json={"active": "yes"}, headers=h)
        assert r.status_code == 400 and r.json["field"] == "active"
        assert client.post("/api/grid-limit", json={"active": True}, headers=h).json["api_signal"] is True
        for _ in range(3):                           # reductions first, then the settled state
            clock.t += 6
            ctl.cycle()
        # two wallboxes: 2 × 4.2 kW = 8.4 kW, 36.5 A summed over their phases; 3-phase cars: 6.0 A each
        assert (a.command, b.command) == (6.0, 6.0)
        assert rt.lm_status["allocations"]["a"]["reason"] == "grid operator limit"
        st = rt.lm_status["grid_limit"]
        assert st["active"] and st["limit_kw"] == 8.4 and st["since"].endswith("Z")
        assert rt.store.get_state(GRID_LIMIT, "api_signal") is True   # persisted
        client.post("/api/grid-limit", json={"active": False}, headers=h)
        clock.t += 6
        ctl.cycle()
        assert not rt.lm_status["grid_limit"]["active"]
        log = client.get("/api/grid-limit").json["log"]
        assert "OFF at" in log[0]["message"] and "it was on from" in log[0]["message"]
        assert "ON at" in log[1]["message"] and "8.4 kW (2 × 4.2 kW" in log[1]["message"]
    finally:
        ctl.stop()
        rt.close()


def test_api_refuses_when_the_signal_comes_from_elsewhere(conf_file, data_dir):
    rt = Runtime(config.load(conf_file("")), data_dir)
    try:
        client = create_app(rt).test_client()
        h = {"X-CSRF-Token": set_password(client)}
        r = client.post("/api/grid-limit", json={"active": True}, headers=h)
        assert r.status_code == 409 and r.json["field"] == "grid_limit_source"
    finally:
        rt.close()


def test_power_brain_s0_input_carries_the_signal(tmp_path):
    with one_box(tmp_path, {"type": "powerbrain", "unit": 1}) as (sim, rt, dev):
        assert dev.grid_limit_signal(1) is False
        sim.send({"cmd": "inputs", "unit": 1, "s0_1": True})
        wait_for(lambda: dev.grid_limit_signal(1) is True, what="S0 input 1 seen")
        assert dev.grid_limit_signal(2) is False
        close_runtime(rt)


def test_control_box_register_carries_the_signal_and_a_silent_box_keeps_the_last_state(tmp_path):
    sim, port = tcp_sim("--units", "1")
    rt = make_runtime(tmp_path, {"ctl": {"type": "control_box", "port": port, "unit": 1, "register": 8057}},
                      extra="grid_limit_source = device\ngrid_limit_device = ctl\ngrid_limit_devices = 3\n")
    ctl = Controller(rt, clock=Clock())
    try:
        rt.load_devices()
        box = rt.devices["ctl"]
        wait_for(lambda: box.grid_limit_signal() is False, what="register read")
        sim.send({"cmd": "set", "unit": 1, "address": 8057, "values": [1]})
        wait_for(lambda: box.grid_limit_signal() is True, what="signal on")
        ctl.cycle()
        assert rt.lm_status["grid_limit"]["limit_kw"] == 12.6            # 3 devices × 4.2 kW
        sim.send({"cmd": "fault", "unit": 1, "mode": "silent"})
        wait_for(lambda: box.grid_limit_signal() is None, what="box silent")
        ctl.cycle()
        assert rt.lm_status["grid_limit"]["active"] and rt.lm_status["grid_limit"]["signal_unknown"]
    finally:
        ctl.stop()
        close_runtime(rt)
        sim.stop()
