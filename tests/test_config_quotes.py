"""Text a station or a user supplies never breaks the running appliance (issue 15 item 5): a
chargeBoxId or a field holding both ''' and \"\"\" (which configobj cannot quote) is refused with a field
error, and a failed save changes nothing in memory or on disk; the page, the API and load
management keep working. A real station connects as %27%27%27%22%22%22 and is adopted from the page."""
from __future__ import annotations

import pytest

from appliance.sim.ocpp_wallbox import SimWallbox
from appliance.webapp import create_app
from conftest import fast_site_conf, wait_for
from test_web_api import set_password, token_of

NASTY = "'''\"\"\""


def test_a_station_named_with_both_triple_quotes_is_refused_on_adoption_and_nothing_breaks(central):
    controller = pytest.importorskip("appliance.lm.controller")
    cs = central(fast_site_conf(16.0, {"a": "type = ocpp16\naddress = OURS"}))
    rt = cs.runtime
    ctl = controller.start(rt)
    ours = SimWallbox(cs.url("OURS"), meter_interval=0.3, car_max=16)
    nasty = SimWallbox(cs.url("%27%27%27%22%22%22"), meter_interval=0.3, car_max=32, box_max=32)
    try:
        ours.connect()
        nasty.connect()
        wait_for(lambda: (rt.unconfigured.get(NASTY) or {}).get("held"), what="the station listed and held")
        client = create_app(rt).test_client()
        set_password(client)
        before = rt.config.path.read_bytes()
        tok = token_of(client.get("/devices/").text)
        r = client.post("/devices/adopt", data={"charge_box_id": NASTY, "connector": "1", "csrf_token": tok})
        assert r.status_code == 302                                     # back to the list, with a message
        page = client.get("/devices/")
        assert page.status_code == 200 and "not adopted" in page.text and "cannot be stored" in page.text
        r = client.put("/api/devices/a", json={"label": NASTY}, headers={"X-CSRF-Token": tok})
        assert r.status_code == 400 and r.json["field"] == "label"
        assert rt.config.path.read_bytes() == before                   # nothing on disk
        assert list(rt.config.devices()) == ["a"] and rt.config.devices()["a"]["label"] == ""   # nor in memory
        assert client.get("/api/status").status_code == 200
        ours.start(1)                                                  # load management still runs
        wait_for(lambda: ours.limit(1) == 16.0, what="ours charging")
        nasty.start(1)
        assert nasty.limit(1) == 0.0
    finally:
        ours.close()
        nasty.close()
        ctl.stop()
