"""Link health of one Modbus device, and its polling greenlet: one event-log line per change of
state (answering / not answering / which error), never one per cycle."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import gevent

from appliance.modbus import registers as R
from appliance.modbus.bus import Bus, BusError, acquire, release

log = logging.getLogger("ampgate.modbus")


class Health:
    def __init__(self, name: str, events: Any):
        self.name = name
        self.events = events
        self.online = False
        self.condition = "unknown"      # "ok" or an error kind
        self.error = ""
        self.since = time.monotonic()   # when the condition began
        self.errors = 0                 # failed cycles in total

    def ok(self) -> bool:
        """Returns True when the device just came back."""
        back = self.condition != "ok"
        if back:
            gap = time.monotonic() - self.since
            self.events.info("answering" if self.condition == "unknown" else f"answering again after {gap:.1f} s",
                             self.name)
        self._set("ok", "")
        self.online = True
        return back

    def failed(self, kind: str, message: str, consequence: Callable[[], str] | str = "") -> None:
        """`consequence` may be a callable: evaluated after the device is marked offline."""
        self.errors += 1
        self.online = False
        if kind != self.condition:
            then = consequence() if callable(consequence) else consequence
            self.events.warning(message + (f"; {then}" if then else ""), self.name)
            self._set(kind, message)

    def _set(self, condition: str, error: str) -> None:
        if condition != self.condition:
            self.since = time.monotonic()
        self.condition, self.error = condition, error


def error_kind(e: Exception) -> tuple[str, str]:
    """(condition, message) for a failed poll."""
    if isinstance(e, BusError):
        return e.kind, f"{e}"
    if isinstance(e, R.OutOfRange):
        return "out_of_range", f"value out of range: {e}"
    return "error", f"{type(e).__name__}: {e}"


class ModbusPolled:
    """Mixin for devices on a Modbus bus: acquires the shared bus and polls once per interval."""

    name: str
    settings: dict[str, Any]
    runtime: Any
    bus: Bus | None = None
    _poller: gevent.Greenlet | None = None

    def open_bus(self) -> Bus:
        mb = self.runtime.config.section("modbus")
        self.bus = acquire(self.settings["port"], mb["timeout"], mb["retries"],
                           self.settings.get("keep_connection", True))
        return self.bus

    def poll_interval(self) -> float:
        """Once per control cycle: keeps readings fresh and the box's fail-safe timer reset."""
        return float(self.runtime.config.section("load_management")["cycle_s"])

    def start_polling(self, poll_once: Callable[[], None]) -> None:
        def loop() -> None:
            while True:
                try:
                    poll_once()
                except Exception:     # a bug must not end the polling (and with it the fail-safe reset)
                    log.exception("%s: poll failed", self.name)
                gevent.sleep(self.poll_interval())
        self._poller = gevent.spawn(loop)

    def stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.kill()
            self._poller = None
        if self.bus is not None:
            release(self.bus)
            self.bus = None
