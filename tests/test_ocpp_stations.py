"""Every standard station gets in (issue 16, items 14-17): chargeBoxIds as the station spells them,
stations with ChargeProfileMaxStackLevel 0, DataTransfer per vendor and message, and input that is
deep, wrongly typed or huge gets its 1.6 answer without flooding the log."""
import base64
import json
import logging

import pytest
import websocket

from ocpp_raw import call, ocpp_reply, raw_ws

from appliance.ocpp import datatransfer
from appliance.sim.ocpp_wallbox import SimWallbox
from conftest import wait_for

TS = "2026-12-01T10:00:00Z"




def basic(user, password):
    return ["Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()]


@pytest.mark.parametrize("path, cpid", [("Wallbox-%C3%A4", "Wallbox-ä"), ("A%2FB", "A/B"), ("ocpp//CP%201/", "CP 1")])
def test_charge_box_id_is_decoded_once_as_utf8(central, path, cpid):
    cs = central(server="password = geheim")
    ws = raw_ws(f"ws://127.0.0.1:{cs.port}/{path}", header=basic(cpid, "geheim"))
    assert call(ws, "1", "Heartbeat", {})[0] == 3
    assert list(cs.server.sessions) == [cpid]
    ws.close()


def test_charge_box_id_that_is_not_utf8_is_refused(central):
    cs = central()
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        raw_ws(f"ws://127.0.0.1:{cs.port}/CP%FF")
    assert e.value.status_code == 404


def test_station_with_max_stack_level_0_is_controlled(central):
    cs = central("[devices]\n[[g]]\ntype = ocpp16\naddress = ZERO\n")
    box = SimWallbox(cs.url("ZERO"), max_stack_level=0, meter_interval=3600)
    box.connect()
    dev = cs.runtime.devices["g"]
    wait_for(lambda: dev.configured, what="profile installed")
    assert [p["stack"] for p in box.profiles.describe()] == [0]
    box.close()


@pytest.fixture
def route():
    datatransfer.register("Relay", "Tariff", lambda cpid, p: {"status": "Accepted", "data": f"for {cpid}"})
    yield
    datatransfer.ROUTES.pop(("Relay", "Tariff"))


def test_data_transfer_is_answered_per_vendor_and_message(central, route):
    cs = central(server='data_transfer_accept = "GiroE other"')
    ws = raw_ws(cs.url("T1"))
    ask = lambda v, m=None: call(ws, "d", "DataTransfer", {"vendorId": v, **({"messageId": m} if m else {}),
                                                            "data": "receipt 12,34 EUR"})[2]
    assert ask("GiroE", "Receipt") == {"status": "Accepted"}
    assert any("GiroE" in e["message"] and "12,34" in e["message"] for e in cs.runtime.store.events())
    assert ask("Nobody") == {"status": "UnknownVendorId"}
    assert ask("Relay", "Tariff") == {"status": "Accepted", "data": "for T1"}
    assert ask("Relay", "Other") == {"status": "UnknownMessageId"}
    ws.close()


def test_deep_nesting_gets_a_callerror_and_the_connection_stays(central, caplog):
    cs = central()
    ws = raw_ws(cs.url("DEEP"))
    for depth in (1000, 5000):
        ws.send('[2,"deep","DataTransfer",{"vendorId":"x","data":' + "[" * depth + "]" * depth + "}]")
        answer = json.loads(ocpp_reply(ws))
        assert answer[:3] == [4, "deep", "FormationViolation"] or answer[:3] == [4, "deep", "TypeConstraintViolation"]
    assert call(ws, "ok", "Heartbeat", {})[0] == 3
    assert "Traceback" not in caplog.text
    ws.close()


@pytest.mark.parametrize("action, payload", [
    ("StartTransaction", {"connectorId": 1, "idTag": 123, "meterStart": 0, "timestamp": TS}),
    ("StartTransaction", {"connectorId": 1, "idTag": ["A"], "meterStart": 0, "timestamp": TS}),
    ("StartTransaction", {"connectorId": "x", "idTag": "A", "meterStart": 0, "timestamp": TS}),
    ("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 1.5, "timestamp": TS}),
    ("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 1e30, "timestamp": TS}),
    ("StartTransaction", {"connectorId": True, "idTag": "A", "meterStart": 0, "timestamp": TS}),
    ("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": {"t": 1}}),
    ("StopTransaction", {"transactionId": "x", "meterStop": 0, "timestamp": TS}),
    ("StopTransaction", {"transactionId": 1, "meterStop": 0, "timestamp": TS, "reason": ["Local"]}),
    ("StopTransaction", {"transactionId": 1, "meterStop": 0, "timestamp": TS, "transactionData": {"a": 1}}),
    ("StopTransaction", {"transactionId": 1, "meterStop": 0, "timestamp": TS, "transactionData": 7}),
    ("StopTransaction", {"transactionId": 1, "meterStop": 0, "timestamp": TS,
                         "transactionData": [{"timestamp": 5, "sampledValue": [{"value": {"x": 1}, "unit": [1]}]}]}),
    ("MeterValues", {"connectorId": 1, "meterValue": "abc"}),
    ("MeterValues", {"connectorId": 1, "transactionId": "abc", "meterValue": []}),
    ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": 5, "phase": {}}]}]}),
    ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": "x"}]}),
])
def test_wrongly_typed_transaction_messages_get_the_16_code(central, action, payload, caplog):
    cs = central()
    ws = raw_ws(cs.url("TYPES"))
    answer = call(ws, "w", action, payload)
    assert answer[0] == 3 or answer[0] == 4 and answer[2] != "InternalError", answer
    assert call(ws, "ok", "Heartbeat", {})[0] == 3
    assert "Traceback" not in caplog.text
    ws.close()


def test_the_log_does_not_grow_with_what_a_station_sends(central, caplog):
    caplog.set_level(logging.DEBUG)
    cs = central()
    ws = raw_ws(cs.url("BIG"))
    big = "x" * 30000
    frames = [
        [2, "a", big, {}],                                                         # unknown action
        [2, big, "Heartbeat", {}],                                                 # long id
        [2, "c", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M", big: 1}],
        [2, "d", "StartTransaction", {"connectorId": 1, "idTag": big, "meterStart": 0, "timestamp": TS}],
        [2, "e", "DataTransfer", {"vendorId": big, "data": big}],
        [2, "f", "StopTransaction", {"transactionId": 99, "meterStop": 0, "timestamp": TS, "reason": big}],
    ]
    sent = 0
    for frame in frames:
        text = json.dumps(frame)
        sent += len(text)
        ws.send(text)
        answer = ocpp_reply(ws)
        assert len(answer) < 2000 or json.loads(answer)[0] == 3 and big not in answer[100:], answer[:200]
    assert call(ws, "ok", "Heartbeat", {})[0] == 3
    logged = caplog.text + "".join(e["message"] for e in cs.runtime.store.events())
    assert len(logged) < 20000, f"{len(logged)} characters logged for {sent} sent"
    ws.close()


def day_of_signed_samples(tx_id, n=96):
    """A StopTransaction with a day of 15-minute samples and signed values: about 130 KB."""
    signed = "A" * 1200
    data = [{"timestamp": f"2026-12-01T{i // 4:02d}:{i % 4 * 15:02d}:00Z",
             "sampledValue": [{"value": str(1000 + i), "context": "Sample.Periodic", "format": "Raw"},
                              {"value": signed, "format": "SignedData"}]} for i in range(n)]
    return {"transactionId": tx_id, "meterStop": 25000, "timestamp": TS, "reason": "EVDisconnected",
            "transactionData": data}


def start_tx(ws):
    return call(ws, "s", "StartTransaction", {"connectorId": 1, "idTag": "CARD", "meterStart": 1000,
                                              "timestamp": TS})[2]["transactionId"]


def test_a_realistic_large_stop_fits_the_default_limit(central):
    cs = central()
    ws = raw_ws(cs.url("BIG"))
    tx = start_tx(ws)
    payload = day_of_signed_samples(tx)
    assert len(json.dumps(payload)) > 120_000
    assert call(ws, "t", "StopTransaction", payload)[0] == 3
    assert cs.runtime.store.get_transaction(tx)["meter_stop"] == 25000
    assert len(cs.runtime.store.meter_values(tx)) == 2 * 96
    ws.close()


@pytest.mark.parametrize("fragments", [1, 3])
def test_a_stop_over_the_limit_is_still_a_stop(central, caplog, fragments):
    cs = central(server="max_message_bytes = 4096")
    ws = raw_ws(cs.url("BIG"))
    tx = start_tx(ws)
    text = json.dumps([2, "t", "StopTransaction", day_of_signed_samples(tx)])
    if fragments == 1:
        ws.send(text)
    else:
        third = len(text) // 3
        ws.send_frame(websocket.ABNF.create_frame(text[:third], websocket.ABNF.OPCODE_TEXT, fin=0))
        ws.ping(b"still here")
        ws.send_frame(websocket.ABNF.create_frame(text[third:2 * third], websocket.ABNF.OPCODE_CONT, fin=0))
        ws.send_frame(websocket.ABNF.create_frame(text[2 * third:], websocket.ABNF.OPCODE_CONT, fin=1))
    assert json.loads(ocpp_reply(ws)) == [3, "t", {}]
    row = cs.runtime.store.get_transaction(tx)
    assert row["state"] == "stopped" and row["meter_stop"] == 25000 and row["stop_reason"] == "EVDisconnected"
    assert "kept without its transactionData" in caplog.text
    assert call(ws, "ok", "Heartbeat", {})[0] == 3     # the connection goes on
    ws.close()
