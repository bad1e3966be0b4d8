"""A raw OCPP-J station for tests that need to send exactly what they want: a websocket-client
connection offering ocpp1.6, and one CALL with its answer read back."""
import json

import websocket


def raw_ws(url: str, timeout: float = 10, **kw) -> websocket.WebSocket:
    return websocket.create_connection(url, timeout=timeout, subprotocols=["ocpp1.6"], **kw)


def call(ws: websocket.WebSocket, msg_id: str, action: str, payload: dict) -> list:
    ws.send(json.dumps([2, msg_id, action, payload]))
    return json.loads(ocpp_reply(ws))


HOLD_ACTIONS = ("SetChargingProfile", "ClearChargingProfile")


def ocpp_reply(ws: websocket.WebSocket) -> str:
    """The next frame, after answering (Accepted) the central system's 0 A hold of an unadopted
    station, which may arrive between a request and its answer."""
    while True:
        text = ws.recv()
        frame = json.loads(text) if text.startswith("[2") else None
        if frame and frame[0] == 2 and frame[2] in HOLD_ACTIONS:
            ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
            continue
        return text
