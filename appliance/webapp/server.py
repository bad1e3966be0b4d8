"""The HTTP server of the page and the API (gevent pywsgi), made once for `ampgate run` and tests.

One LAN host cannot lock others out of the page (appliance.netguard): at most PER_ADDRESS connections
from one address, at most the web's share of the file descriptors in total, and every request must
be complete within REQUEST_TIMEOUT_S of its first byte (slowloris).
"""
from __future__ import annotations

import logging
import socket
from typing import Any

from appliance.netguard import ConnectionLimits, DeadlineHandler, LimitedServer, fd_budget

log = logging.getLogger("ampgate.web")

PER_ADDRESS = 32            # a browser opens up to 6 per host; several tabs, phones behind one NAT
REQUEST_TIMEOUT_S = 20.0    # a 1 MiB certificate upload over a poor phone link still fits
_BUSY_TEXT = b"too many connections: try again in a moment\n"
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Retry-After: 5\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT))


class _AccessLog:
    """pywsgi's access log goes to stdout; send it to our logger at debug level instead."""

    def __init__(self) -> None:
        self.access = logging.getLogger("ampgate.http")

    def write(self, line: str) -> None:
        self.access.debug(line.rstrip())


class WebServer(LimitedServer):
    def refuse(self, sock: socket.socket) -> None:
        """One short answer without reading the request (it may never come)."""
        try:
            sock.settimeout(1.0)
            sock.sendall(BUSY)
        except OSError:
            pass


def make_server(runtime: Any, limits: ConnectionLimits | None = None,
                request_timeout: float = REQUEST_TIMEOUT_S) -> WebServer:
    """The web server on `[web] bind`/`port` (not started)."""
    from appliance.webapp import MAX_UPLOAD, create_app

    web = runtime.config.section("web")
    if limits is None:
        total = fd_budget().web
        limits = ConnectionLimits(min(PER_ADDRESS, total // 3), total)   # one host: a third at most
    handler = type("WebHandler", (DeadlineHandler,), {"max_body": MAX_UPLOAD, "request_timeout": request_timeout})
    return WebServer((web["bind"], web["port"]), create_app(runtime), limits, "web", handler_class=handler,
                     log=_AccessLog(), error_log=logging.getLogger("ampgate.http"))
