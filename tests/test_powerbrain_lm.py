"""Load management of Power Brain boxes exactly as of OCPP ones: a mixed site (OCPP wallboxes and
Power Brain boxes on an RTU bus and on TCP) under one grid limit. Boxes go silent, answer garbage and
come back; what each box could let flow, recorded on the boxes' side, never sums above the limit."""
import gevent
import pytest

from appliance.sim.ocpp_wallbox import SimWallbox
from appliance.sim.powerbrain import SimProcess
from conftest import subprocess_env, wait_for
from modbus_fixtures import PtyPair, events, tcp_sim

GRID = 40.0
BOX_MAX = 16.0


def conf(rtu_port: str, tcp_port: str) -> str:
    boxes = {"ocA": ("ocpp16", "address = OCA"), "ocB": ("ocpp16", "address = OCB"),
             "pb1": ("powerbrain", f'port = "{rtu_port}"\nunit = 1'),
             "pb2": ("powerbrain", f'port = "{rtu_port}"\nunit = 2'),
             "pb3": ("powerbrain", f'port = "{tcp_port}"\nunit = 1')}
    text = f"""[modbus]
timeout = 0.25
retries = 0
[load_management]
max_current_per_phase = {GRID}
max_imbalance = 40
cycle_s = 0.3
settle_s = 0.2
pause_s = 1
rotation_s = 1000
[devices]
"""
    for name, (kind, extra) in boxes.items():
        text += f"[[{name}]]\ntype = {kind}\n{extra}\nmax_current = {BOX_MAX}\nfailsafe_current = 6\n"
    return text


def worst_sum(timelines: list[list[tuple[float, str, float]]]) -> tuple[float, float]:
    """Largest sum of what could flow at any moment (all cars 3-phase on rotation 0: per phase)."""
    now: dict[str, float] = {}
    worst, when = 0.0, 0.0
    for t, box, allowed in sorted(ev for tl in timelines for ev in tl):
        now[box] = allowed
        if sum(now.values()) > worst:
            worst, when = sum(now.values()), t
    return worst, when


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
        ocpp = [SimWallbox(cs.url(cp), meter_interval=0.3, car_max=16) for cp in ("OCA", "OCB")]
        for box in ocpp:
            box.connect()
        wait_for(lambda: all(devs[n].lm_input().controllable for n in devs), what="all five controllable")
        for box in ocpp:
            box.start(1)
        for unit, sim in ((1, rtu), (2, rtu), (1, tcp)):
            sim.send({"cmd": "plug", "unit": unit, "car_max": 16})
        # five cars share 40 A: 8 A each
        wait_for(lambda: all(devs[n].lm_input().command == 8.0 for n in ("pb1", "pb2", "pb3"))
                 and all(b.limit(1) == 8.0 for b in ocpp), timeout=15, what="8 A each")

        rtu.send({"cmd": "fault", "unit": 1, "mode": "silent"})      # pb1 counted at U = 16 A (power-up default)
        wait_for(lambda: not devs["pb1"].status().online, what="pb1 offline")
        wait_for(lambda: devs["pb2"].lm_input().command == 6.0 and ocpp[0].limit(1) == 6.0, what="others at 6 A")
        tcp.send({"cmd": "fault", "unit": 1, "mode": "range"})        # pb3 lies: counted at its U too
        wait_for(lambda: not devs["pb3"].status().online, what="pb3 rejected")
        gevent.sleep(1.0)                                              # a few cycles in this state
        rtu.send({"cmd": "fault", "unit": 2, "mode": "crc"})
        wait_for(lambda: not devs["pb2"].status().online, what="pb2 CRC errors")
        gevent.sleep(1.0)
        for unit, sim in ((1, rtu), (2, rtu), (1, tcp)):
            sim.send({"cmd": "fault", "unit": unit, "mode": "none"})
        wait_for(lambda: all(devs[n].lm_input().command == 8.0 for n in ("pb1", "pb2", "pb3"))
                 and all(b.limit(1) == 8.0 for b in ocpp), timeout=15, what="back to 8 A each")

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
