"""The Modbus tool against the Power Brain simulator while the box is controlled: reads and writes go
through the link's shared bus queue; 16/32-bit, signed, scaled; flash registers only when confirmed;
the same tool on the page (German) and in the API."""
from __future__ import annotations

import base64
import re

import pytest

from appliance.modbus import bus as bus_mod
from appliance.modbus import tool
from appliance.webapp import create_app
from modbus_fixtures import one_box
from tests.test_web_api import PASSWORD, set_password

AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}


@pytest.mark.parametrize("words, signed, scale, raw, value", [
    ([0x0000, 0xCF05], False, 1, None, 0xCF05), ([0xFFFF], True, 1, None, -1), ([0xFFFF, 0xFF9C], True, 1, None, -100),
    ([160], False, 0.1, None, 16), ([0x8000], False, 1, None, 32768)])
def test_decode_and_encode_round_trip(words, signed, scale, raw, value):
    assert tool.decode(words, signed, scale) == value
    assert tool.encode(value, len(words), signed, scale) == words


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(tool.ToolError, match="does not fit"):
        tool.encode(70000, 1, False, 1)
    with pytest.raises(tool.ToolError, match="does not fit"):
        tool.encode(-1, 1, False, 1)


def test_tool_on_a_controlled_box(tmp_path):
    with one_box(tmp_path, {}) as (sim, rt, box):
        port = box.settings["port"]
        client = create_app(rt).test_client()
        set_password(client)
        key = bus_mod.parse_port(port).key
        shared = bus_mod._buses[key]            # the bus the box's control uses
        requests_before = shared.stats["requests"]

        def api(**body):
            return client.post("/api/modbus", json={"port": port, "unit": 1, **body}, headers=AUTH)

        r = api(address=8000, bits=32)
        assert r.status_code == 200 and r.json["value"] == 0xCF05 and r.json["hex"] == "0000 CF05", r.json
        r = api(address=8081, value="16,5", scale="0,1")
        assert r.status_code == 400 and "flash memory" in r.json["error"]
        r = api(address=8081, value="16,5", scale="0,1", confirm_flash=True)
        assert r.status_code == 200 and r.json["value"] == 16.5 and r.json["words"] == [165]
        assert any("register 8081 written 00A5" in e["message"] for e in rt.store.events())
        r = api(address=8086, value=300)          # not flash: no confirmation needed
        assert r.status_code == 200 and r.json["value"] == 300
        r = client.post("/api/modbus", json={"port": "COM3", "unit": 1, "address": 1}, headers=AUTH)
        assert r.status_code == 400 and f"configured: {port}" in r.json["error"]
        assert bus_mod._buses[key] is shared and shared.stats["requests"] >= requests_before + 5   # same queue

        tok = set_password.__globals__["token_of"](client.get("/system/").text)
        page = client.post("/system/modbus?lang=de", data={"csrf_token": tok, "port": port, "unit": "1",
                                                           "address": "8003", "bits": "16"})
        assert page.status_code == 200
        assert re.search(r"Register 8003 = 256 \(roh 0100\)", page.text)
        page = client.post("/system/modbus", data={"csrf_token": tok, "port": port, "unit": "1", "address": "8081",
                                                   "value": "10", "scale": "0,1"})
        assert page.status_code == 400 and "Flash-Speicher" in page.text
