"""Timestamps as the appliance writes them: UTC, ISO 8601 with Z (the form every station parses)."""
from __future__ import annotations

from datetime import datetime, timezone


def iso_z(when: datetime, timespec: str = "milliseconds") -> str:
    return when.astimezone(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def utc_now() -> str:
    return iso_z(datetime.now(timezone.utc))
