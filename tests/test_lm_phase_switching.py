"""End to end: `ampgate sim powerbrain` with a box that may switch phases and an SDM630 measuring the
house, under the real controller. House load on L1 leaves a 3-phase car short there: it is switched to
one phase (its box L1 is building L2) and charges; when L1 is free again for delay_3p_s it goes back to
three phases. The relay never moves while current flows."""
from appliance.lm import controller
from modbus_fixtures import close_runtime, events, make_runtime, tcp_sim, wait_for


def test_a_car_is_switched_to_one_phase_and_back_without_the_relay_moving_under_load(tmp_path):
    sim, port = tcp_sim("--units", "1", "--sdm630", "10")
    rt = make_runtime(tmp_path, {
        "box": {"type": "powerbrain", "port": port, "unit": 1, "phase_switching": True, "phases": 3,
                "phase_rotation": "120", "max_current": 16, "failsafe_current": 6},
        "house": {"type": "sdm630", "port": port, "unit": 10, "role": "consumption"},
    }, extra="max_current_per_phase = 32\ndelay_3p_s = 2\nsettle_s = 0.5\n")
    ctl = None
    try:
        rt.load_devices()
        sim.send({"cmd": "meter", "unit": 10, "currents": [30.0, 0.0, 0.0]})
        box = rt.devices["box"]
        wait_for(lambda: box.health.online and rt.devices["house"].house_load() == (30.0, 0.0, 0.0),
                 what="box and meter read")
        ctl = controller.start(rt)
        sim.send({"cmd": "plug", "unit": 1, "car_max": 16, "phases": 3})
        get = lambda: sim.send({"cmd": "get", "unit": 1})  # noqa: E731
        wait_for(lambda: get()["relay"] == 1 and get()["currents"] == [16.0, 0.0, 0.0], timeout=15,
                 what="one phase, 16 A on box L1 (building L2)")
        alloc = rt.lm_status["allocations"]["box"]
        assert alloc["phases"] == 1
        sim.send({"cmd": "meter", "unit": 10, "currents": [0.0, 0.0, 0.0]})
        wait_for(lambda: get()["relay"] == 0 and get()["currents"] == [16.0, 16.0, 16.0], timeout=15,
                 what="back to three phases")
        b = get()
        assert b["writes"]["8087"] == 2 and b["relay_refused"] == 0      # two switches, none under load
        assert rt.lm_status["allocations"]["box"]["phases"] == 3
        assert [e for e in events(rt, "box") if "switched to" in e] == ["switched to 1 phase", "switched to 3 phases"]
        assert rt.lm_status["allocations"]["box"].get("pause_left_s") is None   # a switch is not a pause
    finally:
        if ctl is not None:
            ctl.stop()
        close_runtime(rt)
        sim.stop()
