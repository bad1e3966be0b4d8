"""A raw OCPP-J station for tests that need to send exactly what they want: a websocket-client
connection offering ocpp1.6, and one CALL with its answer read back."""
import json

import websocket


def raw_ws(url: str, timeout: float = 10, **kw) -> websocket.WebSocket:
    return websocket.create_connection(url, timeout=timeout, subprotocols=["ocpp1.6"], **kw)


def call(ws: websocket.WebSocket, msg_id: str, action: str, payload: dict) -> list:
    ws.send(json.dumps([2, msg_id, action, payload]))
    return json.loads(ws.recv())
