"""Stations nobody configured: listed for adoption while they are around, forgotten after.

Without a bound, a host that connects under thousands of made-up ids fills memory and makes
/api/status megabytes long. The list keeps every connected unknown station up to MAX, and a
disconnected one for KEEP_S (so the page can still offer it for a moment); beyond MAX the entries
that disconnected longest ago go first, and a new station is not listed while MAX connected ones
are (it is still served; one log line says so).
"""
from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("ampgate.ocpp")

MAX = 500          # entries listed at most
KEEP_S = 600.0     # a disconnected unknown station stays listed this long


class UnknownStations(dict):
    """chargeBoxId -> what we know of it (a dict, as the page and the API read it)."""

    def note(self, cpid: str, **info: Any) -> None:
        """Record what a station told us; adds it if there is room."""
        entry = self.get(cpid)
        if entry is None:
            self.forget_old()
            if len(self) >= MAX and not self._evict_one():
                log.info("%s: not listed for adoption: %d unknown stations are connected already", cpid, MAX)
                return
            entry = self[cpid] = {"connectors": {}}
        entry.update(info, last_seen=time.time())

    def disconnected(self, cpid: str) -> None:
        entry = self.get(cpid)
        if entry is not None:
            entry["connected"] = False
            entry["last_seen"] = time.time()
        self.forget_old()

    def forget_old(self) -> None:
        """Drop entries that disconnected more than KEEP_S ago."""
        limit = time.time() - KEEP_S
        for cpid in [k for k, e in self.items() if not e.get("connected") and e.get("last_seen", 0) < limit]:
            del self[cpid]

    def _evict_one(self) -> bool:
        gone = [(e.get("last_seen", 0), k) for k, e in self.items() if not e.get("connected")]
        if not gone:
            return False
        del self[min(gone)[1]]
        return True
