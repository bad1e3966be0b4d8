"""What one host may hold of a listening server, so it cannot lock out the others.

- Per-address and total connection limits (`ConnectionLimits`, `LimitedServer`): a connection over a
  limit is answered at once (`refuse`) and closed instead of being served. At the total, an idle
  connection of the address holding the most is closed for a newcomer from an address holding fewer.
- A file-descriptor budget (`fd_budget`): the process's open-file limit is raised to what the system
  allows, a reserve is kept for the database, logs, configuration writes, certificates and Modbus
  ports, and the rest is split between the servers. With every server under its cap, accept() never
  fails for lack of descriptors, so the page and the stations always get in somewhere.
- A whole-request deadline for pywsgi handlers (`DeadlineHandler`): from the first byte of a request
  until its head and body are read, instead of a timeout per read that a slowloris client resets
  with every byte it trickles in. Keep-alive connections waiting for their next request have an idle
  timeout; once the request is in, each send has a timeout (a client that never reads).
"""
from __future__ import annotations

import io
import logging
import resource
import socket
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.pywsgi import WSGIHandler, WSGIServer

log = logging.getLogger("ampgate.net")

FD_WANTED = 16384          # raise the soft open-file limit this far if the hard limit allows
FD_RESERVE = 64            # database, log, config writes, certificates, Modbus ports, DNS
WEB_SHARE = 4              # the page gets a quarter of the rest, within these bounds
WEB_MIN_CONNECTIONS = 16
WEB_MAX_CONNECTIONS = 128


@dataclass(frozen=True)
class FdBudget:
    limit: int             # the process's open-file limit
    web: int               # connections the web server may hold at once
    ocpp: int              # connections the OCPP server may hold at once


def fd_budget() -> FdBudget:
    """Raise the soft RLIMIT_NOFILE towards the hard one, then split it between the servers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FD_WANTED if hard == resource.RLIM_INFINITY else min(FD_WANTED, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (OSError, ValueError) as e:
            log.info("open-file limit stays at %s: %s", soft, e)
    usable = max(16, min(soft, 1 << 20) - FD_RESERVE)
    web = max(WEB_MIN_CONNECTIONS, min(WEB_MAX_CONNECTIONS, usable // WEB_SHARE))
    return FdBudget(limit=soft, web=web, ocpp=max(8, usable - web))


class _Conn:
    __slots__ = ("greenlet", "busy")

    def __init__(self, greenlet: Any):
        self.greenlet = greenlet   # its handler; None: never closed to make room
        self.busy = False          # the application is answering it: never closed to make room either


class ConnectionLimits:
    """Open connections per client address and in total.

    When the total is reached, a newcomer is still let in if some address holds more connections than
    the newcomer's would then be: that address's oldest connection that is idle or still sending its
    request (and was admitted with its greenlet) is closed for it. So several addresses together
    cannot lock out one more either.
    """

    def __init__(self, per_address: int, total: int):
        self.per_address, self.total = per_address, total
        self.by_address: dict[str, list[_Conn]] = {}
        self.count = 0

    @property
    def open(self) -> dict[str, int]:
        return {a: len(c) for a, c in self.by_address.items()}

    def admit(self, address: str, greenlet: Any = None) -> str | None:
        """None when a connection from `address` may be served (it is counted now), else why not.
        With `greenlet` (the connection's handler) it may later be closed to make room for a newcomer."""
        mine = self.by_address.get(address, [])
        if len(mine) >= self.per_address:
            return f"more than {self.per_address} connections from {address}"
        if self.count >= self.total and not self._evict_for(len(mine)):
            return f"more than {self.total} connections in total"
        self.by_address.setdefault(address, []).append(_Conn(greenlet))
        self.count += 1
        return None

    def _evict_for(self, have: int) -> bool:
        address, conns = max(self.by_address.items(), key=lambda kv: len(kv[1]), default=("", []))
        if len(conns) <= have + 1:
            return False
        victim = next((c for c in conns if not c.busy and c.greenlet is not None), None)
        if victim is None:
            return False
        log.info("%d connections in total: closing an idle one of %s (%d open) for a newcomer",
                 self.count, address, len(conns))
        self._remove(address, victim)
        victim.greenlet.kill(block=False)
        return True

    def _find(self, address: str, greenlet: Any) -> _Conn | None:
        return next((c for c in self.by_address.get(address, ()) if c.greenlet is greenlet), None)

    def _remove(self, address: str, conn: _Conn) -> None:
        conns = self.by_address[address]
        conns.remove(conn)
        if not conns:
            del self.by_address[address]
        self.count -= 1

    def release(self, address: str, greenlet: Any = None) -> None:
        """The connection admitted with `greenlet` is closed (nothing to do if it was made room with)."""
        conn = self._find(address, greenlet)
        if conn is not None:
            self._remove(address, conn)

    def set_busy(self, address: str, greenlet: Any, busy: bool) -> None:
        conn = self._find(address, greenlet)
        if conn is not None:
            conn.busy = busy


class LimitedServer(WSGIServer):
    """A pywsgi server that counts connections per address and refuses those over the limits."""

    def __init__(self, listener: Any, application: Any, limits: ConnectionLimits, name: str, **kw: Any):
        super().__init__(listener, application, **kw)
        self.limits = limits
        self.name = name
        self._refused: dict[str, int] = {}     # addresses refused since last served: logged once
        self._peers: dict[Any, str] = {}       # handler greenlet -> its address, for mark_busy

    def handle(self, sock: socket.socket, address: Any) -> None:
        peer = str(address[0]) if isinstance(address, tuple) else str(address)
        me = gevent.getcurrent()
        why = self.limits.admit(peer, me)
        if why is not None:
            self._note_refusal(peer, why)
            try:
                self.refuse(sock)
            finally:
                sock.close()
            return
        self._refused.pop(peer, None)
        self._peers[me] = peer
        try:
            super().handle(sock, address)
        finally:
            del self._peers[me]
            self.limits.release(peer, me)

    def mark_busy(self, busy: bool) -> None:
        """Called by the handler around the application: a busy connection is never evicted."""
        me = gevent.getcurrent()
        peer = self._peers.get(me)
        if peer is not None:
            self.limits.set_busy(peer, me, busy)

    def refuse(self, sock: socket.socket) -> None:
        """Tell the client before closing (override); the default just closes."""

    def _note_refusal(self, peer: str, why: str) -> None:
        """One log line per address until it is served again (bounded: many addresses, one line each)."""
        if peer in self._refused or len(self._refused) >= 1024:
            return
        log.warning("%s: connection from %s refused: %s", self.name, peer, why)
        self._refused[peer] = 1


class RequestTooSlow(BaseException):
    """Raised into a handler whose request missed its deadline. A BaseException like gevent.Timeout,
    so pywsgi's own `except Exception` (which would answer 400 and log a traceback) lets it through."""


class DeadlineHandler(WSGIHandler):
    """pywsgi handler with an idle timeout, a whole-request deadline and a send timeout.

    The request's body is read here, under the deadline, before the application runs: the
    application then never waits on the client, and a deadline can never interrupt it halfway.
    """

    idle_timeout = 30.0        # s a keep-alive connection may wait for its next request
    request_timeout = 20.0     # s from a request's first byte until its head and body are in
    send_timeout = 30.0        # s a single send of the answer may block
    max_body = 1 << 20         # bytes of body kept; a larger one is read and dropped (the app says 413)

    _deadline: gevent.Timeout | None = None

    def handle_one_request(self) -> Any:
        if self.rfile.closed:
            return None
        self.socket.settimeout(self.idle_timeout)
        try:
            if not self.rfile.peek(1):
                return None
        except OSError:           # idle too long, or reset: nothing was asked, nothing to answer
            return None
        self._deadline = gevent.Timeout(self.request_timeout, RequestTooSlow)
        self._deadline.start()
        try:
            return super().handle_one_request()
        except RequestTooSlow:
            log.info("%s: request not complete after %.0f s: connection closed", self.client_address[0],
                     self.request_timeout)
            self.close_connection = True
            return None
        finally:
            self._deadline.close()
            self._busy(False)

    def _busy(self, busy: bool) -> None:
        mark = getattr(self.server, "mark_busy", None)
        if mark is not None:
            mark(busy)

    def get_environ(self) -> dict:
        """Called once the head is read (still under the deadline): read the body, then stop the clock."""
        env = super().get_environ()
        if self.wsgi_input is not None and (self.content_length or self.headers.get("transfer-encoding")):
            body = self._read_body()
            env["wsgi.input"] = io.BytesIO(body)
            if self.content_length is None:          # chunked: now it has a length
                env["CONTENT_LENGTH"] = str(len(body))
                env.pop("HTTP_TRANSFER_ENCODING", None)
        if self._deadline is not None:
            self._deadline.cancel()
        self.socket.settimeout(self.send_timeout)
        self._busy(True)
        return env

    def _read_body(self) -> bytes:
        parts: list[bytes] = []
        kept = 0
        while True:
            chunk = self.wsgi_input.read(65536)
            if not chunk:
                return b"".join(parts)
            if kept <= self.max_body:
                parts.append(chunk)
                kept += len(chunk)
