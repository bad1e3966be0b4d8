"""The gateway end to end: two `ocpp`-package wallboxes behind the appliance, an `ocpp`-package
billing backend beyond it; every relayed message in both directions."""
import pytest

from appliance.gateway.service import Gateway
from conftest import wait_for
from gateway_peers import Backend, Box

TS = "2026-12-03T10:00:00Z"


def site(backend_port: int) -> str:
    url = f"ws://127.0.0.1:{backend_port}/ocpp/v16"
    return ("[devices]\n"
            f"[[one]]\ntype = ocpp16\naddress = BOX1\ngateway_url = {url}\ngateway_id = GW-1\n"
            f"gateway_password = s3cret\n"
            f"[[two]]\ntype = ocpp16\naddress = BOX2\ngateway_url = {url}/\ngateway_id = GW-2\ngateway_connector = 3\n")


@pytest.fixture
def gateway_site(central):
    backend = Backend()
    cs = central(site(backend.port))
    gw = Gateway(cs.runtime)
    cs.runtime.gateway = gw
    gw.start()
    boxes = [Box(cs.url("BOX1")), Box(cs.url("BOX2"))]
    yield cs, backend, boxes
    for box in boxes:
        box.close()
    gw.stop()
    backend.close()


def boot(box: Box, serial: str) -> None:
    r = box.send("BootNotification", {"charge_point_vendor": "Mennekes", "charge_point_model": "Amtron",
                                      "charge_point_serial_number": serial, "firmware_version": "5.1"})
    assert r["payload"]["status"] == "Accepted"
    box.send("StatusNotification", {"connector_id": 1, "error_code": "NoError", "status": "Available"})


def test_every_message_both_ways(gateway_site):
    cs, backend, (one, two) = gateway_site
    boot(one, "S-1")
    boot(two, "S-2")
    backend.wait(lambda e: e["event"] == "connected" and e["cp"] == "GW-1")
    gw1 = lambda action=None: backend.frames("GW-1", action)  # noqa: E731
    wait_for(lambda: gw1("BootNotification"), what="boot at the backend")
    assert gw1("BootNotification")[0][3]["chargePointSerialNumber"] == "S-1"      # the wallbox's own identity
    assert next(e for e in backend.events if e["event"] == "connected" and e["cp"] == "GW-1")["auth"] == "GW-1:s3cret"
    wait_for(lambda: backend.frames("GW-2", "StatusNotification"), what="status of box two")
    assert backend.frames("GW-2", "StatusNotification")[-1][3]["connectorId"] == 3   # gateway_connector

    # wallbox -> backend
    a = one.send("Authorize", {"id_tag": "BADCARD"})
    assert a["payload"]["id_tag_info"]["status"] == "Invalid"                      # the backend decides
    assert one.send("Authorize", {"id_tag": "CARD1"})["payload"]["id_tag_info"]["status"] == "Accepted"
    one.send("StatusNotification", {"connector_id": 1, "error_code": "NoError", "status": "Preparing"})
    start = one.send("StartTransaction", {"connector_id": 1, "id_tag": "CARD1", "meter_start": 1000, "timestamp": TS})
    local_tx = start["payload"]["transaction_id"]
    one.send("MeterValues", {"connector_id": 1, "transaction_id": local_tx, "meter_value": [
        {"timestamp": TS, "sampled_value": [{"value": "1500", "measurand": "Energy.Active.Import.Register"}]}]})
    dt = one.send("DataTransfer", {"vendor_id": "giro-e", "message_id": "card", "data": "abc"})
    assert dt["payload"] == {"status": "Accepted", "data": "backend saw giro-e"}   # the backend's answer
    one.send("DiagnosticsStatusNotification", {"status": "Uploaded"})
    one.send("FirmwareStatusNotification", {"status": "Installed"})
    one.send("StopTransaction", {"meter_stop": 2000, "timestamp": TS, "transaction_id": local_tx, "reason": "Local",
                                 "id_tag": "CARD1"})
    wait_for(lambda: gw1("StopTransaction"), what="stop at the backend")
    [st] = gw1("StartTransaction")
    assert st[3] == {"connectorId": 1, "idTag": "CARD1", "meterStart": 1000, "timestamp": TS}
    [mv] = gw1("MeterValues")
    [sp] = gw1("StopTransaction")
    assert mv[3]["transactionId"] == sp[3]["transactionId"] == 5001 != local_tx   # ids mapped
    assert [f[3]["vendorId"] for f in gw1("DataTransfer")] == ["giro-e"]
    assert gw1("DiagnosticsStatusNotification") and gw1("FirmwareStatusNotification")
    assert [f[3]["status"] for f in gw1("StatusNotification")][-1] == "Preparing"

    # backend -> wallbox: forwarded, answers relayed
    forwarded = {
        "RemoteStartTransaction": {"id_tag": "CARD2", "connector_id": 1},
        "RemoteStopTransaction": {"transaction_id": 5001},
        "Reset": {"type": "Soft"},
        "UnlockConnector": {"connector_id": 1},
        "ChangeAvailability": {"connector_id": 1, "type": "Inoperative"},
        "GetConfiguration": {"key": ["LightIntensity"]},
        "ChangeConfiguration": {"key": "LightIntensity", "value": "40"},
        "TriggerMessage": {"requested_message": "StatusNotification", "connector_id": 1},
        "DataTransfer": {"vendor_id": "giro-e", "data": "x"},
        "GetDiagnostics": {"location": "ftp://example.org/"},
        "UpdateFirmware": {"location": "ftp://example.org/fw", "retrieve_date": TS},
        "ReserveNow": {"connector_id": 1, "expiry_date": TS, "id_tag": "CARD3", "reservation_id": 4},
        "CancelReservation": {"reservation_id": 4},
        "GetLocalListVersion": {},
        "SendLocalList": {"list_version": 4, "update_type": "Full"},
        "ClearCache": {},
    }
    for action, payload in forwarded.items():
        r = backend.call("GW-1", action, payload)
        assert r["event"] == "result", r
        wait_for(lambda: one.received(action), what=f"{action} at the wallbox")
    assert one.received("RemoteStopTransaction")[0]["transaction_id"] == local_tx   # mapped back
    assert backend.call("GW-1", "GetLocalListVersion", {})["payload"]["list_version"] == 3
    assert backend.call("GW-1", "GetDiagnostics", {"location": "ftp://example.org/d"})["payload"]["file_name"] == "diag.log"
    # keys the appliance relies on are refused, never forwarded
    r = backend.call("GW-1", "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "3600"})
    assert r["payload"]["status"] == "Rejected"
    assert all(c["key"] == "LightIntensity" for c in one.received("ChangeConfiguration"))
    # box two's backend connector 3 is its connector 1
    backend.call("GW-2", "UnlockConnector", {"connector_id": 3})
    wait_for(lambda: two.received("UnlockConnector"), what="unlock at box two")
    assert two.received("UnlockConnector")[0]["connector_id"] == 1

    # charging profiles: recorded, never forwarded; the box gets min(backend, local share)
    dev = cs.runtime.devices["one"]
    ours = len(one.received("SetChargingProfile"))
    profile = {"charging_profile_id": 77, "stack_level": 0, "charging_profile_purpose": "TxDefaultProfile",
               "charging_profile_kind": "Absolute", "charging_schedule": {
                   "charging_rate_unit": "A", "charging_schedule_period": [{"start_period": 0, "limit": 8}]}}
    r = backend.call("GW-1", "SetChargingProfile", {"connector_id": 1, "cs_charging_profiles": profile})
    assert r["payload"]["status"] == "Accepted"
    assert all(p["cs_charging_profiles"]["charging_profile_id"] != 77 for p in one.received("SetChargingProfile"))
    assert dev.lm_input().max_current == 8 and cs.runtime.stations.get("BOX1").effective_limit(1, 16) == 8
    sched = backend.call("GW-1", "GetCompositeSchedule", {"connector_id": 1, "duration": 600})
    assert "payload" in sched, sched
    sched = sched["payload"]
    assert sched["status"] == "Accepted" and sched["charging_schedule"]["charging_schedule_period"][0]["limit"] == 8
    r = backend.call("GW-1", "ClearChargingProfile", {"id": 77})
    assert r["payload"]["status"] == "Accepted" and dev.lm_input().max_current == 16
    assert len([p for p in one.received("SetChargingProfile")
                if p["cs_charging_profiles"]["charging_profile_id"] == 77]) == 0 and ours >= 0

    # the page and API
    status = {d["name"]: d for d in cs.runtime.status()["devices"]}
    assert status["one"]["gateway"] == {"state": "connected", "queued": 0, "last_error": None}
