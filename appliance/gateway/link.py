"""One connection to a backend (URL + charge point id), shared by the connectors configured with it.

The link owns one greenlet: connect (TLS and Basic auth as configured), BootNotification with the
wallbox's own boot payload, a StatusNotification per connector, then the durable queue in order; live
messages (status, firmware/diagnostics status) go out between queued ones and are not kept across a
lost connection (charging-manager.md §4.5). A lost or refused connection is retried after 5 s,
doubling to 5 min, each wait ±20 % (field reports: fleets reconnecting in step overload backends).

Queued messages leave the outbox only on their CALLRESULT. A CALLERROR or an invalid answer is
retried a few times, then dropped with an event (a backend refusing a message forever must not
block every later one). The backend's answer to a StartTransaction gives its transaction id, which
later StopTransaction and MeterValues of that transaction carry.
"""
from __future__ import annotations

import collections
import json
import logging
import random
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import gevent
import gevent.event
import websocket

from appliance.ocpp.client import OcppClient
from appliance.ocpp.errors import CallError, CallFailed, OcppError
from appliance.ocpp.rpc import Message, RawPayload

if TYPE_CHECKING:
    from appliance.gateway.outbox import Outbox

log = logging.getLogger("ampgate.gateway")

BACKOFF_FIRST_S, BACKOFF_MAX_S, JITTER = 5.0, 300.0, 0.2
CALL_TIMEOUT_S = 10.0        # a queued message unanswered this long: the connection is taken as dead
RELAY_TIMEOUT_S = 5.0        # the most a wallbox's Authorize/DataTransfer waits for the backend
MAX_ATTEMPTS = 5             # a queued message the backend refuses this often is dropped
LIVE_LIMIT = 200             # live messages kept while waiting to be sent (status is only news)
CONNECTING, CONNECTED, OFFLINE = "connecting", "connected", "offline"


def backoff(previous: float | None, rand: Callable[[float, float], float] = random.uniform) -> tuple[float, float]:
    """(next base delay, this wait): 5 s doubling to 5 min, the wait within ±20 % of the base."""
    base = BACKOFF_FIRST_S if previous is None else min(BACKOFF_MAX_S, previous * 2)
    return base, base * rand(1 - JITTER, 1 + JITTER)


@dataclass(frozen=True)
class Member:
    """A connector behind this link: the device, its station and connector, and its backend connector."""

    device: str
    station: str
    connector: int
    backend_connector: int


class BackendLink:
    def __init__(self, key: str, url: str, password: str, members: list[Member], outbox: "Outbox",
                 boot_payload: Callable[[], str | None], statuses: Callable[[], list[tuple[int, str]]],
                 from_backend: Callable[["BackendLink", Message], RawPayload],
                 ssl_context: Callable[[], ssl.SSLContext | None], on_event: Callable[[str, str], None]):
        self.key = key
        self.url = url
        self.password = password
        self.members = members
        self.outbox = outbox
        self.boot_payload = boot_payload        # the wallbox's BootNotification payload text
        self.statuses = statuses                # (backend connector, payload text) to send after boot
        self.from_backend = from_backend
        self.ssl_context = ssl_context
        self.on_event = on_event                # (level, message) for the event log
        self.state = OFFLINE
        self.last_error: str | None = None
        self.client: OcppClient | None = None
        self.responsive = False                 # the backend answered our last call in time
        self.heartbeat_s = 300.0
        self._live: collections.deque[tuple[str, str]] = collections.deque(maxlen=LIVE_LIMIT)
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._running = False

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self._running = False
        if self.client is not None:
            self.client.close()
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=3)

    def wake(self) -> None:
        self._wake.set()

    def send_live(self, action: str, payload: str) -> None:
        """A message that is news only now (not queued across an outage): sent if connected."""
        if self.state == CONNECTED:
            self._live.append((action, payload))
            self._wake.set()

    def relay(self, action: str, payload: str) -> RawPayload | None:
        """A wallbox's CALL for the backend to answer; None when it cannot answer in time."""
        client = self.client
        if self.state != CONNECTED or client is None or not self.responsive:
            return None
        try:
            with gevent.Timeout(RELAY_TIMEOUT_S, CallFailed(f"{action}: no answer in {RELAY_TIMEOUT_S:g} s")):
                answer = client.endpoint.call_raw(action, payload, timeout=RELAY_TIMEOUT_S, validate=False)
        except CallFailed as e:
            self._failed(action, e)
            return None
        except OcppError as e:    # the wallbox's payload is not valid for the backend
            self._failed(action, e)
            return None
        self.responsive = True
        return answer

    # -- the connection loop --------------------------------------------------------------------------
    def _run(self) -> None:
        base: float | None = None
        while self._running:
            self.state = CONNECTING
            try:
                self._connect()
                if self._boot():
                    base = None            # a booted session resets the backoff
                    self._serve()
            except (websocket.WebSocketException, OSError, CallFailed, OcppError, ValueError) as e:
                self._note_error(f"{type(e).__name__}: {e}" if not str(e) else str(e))
            finally:
                self._disconnect()
            if not self._running:
                return
            base, wait = backoff(base)
            log.info("%s: reconnecting in %.0f s", self.key, wait)
            gevent.sleep(wait)

    def _connect(self) -> None:
        client = OcppClient(self.url, {}, password=self.password or None, ssl_context=self.ssl_context(),
                            call_timeout=CALL_TIMEOUT_S, calls_in_greenlets=True)
        client.endpoint.dispatch = lambda msg: self.from_backend(self, msg)
        client.on_close = self._wake.set
        client.connect()
        self.client = client

    def _disconnect(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.state == CONNECTED:
            self.on_event("warning", f"backend connection {self.key} lost; messages are kept until it is back")
        self.state = OFFLINE
        self.responsive = False
        self._live.clear()

    def _boot(self) -> bool:
        """BootNotification with the wallbox's own payload; Pending/Rejected are retried after the
        interval the backend gives. False when the connection ended meanwhile."""
        while self._running and self.client is not None and self.client.connected:
            payload = self.boot_payload()
            if payload is None:            # the wallbox has not booted since we were set up: wait for it
                self._wake.wait(timeout=5)
                self._wake.clear()
                continue
            answer = json.loads(self._call("BootNotification", payload))
            interval = float(answer.get("interval") or 0)
            if answer.get("status") == "Accepted":
                self.heartbeat_s = interval if interval > 0 else 300.0
                self.state = CONNECTED
                self.last_error = None
                self.on_event("info", f"backend {self.key}: connected, boot accepted")
                for _connector, status in self.statuses():
                    self._call_news("StatusNotification", status)
                return True
            self._note_error(f"backend answered BootNotification with {answer.get('status')}")
            gevent.sleep(interval if interval > 0 else 30)
        return False

    def _serve(self) -> None:
        """Live messages first, then the queue in order; a heartbeat when idle."""
        idle_since = gevent.get_hub().loop.now()
        while self._running and self.client is not None and self.client.connected:
            if self._live:
                action, payload = self._live.popleft()
                self._call_news(action, payload)
                continue
            if self._send_next_queued():
                idle_since = gevent.get_hub().loop.now()
                continue
            self.outbox.trim(self.key)
            self._wake.wait(timeout=min(5.0, self.heartbeat_s))
            self._wake.clear()
            if gevent.get_hub().loop.now() - idle_since >= self.heartbeat_s:
                self._call_news("Heartbeat", "{}")
                idle_since = gevent.get_hub().loop.now()

    def _send_next_queued(self) -> bool:
        """Send the oldest queued message; False when the queue is empty (or waits on nothing)."""
        row = self.outbox.next(self.key)
        if row is None:
            return False
        payload = self.outbox.prepare(row)
        if payload is None:     # its transaction has no backend id (its start was dropped): never sendable
            self.outbox.drop(row, "its transaction never reached the backend")
            return True
        try:
            answer = self._call(row["action"], payload, msg_id=row["msg_id"])
        except CallError as e:
            self._refused(row, e)
            return True
        self.outbox.done(row, answer)
        return True

    def _refused(self, row: dict[str, Any], e: CallError) -> None:
        attempts = self.outbox.attempt(row)
        self._note_error(f"{row['action']} refused: {e.code} {e.description}".strip())
        if attempts >= MAX_ATTEMPTS:
            self.outbox.drop(row, f"refused {attempts} times ({e.code})")
        else:
            gevent.sleep(min(30.0, 2.0 ** attempts))

    def _call(self, action: str, payload: str, msg_id: str | None = None) -> str:
        client = self.client
        if client is None:
            raise OSError("not connected")
        try:
            answer = client.endpoint.call_raw(action, payload, msg_id=msg_id, validate=False)
        except CallError:
            self.responsive = True    # it answers, if not with what we hoped
            raise
        except CallFailed as e:
            self.responsive = False
            raise OSError(str(e)) from None
        self.responsive = True
        return answer

    def _call_news(self, action: str, payload: str) -> None:
        """A message nobody waits for: a refusal is noted, not retried."""
        try:
            self._call(action, payload)
        except CallError as e:
            self._note_error(f"{action} refused: {e.code} {e.description}".strip())

    # -- errors ---------------------------------------------------------------------------------------
    def _failed(self, action: str, e: Exception) -> None:
        if not isinstance(e, CallError):
            self.responsive = False   # until it answers again, wallboxes are answered locally at once
        self._note_error(f"{action}: {e}")

    def _note_error(self, text: str) -> None:
        if text != self.last_error:
            log.warning("%s: %s", self.key, text)
        self.last_error = text

    # -- for the page ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"state": self.state, "queued": self.outbox.count(self.key), "last_error": self.last_error}

