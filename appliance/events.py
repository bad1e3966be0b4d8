"""The event log: one line to the process log and one row in SQLite, per thing that happened."""
from __future__ import annotations

import logging

from appliance.store import Store

log = logging.getLogger("ampgate")


class EventLog:
    """Say which device, what happened and what the appliance does about it."""

    def __init__(self, store: Store | None):
        self.store = store

    def _emit(self, level: int, message: str, device: str | None) -> None:
        log.log(level, "%s%s", f"{device}: " if device else "", message)
        if self.store is not None:
            try:
                self.store.add_event(logging.getLevelName(level).lower(), message, device)
            except Exception as e:  # the log must never take the caller down
                log.error("event log write failed: %s", e)

    def info(self, message: str, device: str | None = None) -> None:
        self._emit(logging.INFO, message, device)

    def warning(self, message: str, device: str | None = None) -> None:
        self._emit(logging.WARNING, message, device)

    def error(self, message: str, device: str | None = None) -> None:
        self._emit(logging.ERROR, message, device)
