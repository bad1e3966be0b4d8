"""Per-box actions through the JSON API against real simulated OCPP wallboxes and real load management:
charge now (first in line, still inside the grid limit), pause and resume, stop the session
(RemoteStopTransaction), unlock (UnlockConnector); each logged with who did it."""
from __future__ import annotations

import base64

import pytest

from appliance.sim.ocpp_wallbox import SimWallbox
from appliance.webapp import create_app
from conftest import fast_site_conf, wait_for
from tests.test_web_api import PASSWORD, set_password

GRID = 20.0
CONF = fast_site_conf(GRID, {"a": "type = ocpp16\naddress = BOXA\npriority = 2",
                             "b": "type = ocpp16\naddress = BOXB"}, 16.0)


@pytest.fixture
def site(central):
    controller = pytest.importorskip("appliance.lm.controller")
    cs = central(CONF)
    ctl = controller.start(cs.runtime)
    boxes = {n: SimWallbox(cs.url(f"BOX{n.upper()}"), meter_interval=0.3, car_max=16, box_max=16) for n in "ab"}
    for box in boxes.values():
        box.connect()
    devs = cs.runtime.devices
    wait_for(lambda: all(devs[n].configured for n in "ab"), what="profiles installed")
    client = create_app(cs.runtime).test_client()
    set_password(client)
    yield cs, boxes, client
    for box in boxes.values():
        box.close()
    ctl.stop()


def act(client, name: str, action: str, **extra):
    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
    return client.post(f"/api/devices/{name}/action", json={"action": action, **extra}, headers=auth)


def logged(cs, name: str, words: str) -> bool:
    return any(words in e["message"] and "(by API from" in e["message"] for e in cs.runtime.store.events(device=name))


def test_charge_now_pause_resume_stop_unlock(site):
    cs, boxes, client = site
    a, b = boxes["a"], boxes["b"]
    a.start(1)
    b.start(1)
    # a has the higher priority: 16 A, b gets the 4 A left: below 6 A, so b waits
    wait_for(lambda: a.limit(1) == 16.0 and b.limit(1) == 0.0, what="a first")

    r = act(client, "b", "charge_now", minutes=30)
    assert r.status_code == 200, r.json
    wait_for(lambda: b.limit(1) == 16.0 and a.limit(1) == 0.0, what="b first now")
    assert a.limit(1) + b.limit(1) <= GRID                       # still inside the grid limit
    st = client.get("/api/status").json
    why = {d["name"]: d["why"] for d in st["devices"]}
    assert why["b"].startswith("charge now, 29:") or why["b"].startswith("charge now, 30:")
    assert logged(cs, "b", "charge now at full current for 30 min")

    assert act(client, "b", "pause").status_code == 200
    wait_for(lambda: b.limit(1) == 0.0 and a.limit(1) == 16.0, what="b paused, a back")
    assert {d["name"]: d["why"] for d in client.get("/api/status").json["devices"]}["b"] == "paused by hand"
    assert act(client, "b", "resume").status_code == 200
    assert "b" not in cs.runtime.overrides

    tx = a.connectors[1].tx_id
    r = act(client, "a", "stop")
    assert r.status_code == 200 and r.json["message"] == f"a: the box was asked to stop session {tx}"
    wait_for(lambda: a.connectors[1].tx_id is None, what="a's session stopped by the box")
    assert logged(cs, "a", f"session {tx} stopped (RemoteStopTransaction)")
    r = act(client, "a", "stop")
    assert r.status_code == 409 and r.json["error"] == "a: no session running"

    r = act(client, "b", "unlock")
    assert r.status_code == 200 and r.json["message"] == "b: connector unlocked", r.json
    assert logged(cs, "b", "unlock asked: the box answered Unlocked")


def test_actions_refused_with_a_clear_line(site):
    cs, boxes, client = site
    r = act(client, "nobody", "pause")
    assert r.status_code == 404 and r.json["error"] == "no device named 'nobody'"
    r = act(client, "a", "turbo")
    assert r.status_code == 409 and "use one of charge_now, pause, resume, stop, unlock" in r.json["error"]
    r = act(client, "a", "charge_now", minutes="zehn")
    assert r.status_code == 409 and "minutes must be a number" in r.json["error"]
    r = act(client, "a", "charge_now", minutes="90,5")
    assert r.status_code == 200
