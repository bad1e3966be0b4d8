"""Load management end to end: real simulated wallboxes (one built with the `ocpp` package) on a
limited grid. Cars arrive and leave, one wallbox drops off the network mid-charge, one rejects
every profile. The limits recorded on the wallboxes' side prove that what could flow never
exceeded the grid limit at any moment, and every car charged."""
import gevent
import pytest

from appliance.sim.ocpp_wallbox import SimWallbox
from conftest import fast_site_conf, wait_for
from test_ocpp_interop import Peer

GRID = 40.0
BOX_MAX = 16.0
CONF = fast_site_conf(GRID, {"a": "type = ocpp16\naddress = SIMA", "b": "type = ocpp16\naddress = SIMB",
                             "c": "type = ocpp16\naddress = PYPI", "d": "type = ocpp16\naddress = REJECT"}, BOX_MAX)


def peer_timeline(events: list[dict]) -> list[tuple[float, str, float]]:
    """What the ocpp-package box could let flow, from its own events."""
    out, limit, charging = [], None, False
    for e in events:
        if e["event"] == "limit":
            limit = e["limit"]
        elif e["event"] == "started":
            charging = True
        elif e["event"] == "stopping":
            charging = False
        else:
            continue
        allowed = (BOX_MAX if limit is None else min(limit, BOX_MAX)) if charging else 0.0
        out.append((e["t"], "c", allowed))
    return out


def worst_sum(timelines: list[list[tuple[float, str, float]]]) -> tuple[float, str]:
    """The largest sum of what could flow at any instant, and the state at that instant."""
    events = sorted(ev for tl in timelines for ev in tl)
    now: dict[str, float] = {}
    worst, state = 0.0, ""
    for t, box, allowed in events:
        now[box] = allowed
        if sum(now.values()) > worst:
            worst, state = sum(now.values()), f"t={t:.3f} {dict(now)}"
    return worst, state


def test_grid_limit_holds_on_the_wallboxes_side(central):
    controller = pytest.importorskip("appliance.lm.controller")

    cs = central(CONF)
    ctl = controller.start(cs.runtime)
    try:
        a = SimWallbox(cs.url("SIMA"), meter_interval=0.3, car_max=16, box_max=BOX_MAX)
        b = SimWallbox(cs.url("SIMB"), meter_interval=0.3, car_max=16, box_max=BOX_MAX)
        d = SimWallbox(cs.url("REJECT"), meter_interval=0.3, car_max=16, box_max=BOX_MAX, reject_profiles=True)
        for box in (a, b, d):
            box.connect()
        c = Peer(cs.url("PYPI"))
        c.wait_event("connected")
        c.send("boot")
        c.wait_event("boot")
        devs = cs.runtime.devices
        wait_for(lambda: all(devs[n].configured for n in "abc"), what="profiles installed")
        assert not devs["d"].lm_input().controllable and devs["d"].lm_input().max_possible_draw == BOX_MAX

        a.start(1)   # alone (d counted at its maximum): 16 A
        wait_for(lambda: a.limit(1) == 16.0, what="a at 16 A")
        b.start(1)
        c.send("start TAGC")
        c.wait_event("started")
        # three cars share 40 - 16 (d, uncontrollable) = 24 A
        wait_for(lambda: a.limit(1) == 8.0 and b.limit(1) == 8.0, what="a and b at 8 A")
        wait_for(lambda: any(e["event"] == "limit" and e["limit"] == 8.0 for e in c.events), what="c at 8 A")
        c.send("meter 8")
        d.start(1)   # charges without any limit: it rejects our profiles
        a.drop()     # a vanishes mid-charge holding its 8 A profile
        wait_for(lambda: not devs["a"].status().online, what="a offline")
        c.send("stop")
        c.wait_event("stopped")
        # a is still counted at 8 A: b may rise to 40 - 16 - 8 = 16 A, not more
        wait_for(lambda: b.limit(1) == 16.0, what="b at 16 A")
        gevent.sleep(1.0)
        assert b.limit(1) == 16.0, cs.runtime.lm_status
        a.connect(boot=False)   # back, without a reboot: re-installed at its held 8 A, then rebalanced
        wait_for(lambda: devs["a"].configured, what="a configured again")
        wait_for(lambda: a.limit(1) == 12.0 and b.limit(1) == 12.0,
                 what=lambda: f"a and b share 24 A: {a.limit(1)} {b.limit(1)} {cs.runtime.lm_status}")
        for box in (a, b, d):
            box.send_meter_values(1)
            box.stop(1)
        for box in (a, b, d):
            assert box.connectors[1].energy_wh > 0, "every car charged"
        assert any(e["event"] == "limit" and (e["limit"] or 0) >= 6 for e in c.events)
        worst, state = worst_sum([[(t, f"{n}{conn}", v) for t, conn, v in box.timeline] for n, box in
                                 (("a", a), ("b", b), ("d", d))] + [peer_timeline(c.events)])
        assert worst <= GRID, f"{worst} A could flow: {state}"
        a.close(), b.close(), d.close()
        c.close()
    finally:
        ctl.stop()
