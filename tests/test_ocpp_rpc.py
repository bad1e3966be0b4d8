"""The RPC core on its own: two real endpoints wired back to back (one per role)."""
import json
import socket
from decimal import Decimal

import gevent
import pytest
from gevent.queue import Queue

from appliance.ocpp.errors import CallError, CallTimeout, OcppError
from appliance.ocpp.rpc import RpcEndpoint, raw_elements
from conftest import wait_for


def pair(cs_handlers=None, cp_handlers=None, timeout=5.0):
    """A charge point and a central system whose frames travel through queues (in order)."""
    to_cs, to_cp = Queue(), Queue()
    cs = RpcEndpoint("cs", to_cp.put, cs_handlers or {}, name="cs", call_timeout=timeout)
    cp = RpcEndpoint("cp", to_cs.put, cp_handlers or {}, name="cp", call_timeout=timeout)
    pumps = [gevent.spawn(lambda: [cs.receive(m) for m in to_cs]), gevent.spawn(lambda: [cp.receive(m) for m in to_cp])]
    return cs, cp, pumps, (to_cs, to_cp)


def test_signed_meter_data_keeps_its_bytes():
    payload = '{"connectorId":1,"meterValue":[{"timestamp":"2024-05-01T12:00:00Z","sampledValue":[{"value":"OCMF|{\\"FV\\":\\"1.10\\"}|{\\"SD\\":\\"3045\\"}","format":"SignedData","x":1.10, "e":1e3, "u":"\\u00fc"}]}]}'
    frame = '[2, "abc",  "MeterValues", ' + payload + ']'
    parts = raw_elements(frame)
    assert parts == ["2", '"abc"', '"MeterValues"', payload]


def test_numbers_reach_handlers_as_decimal_and_one_call_at_a_time():
    seen = []

    def on_set(p):
        seen.append(p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"])
        gevent.sleep(0.05)
        return {"status": "Accepted"}

    cs, cp, pumps, (to_cs, to_cp) = pair(cp_handlers={"SetChargingProfile": on_set})
    profile = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
               "chargingProfileKind": "Relative",
               "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0.3}]}}
    sent = []
    orig = cs._send
    cs._send = lambda text: (sent.append(text), orig(text))
    calls = [gevent.spawn(cs.call, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile})
             for _ in range(3)]
    gevent.joinall(calls, timeout=5)
    assert [c.value["status"] for c in calls] == ["Accepted"] * 3
    assert seen == [Decimal("0.3")] * 3 and isinstance(seen[0], Decimal)
    assert len({json.loads(t)[1] for t in sent}) == 3   # fresh ids
    for p in pumps:
        p.kill()


def test_incoming_call_parsed_once_unless_it_holds_floats():
    """Handlers see Decimal for every JSON float and plain int otherwise, whichever parse path
    the frame took (frames without floats are not parsed a second time)."""
    seen = []
    cs = RpcEndpoint("cs", lambda text: None, {"MeterValues": lambda p: seen.append(p) or {}}, name="cs",
                     lenient=frozenset({"MeterValues"}))   # the stations' 1.0 connector ids are tolerated
    sampled = [{"value": "10.0", "measurand": "Current.Import", "unit": "A"}]
    cs.receive(json.dumps([2, "a", "MeterValues", {"connectorId": 1, "transactionId": 7,
                                                  "meterValue": [{"timestamp": "2026-01-01T00:00:00Z",
                                                                  "sampledValue": sampled}]}]))
    cs.receive('[2, "b", "MeterValues", {"connectorId": 1.0, "meterValue": [{"timestamp": '
               '"2026-01-01T00:00:00Z", "sampledValue": [{"value": "1", "x": 1e1}]}]}]')
    first, second = seen
    assert first["connectorId"] == 1 and type(first["connectorId"]) is int and first["transactionId"] == 7
    assert first["meterValue"][0]["sampledValue"] == sampled
    assert second["connectorId"] == Decimal("1.0") and isinstance(second["connectorId"], Decimal)
    assert second["meterValue"][0]["sampledValue"][0]["x"] == Decimal("1e1")


def test_call_timeout_and_late_answer_is_dropped():
    cs, cp, pumps, (to_cs, to_cp) = pair(timeout=0.2)
    pumps[1].kill()   # the charge point never reads: our call times out
    with pytest.raises(CallTimeout):
        cs.call("GetConfiguration", {})
    late = json.loads(to_cp.get())
    cs.receive(json.dumps([3, late[1], {"configurationKey": []}]))   # logged and dropped, no crash
    pumps[0].kill()


def test_callerror_reaches_the_caller_with_received_aliases_mapped():
    cs, cp, pumps, _ = pair()
    with pytest.raises(CallError) as e:
        cp.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    assert e.value.code == "NotSupported"   # a known action the CS does not handle
    for p in pumps:
        p.kill()


def test_invalid_outgoing_payload_is_never_sent():
    sent = []
    cs = RpcEndpoint("cs", sent.append, {}, name="cs")
    with pytest.raises(OcppError) as e:
        cs.call("SetChargingProfile", {"connectorId": 1})
    assert e.value.code == "OccurenceConstraintViolation" and sent == []


def test_silent_client_is_closed_after_handshake_timeout(central):
    cs = central(server="handshake_timeout = 0.5\nidle_timeout = 1\nping_interval = 0")
    s = socket.create_connection(("127.0.0.1", cs.port), timeout=5)
    assert s.recv(10) == b""   # closed by the server without a word
    s.close()


def test_idle_connection_is_closed(central):
    import websocket

    cs = central(server="idle_timeout = 1\nping_interval = 0")
    ws = websocket.create_connection(cs.url("IDLE"), subprotocols=["ocpp1.6"], timeout=10)
    wait_for(lambda: cs.server.session("IDLE") is not None)
    frame = ws.recv_frame()
    assert frame.opcode == 8 and int.from_bytes(frame.data[:2], "big") == 1001
    wait_for(lambda: cs.server.session("IDLE") is None, what="idle session removed")
