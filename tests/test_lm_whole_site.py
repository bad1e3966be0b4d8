"""The whole controller under everything at once (issue 15): stations appear, are adopted, removed,
disabled and vanish, a grid meter fails and recovers, and the configuration file is reloaded valid,
truncated or empty, interleaved at random (hypothesis, derandomized). Real OCPP stations over real
websockets, the real central system and controller, the SDM630 simulator. The property, read from the
stations' own records: at no moment could the boxes together draw more than the connection limit less
the house load."""
from __future__ import annotations

import os
import time

import gevent
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.lm import house as house_mod
from appliance.sim.ocpp_wallbox import SimWallbox
from conftest import CentralSystemUnderTest, wait_for
from modbus_fixtures import TEST_MODBUS, tcp_sim
from test_lm_e2e import worst_sum

LIMIT, HOUSE, BOX_MAX = 20.0, 4.0, 16.0
STATIONS = ("S0", "S1", "S2")
ACTIONS = st.one_of(
    st.tuples(st.sampled_from(["start", "stop", "drop", "connect", "adopt", "remove", "disable", "enable"]),
              st.integers(0, len(STATIONS) - 1)),
    st.tuples(st.sampled_from(["truncated", "empty", "meter_fail", "meter_ok", "wait"]), st.just(0)))


@pytest.fixture(scope="module")
def meter():
    sim, port = tcp_sim("--units", "1", "--sdm630", "10")
    sim.send({"cmd": "meter", "unit": 10, "currents": [HOUSE, HOUSE, HOUSE]})
    yield sim, port
    sim.stop()


class Site:
    """The file the operator edits, and what the test did to the stations."""

    def __init__(self, tmp, meter_port: str):
        self.meter_port = meter_port
        self.adopted = {"S0": True, "S1": True, "S2": False}
        self.active = {cp: True for cp in STATIONS}
        head = (f"[load_management]\nmax_current_per_phase = {LIMIT}\nmax_imbalance = {LIMIT}\ncycle_s = 0.2\n"
                "settle_s = 0.2\npause_s = 0.5\nrotation_s = 1000\noverdraft_penalty_s = 0\n")
        self.cs = CentralSystemUnderTest(tmp, TEST_MODBUS + head + self.devices(), server="ping_interval = 0\n")
        self.rt = self.cs.runtime
        self.head = self.rt.config.path.read_text(encoding="utf-8").split("[devices]")[0]

    def devices(self) -> str:
        text = f'[devices]\n[[grid]]\ntype = sdm630\nport = "{self.meter_port}"\nunit = 10\nrole = consumption\n'
        for cp in STATIONS:
            if self.adopted[cp]:
                text += f"[[{cp.lower()}]]\ntype = ocpp16\naddress = {cp}\nmax_current = {BOX_MAX}\n"
                text += "" if self.active[cp] else "active = false\n"
        return text

    def reload(self, text: str | None = None) -> None:
        """Write the file (the whole configuration unless `text`) and do what the file watcher does."""
        path = self.rt.config.path
        path.write_text(self.head + self.devices() if text is None else text, encoding="utf-8")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
        try:
            if self.rt.config.refresh():
                self.rt.load_devices()
        except Exception as e:   # a refused file keeps the running configuration
            assert text is not None, e


@settings(derandomize=True, database=None, max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(ACTIONS, min_size=6, max_size=16))
def test_nothing_anyone_does_lets_the_boxes_draw_more_than_the_limit(tmp_path_factory, meter, actions):
    controller = pytest.importorskip("appliance.lm.controller")
    sim, port = meter
    sim.send({"cmd": "fault", "unit": 10, "mode": "none"})
    grace, house_mod.METER_GRACE_S = house_mod.METER_GRACE_S, 0.5
    site = Site(tmp_path_factory.mktemp("site"), port)
    ctl = controller.start(site.rt)
    boxes = {cp: SimWallbox(site.cs.url(cp), meter_interval=0.2, car_max=BOX_MAX, box_max=BOX_MAX) for cp in STATIONS}
    online = set()
    try:
        wait_for(lambda: site.rt.devices["grid"].house_load() is not None, what="meter read")

        def connect(cp: str, boot: bool = True) -> None:
            boxes[cp].connect(boot=boot)
            online.add(cp)
            dev = site.rt.devices.get(cp.lower())
            wait_for(lambda: (dev is not None and dev.configured) or dev is None and
                     (site.rt.unconfigured.get(cp) or {}).get("held"), what=f"{cp} under control")

        for cp in STATIONS:
            connect(cp)
        for what, i in actions:
            cp = STATIONS[i]
            box = boxes[cp]
            if what == "start" and cp in online and box.connectors[1].tx_id is None:
                box.start(1)
            elif what == "stop" and cp in online and box.connectors[1].tx_id is not None:
                box.stop(1)
            elif what == "drop" and cp in online:
                box.drop()
                online.discard(cp)
            elif what == "connect" and cp not in online:
                connect(cp, boot=False)
            elif what in ("adopt", "remove"):
                site.adopted[cp] = what == "adopt"
                site.reload()
            elif what in ("disable", "enable"):
                site.active[cp] = what == "enable"
                site.reload()
            elif what == "truncated":
                site.reload(site.head[:60])
            elif what == "empty":
                site.reload("")
            elif what in ("meter_fail", "meter_ok"):
                sim.send({"cmd": "fault", "unit": 10, "mode": "silent" if what == "meter_fail" else "none"})
            gevent.sleep(0.3 if what == "wait" else 0.05)
        gevent.sleep(1.0)
        worst, when = worst_sum([[(t, cp, v) for t, _, v in box.timeline] for cp, box in boxes.items()])
        assert worst <= LIMIT - HOUSE, f"{worst} A could flow at {when}; actions {actions}"
    finally:
        house_mod.METER_GRACE_S = grace
        for box in boxes.values():
            box.close()
        ctl.stop()
        site.cs.stop()
