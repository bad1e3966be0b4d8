"""The HTTP server of the page and the API (gevent pywsgi), made once for `ampgate run` and tests."""
from __future__ import annotations

import logging
from typing import Any

from gevent.pywsgi import WSGIServer

log = logging.getLogger("ampgate.web")


class _AccessLog:
    """pywsgi's access log goes to stdout; send it to our logger at debug level instead."""

    def __init__(self) -> None:
        self.access = logging.getLogger("ampgate.http")

    def write(self, line: str) -> None:
        self.access.debug(line.rstrip())


def make_server(runtime: Any) -> WSGIServer:
    """The web server on `[web] bind`/`port` (not started)."""
    from appliance.webapp import create_app

    web = runtime.config.section("web")
    return WSGIServer((web["bind"], web["port"]), create_app(runtime), log=_AccessLog(),
                      error_log=logging.getLogger("ampgate.http"))
