"""How much meter data one station may store, so one station cannot fill the disk for all.

Each station has a token bucket of bytes (BURST, refilled at RATE per second: far above what a box
sampling every few seconds with signed values sends, far below what a runaway one can). Below
`storage_reserve_mb` of free space no meter value is stored at all: what is left is kept for
transactions (Start and Stop are always stored). Samples over the budget are answered normally and
not stored (the station cannot do anything better with them); one log line per station and minute
says how many.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("ampgate.ocpp")

RATE = 4096               # bytes per second and station
BURST = 2 << 20           # bytes a station may store at once
SAMPLE_OVERHEAD = 64      # bytes a stored sample costs beside its text (row, index)
REPORT_EVERY_S = 60.0
FREE_CHECK_EVERY_S = 1.0


class MeterBudget:
    def __init__(self, data_dir: str | os.PathLike, reserve_mb: float):
        self.data_dir = Path(data_dir)
        self.reserve = reserve_mb * (1 << 20)
        self._tokens: dict[str, tuple[float, float]] = {}    # cpid -> (tokens, when)
        self._dropped: dict[str, tuple[int, float, str]] = {}  # cpid -> (not yet reported, last report, why)
        self._free: tuple[float, float] = (0.0, -1e9)          # (bytes, when)

    def disk_low(self) -> str | None:
        """Why meter values must not be stored now, or None."""
        free, when = self._free
        now = time.monotonic()
        if now - when > FREE_CHECK_EVERY_S:
            st = os.statvfs(self.data_dir)
            free = float(st.f_bavail * st.f_frsize)
            self._free = (free, now)
        if free < self.reserve:
            return f"disk nearly full ({free / (1 << 20):.1f} MiB free, {self.reserve / (1 << 20):.0f} MiB kept for transactions)"
        return None

    def allow(self, cpid: str, samples: list[Any], rate_limited: bool = True) -> list[Any]:
        """The samples that may be stored now (all or none)."""
        if not samples:
            return samples
        why = self.disk_low()
        if why is None and rate_limited:
            cost = sum(len(s.value) + len(s.timestamp) + len(s.measurand) + SAMPLE_OVERHEAD for s in samples)
            now = time.monotonic()
            tokens, when = self._tokens.get(cpid, (float(BURST), now))
            tokens = min(float(BURST), tokens + (now - when) * RATE)
            if cost <= tokens:
                self._tokens[cpid] = (tokens - cost, now)
            else:
                self._tokens[cpid] = (tokens, now)
                why = f"over its storage budget ({RATE // 1024} KiB/s)"
        if why is None:
            return samples
        self._count(cpid, len(samples), why)
        return []

    def _count(self, cpid: str, n: int, why: str) -> None:
        count, logged, _ = self._dropped.get(cpid, (0, -REPORT_EVERY_S, why))
        count += n
        now = time.monotonic()
        if now - logged >= REPORT_EVERY_S:
            log.warning("%s: %d meter samples not stored: %s", cpid, count, why)
            count, logged = 0, now
        self._dropped[cpid] = (count, logged, why)
