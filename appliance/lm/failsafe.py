"""When load management cannot run, no wallbox may keep a current nobody is watching: every wallbox
is paused (0 A), again every HOLD_S for boxes that reconnect or were busy, and the page says why.

Deliberately free of the engine and the controller: it must work when those fail to import.
"""
from __future__ import annotations

import logging
from typing import Any

import gevent

log = logging.getLogger("ampgate.lm")

HOLD_S = 3.0


class PauseAll:
    """Sends 0 A to every wallbox, at most one command per box at a time."""

    def __init__(self, runtime: Any):
        self.rt = runtime
        self._running: dict[str, gevent.Greenlet] = {}

    def __call__(self, skip: set[str] | frozenset[str] = frozenset()) -> None:
        for name, dev in list(self.rt.devices.items()):
            if getattr(dev, "is_evse", False) and name not in skip and name not in self._running:
                self._running[name] = gevent.spawn(self._pause, dev)

    def _pause(self, dev: Any) -> None:
        try:
            dev.apply(0.0, 3)
        except Exception as e:   # one box must not keep the others from being paused
            log.warning("%s: pausing it failed: %s", dev.name, e)
        finally:
            self._running.pop(dev.name, None)


def show_stopped(runtime: Any, why: str) -> None:
    """The page's words for a control loop that does not run."""
    runtime.lm_status["stopped"] = f"{why}; every wallbox is paused until it runs again"


class FailSafe:
    """Stands in for the controller when it could not start: holds every wallbox at 0 A."""

    def __init__(self, runtime: Any, why: str):
        self.rt = runtime
        self.why = why
        self.pause_all = PauseAll(runtime)
        self._loop: gevent.Greenlet | None = None

    def start(self) -> "FailSafe":
        self.rt.lm_status.clear()
        self.rt.lm_status["mode"] = "stopped"
        show_stopped(self.rt, self.why)
        self.rt.events.error(f"{self.why}; every wallbox is paused")
        self._loop = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        while True:
            try:
                self.pause_all()
            except Exception:
                log.exception("fail-safe pause failed")
            gevent.sleep(HOLD_S)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.kill()
