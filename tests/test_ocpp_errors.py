"""Bad input at the OCPP endpoint, each asserted exactly, while a second wallbox keeps working."""
import base64
import json
import socket

import gevent
import pytest
import websocket

from appliance.sim.ocpp_wallbox import SimWallbox
from conftest import wait_for
from ocpp_raw import ocpp_reply

CONF = "[devices]\n[[good]]\ntype = ocpp16\naddress = GOOD\n"


def raw_ws(url, **kw):
    kw.setdefault("subprotocols", ["ocpp1.6"])
    return websocket.create_connection(url, timeout=5, **kw)


def exchange(ws, text):
    ws.send(text)
    return json.loads(ocpp_reply(ws))


@pytest.fixture
def site(central):
    """The central system plus a well-behaved wallbox that must keep working throughout."""
    cs = central(CONF)
    good = SimWallbox(cs.url("GOOD"), meter_interval=3600)
    good.connect()
    yield cs, good
    # the good box still gets answers after everything the test threw at the server
    assert "currentTime" in good.client.call("Heartbeat", {})
    good.start(1)
    wait_for(lambda: cs.runtime.devices["good"].tx_id is not None, what="good box's transaction")
    good.close()


BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


@pytest.mark.parametrize("frame, code, msg_id", [
    ("this is not json", "FormationViolation", "-1"),
    ('{"a": 1}', "FormationViolation", "-1"),
    ('[2, "x1", "Heartbeat"]', "FormationViolation", "x1"),
    ('[2, 17, "Heartbeat", {}]', "ProtocolError", "-1"),
    ('[2, "x2", "Heartbeat", []]', "ProtocolError", "x2"),
    ('[2, "x3", "BootNotification", {"chargePointVendor": 5, "chargePointModel": "M"}]', "TypeConstraintViolation", "x3"),
    ('[2, "x4", "BootNotification", {"chargePointVendor": "' + "V" * 21 + '", "chargePointModel": "M"}]',
     "TypeConstraintViolation", "x4"),
    ('[2, "x5", "BootNotification", {"chargePointModel": "M"}]', "OccurenceConstraintViolation", "x5"),
    ('[2, "x6", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M", "colour": "red"}]',
     "FormationViolation", "x6"),
    ('[2, "x7", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}]',
     "PropertyConstraintViolation", "x7"),
    ('[2, "x8", "FlyToTheMoon", {}]', "NotImplemented", "x8"),
    ('[2, "x9", "ReserveNow", {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "A", "reservationId": 1}]',
     "NotSupported", "x9"),
    ('[2, "x10", "StartTransaction", {"connectorId": 1, "idTag": "A", "timestamp": "2030-01-01T00:00:00Z"}]',
     "OccurenceConstraintViolation", "x10"),
])
def test_bad_frames_get_the_exact_callerror(site, frame, code, msg_id):
    cs, _ = site
    ws = raw_ws(cs.url("BAD"))
    answer = exchange(ws, frame)
    assert answer[0] == 4 and answer[1] == msg_id and answer[2] == code, answer
    assert isinstance(answer[3], str) and isinstance(answer[4], dict)
    # the connection stays usable after a CALLERROR
    assert exchange(ws, '[2, "ok", "Heartbeat", {}]')[0] == 3
    ws.close()


def test_unknown_message_type_is_ignored_and_repeated_id_gets_the_cached_answer(site):
    cs, _ = site
    ws = raw_ws(cs.url("BAD"))
    ws.send('[7, "z", {}]')
    first = exchange(ws, json.dumps([2, "same", "BootNotification", BOOT]))
    again = exchange(ws, json.dumps([2, "same", "BootNotification", BOOT]))
    assert first == again and first[0] == 3
    ws.close()


def test_oversized_frame_closes_with_1009(site):
    cs, _ = site
    ws = raw_ws(cs.url("BAD"))
    ws.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "A" * (1 << 20)}]))   # over 1 MiB
    frame = ws.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1009


def test_wrong_subprotocol_completes_handshake_then_closes_1002(site):
    cs, _ = site
    # websocket-client aborts when the answer lacks its subprotocol, so speak HTTP by hand
    s = socket.create_connection(("127.0.0.1", cs.port), timeout=5)
    key = base64.b64encode(b"0123456789abcdef").decode()
    s.sendall((f"GET /BAD HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Protocol: xocpp1.6j, ocpp2.0.1\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101") and b"sec-websocket-protocol" not in head.lower()
    while len(rest) < 4:
        rest += s.recv(4096)
    assert rest[0] == 0x88 and int.from_bytes(rest[2:4], "big") == 1002
    s.close()


@pytest.mark.parametrize("auth, status", [
    (None, 401),
    (("BAD", b"wrong"), 401),
    (("OTHER", b"secret-password"), 401),   # user must be the chargeBoxId
])
def test_wrong_password_gets_401_before_upgrade(central, auth, status):
    cs = central(server='password = "secret-password"')
    header = []
    if auth:
        header = ["Authorization: Basic " + base64.b64encode(auth[0].encode() + b":" + auth[1]).decode()]
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        raw_ws(cs.url("BAD"), header=header)
    assert e.value.status_code == status


def test_password_literal_and_hex_key_forms(central):
    key_hex = "0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF"
    cs = central(server=f'password = "{key_hex}"')
    # the spec's own example: identity AL1000, raw key bytes on the wire
    hdr = "Authorization: Basic QUwxMDAwOgABAgMEBQYH////////////////"
    raw_ws(cs.url("AL1000"), header=[hdr]).close()
    for secret in (key_hex.encode(), key_hex.lower().encode()):
        raw_ws(cs.url("AL1000"), header=["Authorization: Basic " + base64.b64encode(b"AL1000:" + secret).decode()]).close()


def test_client_that_vanishes_mid_call(site):
    """Our call to a station that vanishes fails at once, not after the call timeout."""
    cs, good = site
    ws = raw_ws(cs.url("GONE"))
    exchange(ws, json.dumps([2, "b1", "BootNotification", BOOT]))
    session = cs.server.session("GONE")
    call = gevent.spawn(session.call, "GetConfiguration", {}, 20)
    frame = json.loads(ocpp_reply(ws))
    assert frame[0] == 2 and frame[2] == "GetConfiguration"
    ws.sock.shutdown(socket.SHUT_RDWR)   # gone without a close frame, our call unanswered
    ws.sock.close()
    call.join(timeout=5)
    assert call.ready() and type(call.exception).__name__ == "ConnectionClosed"
    wait_for(lambda: cs.server.session("GONE") is None, what="session removed")


def test_reconnect_with_same_id_replaces_old_connection(site):
    cs, _ = site
    first = raw_ws(cs.url("TWIN"))
    second = raw_ws(cs.url("TWIN"))
    frame = first.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 1008
    assert exchange(second, '[2, "a", "Heartbeat", {}]')[0] == 3
    second.close()


def test_unknown_station_is_listed_for_adoption(site):
    cs, _ = site
    ws = raw_ws(cs.url("STRANGER%20ONE"))
    exchange(ws, json.dumps([2, "b", "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X1"}]))
    entry = cs.runtime.status()["unconfigured"]
    assert [e["charge_box_id"] for e in entry] == ["STRANGER ONE"] and entry[0]["vendor"] == "ACME"
    ws.close()


def test_plain_http_request_gets_426(site):
    cs, _ = site
    s = socket.create_connection(("127.0.0.1", cs.port), timeout=5)
    s.sendall(b"GET /CP1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 426")
    s.close()


def test_password_change_applies_without_restart(central):
    cs = central()
    raw_ws(cs.url("LIVE")).close()
    cs.runtime.config.update_section("ocpp_server", {"password": "from-now-on"})
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        raw_ws(cs.url("LIVE"))
    assert e.value.status_code == 401
    raw_ws(cs.url("LIVE"), header=["Authorization: Basic " + base64.b64encode(b"LIVE:from-now-on").decode()]).close()


def test_invalid_utf8_text_closes_with_1007(site):
    cs, _ = site
    ws = raw_ws(cs.url("BAD"))
    ws.send(b'[2,"u","Heartbeat",{"x":"\xff\xfe"}]', opcode=websocket.ABNF.OPCODE_TEXT)
    frame = ws.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 1007


def test_fragmented_message_is_reassembled(site):
    cs, _ = site
    ws = raw_ws(cs.url("FRAG"))
    text = json.dumps([2, "f1", "BootNotification", BOOT]).encode()
    ws.send_frame(websocket.ABNF.create_frame(text[:10], websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame(text[10:], websocket.ABNF.OPCODE_CONT, fin=1))
    answer = json.loads(ocpp_reply(ws))
    assert answer[0] == 3 and answer[1] == "f1" and answer[2]["status"] == "Accepted"
    ws.close()


def test_a_broken_answer_gets_no_answer_of_its_own(site):
    """A CALLERROR only ever answers a CALL: a malformed CALLRESULT is logged and dropped."""
    cs, _ = site
    ws = raw_ws(cs.url("BAD"))
    ws.send('[3, "nobody-asked"]')
    ws.send('[3, 42, {}]')
    assert exchange(ws, '[2, "next", "Heartbeat", {}]')[:2] == [3, "next"]
    ws.close()
