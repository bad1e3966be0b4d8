"""Admission for the OCPP port: one LAN host must not lock the stations out.

Every accepted connection passes here before anything is read from it:
- the OCPP port's share of the file descriptors (appliance.netguard.fd_budget): it never holds
  more connections, so the page, the database and the Modbus lines keep working;
- per address: at most `max_connections_per_address` connections, handshaking or established;
- a deadline for the whole handshake (TLS, request line, headers), not per read: a client
  trickling one byte every few seconds is cut at the deadline all the same;
- TLS handshake computation (the expensive part of a reconnect storm) runs at most TLS_WORK at
  a time, and a slot is held only while computing, never while waiting for the client: a storm's
  handshakes queue behind each other instead of in front of the stations already answered, and a
  slow client cannot sit on a slot.
Refusals close the socket at once and are logged once per address and minute, not per try.
"""
from __future__ import annotations

import logging
import socket
import ssl
import time

import gevent
from gevent.lock import BoundedSemaphore
from gevent.socket import wait_read, wait_write

from appliance.netguard import ConnectionLimits

log = logging.getLogger("ampgate.ocpp")

TLS_WORK = 4          # TLS handshake steps computed at once
LOG_EVERY_S = 60.0    # one line per address and reason this often


class HandshakeDeadline(socket.timeout):
    """Raised in a connection's greenlet when its whole handshake took too long. A socket timeout,
    so every layer below treats it as one and closes quietly."""


class Handshake:
    """One connection's passage through the guard; `done()` once its request headers are in."""

    __slots__ = ("address", "deadline", "ends", "open")

    def __init__(self, address: str, seconds: float):
        self.address = address
        self.deadline = gevent.Timeout(seconds, HandshakeDeadline(f"handshake not finished within {seconds:g} s"))
        self.ends = time.monotonic() + seconds
        self.open = True

    def begin(self) -> None:
        self.deadline.start()

    def done(self) -> None:
        """The handshake's reads are over: stop its deadline. Idempotent."""
        self.deadline.close()
        self.open = False

    @property
    def expired(self) -> bool:
        return self.open and time.monotonic() >= self.ends


class Guard:
    def __init__(self, max_connections: int, per_address: int, handshake_timeout: float):
        self.limits = ConnectionLimits(per_address or max_connections, max_connections)
        self.handshake_timeout = handshake_timeout
        self.tls_slots = BoundedSemaphore(TLS_WORK)
        self._logged: dict[tuple[str, str], float] = {}

    def admit(self, address: str) -> Handshake | None:
        """A Handshake for an accepted connection, or None (then close it at once)."""
        why = self.limits.admit(address)   # without a greenlet: never closed to make room for others
        if why is not None:
            self.note(address, f"connection refused: {why}")
            return None
        return Handshake(address, self.handshake_timeout)

    def leave(self, handshake: Handshake) -> None:
        """The connection is closed."""
        if handshake.expired:
            self.note(handshake.address, f"handshake not finished within {self.handshake_timeout:g} s; closed")
        handshake.done()
        self.limits.release(handshake.address)

    def tls_handshake(self, sock: ssl.SSLSocket) -> None:
        """Complete a server-side TLS handshake, computing only while holding a TLS slot and
        waiting for the client without one. Raises what the handshake raises."""
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            while True:
                with self.tls_slots:
                    try:
                        sock.do_handshake()
                        return
                    except ssl.SSLWantReadError:
                        wait = wait_read
                    except ssl.SSLWantWriteError:
                        wait = wait_write
                wait(sock.fileno(), timeout)
        finally:
            sock.settimeout(timeout)

    def note(self, address: str, why: str) -> None:
        """Log one line per address and reason a minute: a flood must not flood the log too."""
        now = time.monotonic()
        key = (address, why)
        if now - self._logged.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
            if len(self._logged) > 1000:
                self._logged.clear()
            self._logged[key] = now
            log.warning("%s: %s (logged once a minute)", address, why)
