"""One station's live websocket connection: the receive loop feeding the RPC endpoint."""
from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from geventwebsocket.exceptions import WebSocketError

from appliance.ocpp.rpc import RpcEndpoint
from appliance.ocpp.websocket import OcppWebSocket

log = logging.getLogger("ampgate.ocpp")

# StartTransaction, StopTransaction and MeterValues are answered even when slightly off-schema:
# an unanswered transaction message blocks the station's queue (ocpp16.md §5).
LENIENT = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})


class StationSession:
    def __init__(self, cpid: str, ws: OcppWebSocket, environ: dict, call_timeout: float):
        self.cpid = cpid
        self.ws = ws
        self.peer = environ.get("REMOTE_ADDR", "?")
        self.tls = bool(environ.get("ocpp.tls"))
        self.connected_at = time.time()
        self.last_ping = time.monotonic()
        self.endpoint = RpcEndpoint("cs", self._send, {}, name=cpid, call_timeout=call_timeout, lenient=LENIENT)

    def _send(self, text: str) -> None:
        """Raises OSError, whichever way the connection is gone (closed meanwhile by another
        greenlet, or dead under the write: geventwebsocket says WebSocketError then)."""
        if self.ws.closed:
            raise OSError("websocket closed")
        try:
            self.ws.send(text)
        except WebSocketError as e:
            raise OSError(str(e)) from None

    def run(self) -> None:
        """Receive until the connection ends; each text frame goes to the RPC endpoint."""
        while True:
            message = self.ws.receive()
            if message is None:
                return
            if isinstance(message, (bytes, bytearray)):
                log.warning("%s: binary frame refused (OCPP-J uses text frames)", self.cpid)
                self.ws.close(1003, "text frames only")
                return
            self.endpoint.receive(message)

    def call(self, action: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        return self.endpoint.call(action, payload, timeout)

    def ping(self) -> None:
        try:
            self.ws.ping()
        except (OSError, WebSocketError):
            pass

    def close(self, code: int, reason: str, grace: float = 2.0) -> None:
        """Close from another greenlet: send the close frame, and cut the connection if the
        peer has not finished it within `grace` seconds."""
        self.endpoint.close()
        gevent.spawn_later(grace, self.ws.abort)   # first: a send stuck on a dead peer is cut too
        gevent.spawn(self.ws.close, code, reason)   # may wait for the send lock: never in the caller

    def close_text(self) -> str:
        if self.ws.close_code is not None:
            return f"close code {self.ws.close_code}{' ' + self.ws.close_reason if self.ws.close_reason else ''}"
        return "connection lost"
