"""Load management of Power Brain boxes exactly as of OCPP ones: a mixed site (OCPP wallboxes and
Power Brain boxes on an RTU bus and on TCP) under one grid limit. Boxes go silent, answer garbage and
come back; what each box could let flow, recorded on the boxes' side, never sums above the limit."""
import pytest

from appliance.sim.ocpp_wallbox import SimWallbox
from appliance.sim.powerbrain import SimProcess
from conftest import fast_site_conf, subprocess_env, wait_for
from modbus_fixtures import PtyPair, events, tcp_sim
from test_lm_e2e import worst_sum   # largest sum of what could flow at any moment

GRID = 40.0
BOX_MAX = 16.0


def conf(rtu_port: str, tcp_port: str) -> str:
    boxes = {"ocA": ("ocpp16", "address = OCA"), "ocB": ("ocpp16", "address = OCB"),
             "pb1": ("powerbrain", f'port = "{rtu_port}"\nunit = 1'),
             "pb2": ("powerbrain", f'port = "{rtu_port}"\nunit = 2'),
             "pb3": ("powerbrain", f'port = "{tcp_port}"\nunit = 1')}
    devices = {name: f"type = {kind}\n{extra}\nfailsafe_current = 6" for name, (kind, extra) in boxes.items()}
    return "[modbus]\ntimeout = 0.25\nretries = 0\n" + fast_site_conf(GRID, devices, BOX_MAX)


def test_mixed_site_never_exceeds_the_grid_limit(central, tmp_path):
    controller = pytest.importorskip("appliance.lm.controller")
    pty = PtyPair(tmp_path)
    rtu = SimProcess(["--serial", pty.a, "--units", "1,2"], env=subprocess_env())
    tcp, tcp_port = tcp_sim("--units", "1")
    cs = central(conf(f"{pty.b},115200,8,n,1", tcp_port))
    ctl = controller.start(cs.runtime)
    ocpp = []
    try:
        devs = cs.runtime.devices
        pbs = ("pb1", "pb2", "pb3")
        ocpp = [SimWallbox(cs.url(cp), meter_interval=0.3, car_max=16) for cp in ("OCA", "OCB")]
        for box in ocpp:
            box.connect()
        # every box under control and paused (no car yet) before any car arrives
        wait_for(lambda: all(devs[n].lm_input().controllable for n in devs)
                 and all(devs[n].lm_input().command == 0 for n in pbs), what="all five controllable, paused")
        for box in ocpp:
            box.start(1)
        for unit, sim in ((1, rtu), (2, rtu), (1, tcp)):
            sim.send({"cmd": "plug", "unit": unit, "car_max": 16})

        def at(amps: dict[str, float]) -> bool:
            return all((devs[n].lm_input().command if n.startswith("pb") else
                        ocpp["AB".index(n[-1])].limit(1)) == a for n, a in amps.items())

        wait_for(lambda: at({"pb1": 8, "pb2": 8, "pb3": 8, "ocA": 8, "ocB": 8}), timeout=15, what="8 A each")
        rtu.send({"cmd": "fault", "unit": 1, "mode": "silent"})      # counted at U = 8 A: nobody is raised
        wait_for(lambda: not devs["pb1"].status().online, what="pb1 offline")
        assert devs["pb1"].lm_input().max_possible_draw == 8.0
        tcp.send({"cmd": "unplug", "unit": 1})                       # a car leaves: 40 - 8 shared by three
        wait_for(lambda: at({"pb2": 10.6, "ocA": 10.6, "ocB": 10.6}), timeout=15, what="three at 10.6 A")
        tcp.send({"cmd": "fault", "unit": 1, "mode": "range"})       # pb3 lies: counted at U = 6 A (fail-safe)
        wait_for(lambda: not devs["pb3"].status().online, what="pb3 rejected")
        assert devs["pb3"].lm_input().max_possible_draw == 6.0
        wait_for(lambda: at({"pb2": 8.6, "ocA": 8.6, "ocB": 8.6}), timeout=15, what="three at 8.6 A")
        rtu.send({"cmd": "fault", "unit": 2, "mode": "crc"})          # pb2 garbled: counted at its 8.6 A
        wait_for(lambda: not devs["pb2"].status().online, what="pb2 CRC errors")
        wait_for(lambda: at({"ocA": 8.7, "ocB": 8.7}), timeout=15, what="two at 8.7 A")
        for unit, sim in ((1, rtu), (2, rtu), (1, tcp)):
            sim.send({"cmd": "fault", "unit": unit, "mode": "none"})
        wait_for(lambda: at({"pb1": 10, "pb2": 10, "ocA": 10, "ocB": 10, "pb3": 0}), timeout=15,
                 what="four cars at 10 A")

        timelines = [[(t, f"oc{i}{c}", v) for t, c, v in box.timeline] for i, box in enumerate(ocpp)]
        for name, (unit, sim) in {"pb1": (1, rtu), "pb2": (2, rtu), "pb3": (1, tcp)}.items():
            timelines.append([(t, name, v) for t, v in sim.send({"cmd": "timeline", "unit": unit})["timeline"]])
        worst, when = worst_sum(timelines)
        assert worst <= GRID, f"{worst} A could flow at t={when}"
        for name, text in (("pb1", "no answer"), ("pb2", "CRC error"), ("pb3", "out of range")):
            assert sum(text in e for e in events(cs.runtime, name)) == 1, name   # one line per change
    finally:
        for box in ocpp:
            box.close()
        ctl.stop()
        tcp.stop()
        rtu.stop()
        pty.stop()
