"""Meters on Modbus: an SDM630 grid meter and a Power Brain S0 input, as load management sees them."""
from appliance.devices.meters import PowerBrainS0Meter, Sdm630Meter, to_building
from modbus_fixtures import close_runtime, events, make_runtime, tcp_sim, wait_for


def test_sdm630_and_s0_house_load(tmp_path):
    sim, port = tcp_sim("--units", "1", "--s0", "3", "--sdm630", "10")
    try:
        rt = make_runtime(tmp_path, {
            "grid": {"type": "sdm630", "port": port, "unit": 10, "role": "grid"},
            "pv": {"type": "sdm630", "port": port, "unit": 10, "role": "generation", "phase_rotation": "120"},
            "heatpump": {"type": "powerbrain_s0", "port": port, "unit": 3, "role": "consumption", "phases": 1},
            "shown": {"type": "powerbrain_s0", "port": port, "unit": 3, "role": "display"},
        })
        rt.load_devices()
        grid, pv, hp = rt.devices["grid"], rt.devices["pv"], rt.devices["heatpump"]
        assert isinstance(grid, Sdm630Meter) and isinstance(hp, PowerBrainS0Meter)
        assert not grid.is_evse and grid.includes_wallboxes and not hp.includes_wallboxes
        sim.send({"cmd": "meter", "unit": 10, "currents": [10.5, 3, -2]})   # L3 feeds in
        sim.send({"cmd": "meter", "unit": 3, "power": 2300})
        wait_for(lambda: grid.house_load() == (10.5, 3.0, -2.0), what="grid reading")
        wait_for(lambda: pv.house_load() == (2.0, -10.5, -3.0), what="rotated 120°, sign inverted")
        wait_for(lambda: hp.house_load() == (10.0, 0.0, 0.0), what="S0 reading")
        assert rt.devices["shown"].house_load() is None                      # display only
        st = grid.status()
        assert st.online and st.currents_a == [10.5, 3.0, -2.0] and abs(st.power_w - 11.5 * 230) < 1
        sim.send({"cmd": "fault", "unit": 10, "mode": "silent"})
        wait_for(lambda: grid.house_load() is None, what="meter offline -> unknown, never zero")
        sim.send({"cmd": "fault", "unit": 10, "mode": "none"})
        wait_for(lambda: grid.house_load() is not None, what="meter back")
        assert sum("no answer" in e for e in events(rt, "grid")) == 1
        close_runtime(rt)
    finally:
        sim.stop()


def test_rotation_helper():
    assert to_building((1.0, 2.0, 3.0), 0) == (1.0, 2.0, 3.0)
    assert to_building((1.0, 2.0, 3.0), 240) == (2.0, 3.0, 1.0)


def test_one_serial_port_one_setting(tmp_path):
    rt = make_runtime(tmp_path, {"a": {"type": "sdm630", "port": "/dev/ttyX,9600,8,n,1", "unit": 1},
                                 "b": {"type": "powerbrain", "port": "/dev/ttyX,19200,8,n,1", "unit": 2}})
    rt.load_devices()
    assert "a" in rt.devices and "b" not in rt.devices
    assert any("already in use as 9600,8,N,1" in e for e in events(rt, "b"))
    close_runtime(rt)
