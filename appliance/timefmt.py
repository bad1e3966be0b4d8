"""Timestamps as the appliance writes them: UTC, ISO 8601 with Z (the form every station parses)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

_second: list = [None, ""]   # the last whole second formatted, and its text up to the seconds


def iso_z(when: datetime, timespec: str = "milliseconds") -> str:
    return when.astimezone(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def utc_now() -> str:
    """Now, to the millisecond, e.g. 2026-12-03T20:21:10.123Z. Every Heartbeat answer carries one:
    the date and time part is formatted once per second, not per call."""
    now = time.time()
    second = int(now)
    if _second[0] != second:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"
