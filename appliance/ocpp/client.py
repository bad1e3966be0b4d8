"""Outbound OCPP-J connection (we are the charge point): the simulator now, the gateway later.

websocket-client under gevent: one greenlet reads (it must keep reading so pings get answered),
the RPC endpoint does the rest. No reconnect here: callers own their retry policy.
"""
from __future__ import annotations

import base64
import logging
import ssl
from typing import Any, Callable

import gevent
import websocket

from appliance.ocpp.rpc import Handler, RpcEndpoint
from appliance.ocpp.websocket import SUBPROTOCOL

log = logging.getLogger("ampgate.ocpp.client")


def basic_auth_header(user: str, password: str | bytes) -> str:
    secret = password if isinstance(password, bytes) else password.encode("utf-8")
    return "Basic " + base64.b64encode(user.encode("utf-8") + b":" + secret).decode("ascii")


class OcppClient:
    """Connect to `url` (ws:// or wss://, the charge point id as last path segment)."""

    def __init__(self, url: str, handlers: dict[str, Handler], *, name: str = "", password: str | bytes | None = None,
                 ssl_context: ssl.SSLContext | None = None, call_timeout: float = 30.0, timeout: float = 10.0,
                 subprotocols: list[str] | None = None, calls_in_greenlets: bool = False):
        self.url = url
        self.name = name or url.rstrip("/").rsplit("/", 1)[-1]
        self.password = password
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.subprotocols = subprotocols or [SUBPROTOCOL]
        self.ws: websocket.WebSocket | None = None
        self.endpoint = RpcEndpoint("cp", self._send, handlers, name=self.name, call_timeout=call_timeout)
        self._reader: gevent.Greenlet | None = None
        self.on_close: Callable[[], None] | None = None
        # a gateway answers a backend's CALL by asking a wallbox: meanwhile this connection must keep
        # reading (the answers to our own calls, pings), so each CALL is handled in its own greenlet
        self.calls_in_greenlets = calls_in_greenlets

    def connect(self) -> None:
        """Open the websocket (raises websocket.WebSocketException or OSError on failure)."""
        header = []
        if self.password is not None:
            header.append("Authorization: " + basic_auth_header(self.name, self.password))
        sslopt: dict[str, Any] = {}
        if self.ssl_context is not None:
            sslopt["context"] = self.ssl_context
        self.ws = websocket.create_connection(self.url, timeout=self.timeout, subprotocols=self.subprotocols,
                                              header=header, sslopt=sslopt, enable_multithread=True)
        self.ws.settimeout(None)
        self.endpoint.closed = False
        self._reader = gevent.spawn(self._read_loop)

    def _send(self, text: str) -> None:
        if self.ws is None or not self.ws.connected:
            raise OSError("not connected")
        try:
            self.ws.send(text)
        except websocket.WebSocketException as e:
            raise OSError(str(e)) from None

    def _read_loop(self) -> None:
        ws = self.ws
        try:
            while ws is not None and ws.connected:
                text = ws.recv()
                if not text:
                    break
                frame = text if isinstance(text, str) else text.decode("utf-8", "replace")
                if self.calls_in_greenlets and frame.lstrip("[ \t\r\n").startswith("2"):
                    gevent.spawn(self.endpoint.receive, frame)
                else:
                    self.endpoint.receive(frame)
        except (websocket.WebSocketException, OSError) as e:
            log.info("%s: connection ended: %s", self.name, e)
        finally:
            self.endpoint.close()
            if self.on_close is not None:
                self.on_close()

    def call(self, action: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        return self.endpoint.call(action, payload, timeout)

    @property
    def connected(self) -> bool:
        return self.ws is not None and self.ws.connected

    def close(self) -> None:
        """A clean close (close frame 1000)."""
        if self.ws is not None:
            try:
                self.ws.close()
            except (websocket.WebSocketException, OSError):
                pass
        self.endpoint.close()

    def drop(self) -> None:
        """Vanish without a close frame, as a station losing its network does."""
        if self.ws is not None and self.ws.sock is not None:
            try:
                self.ws.sock.shutdown(2)
                self.ws.sock.close()
            except OSError:
                pass
        self.endpoint.close()
