"""Setting up a large site: the OCPP address to type into a wallbox, a two-connector station adopted with
both connectors (the second must not vanish), "adopt all", and sessions begun before adoption that get
their device; the Transactions page with kWh for running sessions, filters and the German-Excel CSV."""
from __future__ import annotations

import csv
import io

from appliance.sim.ocpp_wallbox import SimWallbox
from appliance.webapp import create_app
from conftest import wait_for
from tests.test_web_api import set_password


def _client(cs):
    client = create_app(cs.runtime).test_client()
    return client, set_password(client)


def test_ocpp_address_follows_port_and_tls(conf_file, data_dir):
    from appliance import config
    from appliance.runtime import Runtime

    rt = Runtime(config.load(conf_file("[ocpp_server]\nport = 19777\ntls = detect\n")), data_dir)
    try:
        client = create_app(rt).test_client()
        set_password(client)
        page = client.get("/devices/").text       # the host name the browser used: the test client's
        assert "ws://localhost:19777/" in page and "wss://localhost:19777/" in page
    finally:
        rt.close()


def test_two_connector_station_adopted_whole_with_earlier_sessions(central):
    from appliance.lm import controller

    cs = central()
    # an unadopted station is held at 0 A (issue 15): its car charges once adopted and given current
    ctl = controller.start(cs.runtime)
    box = SimWallbox(cs.url("DUO-1"), connectors=2, meter_interval=0.3)
    other = SimWallbox(cs.url("SOLO-9"), meter_interval=0.3)
    try:
        box.connect()
        other.connect()
        box.start(2, "TAG-BEFORE")     # charges before anybody configured it
        wait_for(lambda: set(cs.runtime.unconfigured.get("DUO-1", {}).get("connectors", {})) >= {"1", "2"},
                 what="both connectors listed")
        wait_for(lambda: cs.runtime.store.transactions(id_tag="TAG-BEFORE"), what="the early session stored")
        client, tok = _client(cs)
        page = client.get("/devices/").text
        assert "Adopt with 2 connectors" in page and "Adopt all 2" in page

        r = client.post("/devices/adopt-all", data={"csrf_token": tok}, follow_redirects=True)
        assert "adopted: DUO-1, DUO-1-2, SOLO-9" in r.text
        devices = cs.runtime.config.devices()
        assert {(devices[n]["address"], devices[n]["connector"]) for n in ("DUO-1", "DUO-1-2", "SOLO-9")} == \
            {("DUO-1", 1), ("DUO-1", 2), ("SOLO-9", 1)}
        assert not cs.runtime.unconfigured
        early = cs.runtime.store.transactions(id_tag="TAG-BEFORE")[0]
        assert early["device"] == "DUO-1-2"                       # filled in at adoption
        assert [t["id_tag"] for t in cs.runtime.store.transactions(device="DUO-1-2")] == ["TAG-BEFORE"]

        # the running session shows its kWh so far; the tag filter finds it; the Excel CSV opens as is
        wait_for(lambda: (cs.runtime.devices["DUO-1-2"].status().energy_wh or 0) > 0, what="energy counted")
        page = client.get("/transactions?id_tag=TAG-BEFORE", headers={"Accept-Language": "de"}).text
        assert "bisher" in page and "läuft" in page
        r = client.get("/transactions.csv?format=excel&id_tag=TAG-BEFORE", headers={"Accept-Language": "de"})
        text = r.data.decode("utf-8")
        assert text.startswith("\ufeff") and "\r\n" in text
        rows = list(csv.reader(io.StringIO(text[1:]), delimiter=";"))
        assert rows[0] == ["Ladevorgang", "Gerät", "Anschluss", "idTag", "Beginn", "Ende", "kWh", "Zustand",
                           "Grund für das Ende"]
        assert rows[1][1] == "DUO-1-2" and rows[1][3] == "TAG-BEFORE" and "," in rows[1][6] and "." not in rows[1][6]
        assert rows[1][4].count(".") == 2                          # 03.12.2026 21:14:02, local time
    finally:
        box.close()
        other.close()
        ctl.stop()


def test_adopting_one_connector_keeps_the_other_listed(central):
    cs = central()
    box = SimWallbox(cs.url("DUO-2"), connectors=2, meter_interval=0.3)
    try:
        box.connect()
        wait_for(lambda: set(cs.runtime.unconfigured.get("DUO-2", {}).get("connectors", {})) >= {"1", "2"},
                 what="both connectors listed")
        client, tok = _client(cs)
        r = client.post("/devices/adopt", data={"csrf_token": tok, "charge_box_id": "DUO-2", "connector": "1"})
        assert r.status_code == 302
        assert list(cs.runtime.unconfigured["DUO-2"]["connectors"]) == ["2"]
        assert "DUO-2" in client.get("/devices/").text.split('id="unconfigured"')[1]
    finally:
        box.close()
