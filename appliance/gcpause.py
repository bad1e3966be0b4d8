"""Garbage collection for one long-running event loop with thousands of idle connections.

CPython's full collection walks every tracked object: with 10,000 stations (about a million
objects) that is a pause of half a second on the one event loop, during which no station is
answered. So:
- what start-up allocates (modules, schemas, configuration) is frozen out of the collector's
  reach (gc.freeze) once the appliance has started;
- every KEEP_S the collector runs over what is new since then, and what survives is frozen too:
  each pause is proportional to what changed in the last minute, not to the number of stations;
- frozen objects are never examined again, so cyclic garbage among them would never be freed:
  the station connection is torn down without leaving reference cycles (see
  RpcEndpoint.release); as a backstop a complete pass runs at most every six hours, and only
  when the frozen set grew by a quarter since the last one (10,000 stations: about 0.3 s, once);
- young collections run every YOUNG allocations instead of every 700: fewer, still short pauses.

Every collection's pause is recorded (`pauses`), and `summary()` prints their distribution.
"""
from __future__ import annotations

import bisect
import gc
import logging
import time
from typing import Any

import gevent

log = logging.getLogger("ampgate.gc")

YOUNG = 20_000        # allocations between young collections (CPython's default: 700)
KEEP_S = 60.0         # collect what is new and freeze what survives, this often
COMPLETE_S = 6 * 3600  # a complete pass (every object) at most this often
BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)


class PauseLog:
    """Counts of collection pauses per duration bucket, and the longest, for all generations."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.longest_ms = 0.0
        self.total = 0
        self._t0 = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        ms = (time.perf_counter() - self._t0) * 1000
        self.counts[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        self.longest_ms = max(self.longest_ms, ms)
        self.total += 1

    def summary(self) -> str:
        """e.g. "812 pauses: <=0.5 ms 790, <=1 ms 20, <=2 ms 2; longest 1.4 ms"."""
        labels = [f"<={b:g} ms" for b in BUCKETS_MS] + [f">{BUCKETS_MS[-1]:g} ms"]
        parts = [f"{label} {n}" for label, n in zip(labels, self.counts) if n]
        return f"{self.total} pauses: {', '.join(parts) or 'none'}; longest {self.longest_ms:.1f} ms"


pauses = PauseLog()
_keeper: gevent.Greenlet | None = None


def tune() -> None:
    """Call once the process has started (modules imported, servers listening)."""
    global _keeper
    gc.collect()
    gc.freeze()
    if pauses.callback not in gc.callbacks:   # from here on: the start-up pass is not the loop's pause
        gc.callbacks.append(pauses.callback)
    gc.set_threshold(YOUNG, 10, 10)
    if _keeper is None:
        _keeper = gevent.spawn(_keep)


def stop() -> str:
    """Stop the periodic pass; returns the pause distribution for the log."""
    global _keeper
    if _keeper is not None:
        _keeper.kill()
        _keeper = None
    return pauses.summary()


def _keep() -> None:
    last = (time.monotonic(), gc.get_freeze_count())
    while True:
        gevent.sleep(KEEP_S)
        last = keep_once(last)


def keep_once(last_complete: tuple[float, int]) -> tuple[float, int]:
    """One pass: collect what is new and freeze the survivors. At most every COMPLETE_S, and
    only when the frozen set grew by a quarter since, a complete pass instead (it also finds
    cycles among frozen objects). Returns (when, frozen count) of the last complete pass."""
    when, count = last_complete
    if time.monotonic() - when >= COMPLETE_S and gc.get_freeze_count() > count * 1.25:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        return time.monotonic(), gc.get_freeze_count()
    gc.collect()
    gc.freeze()
    return last_complete
