"""House load per building phase from the meters, with the failed-meter rule (charging-manager.md §2.4).

A meter that stops answering keeps its last value for METER_GRACE_S; one that never answered counts
nothing for as long. After that its share of the house load is the worst case — the whole connection
(`max_current_per_phase`) on every phase for a grid or consumption meter, nothing for a generation
meter — until it answers again. The budget for the cars is then 0: they are paused, and the fault is
logged once and shown. While a meter is in fault the overdraft is not judged (the real load is not
known), so the worst case assumed meanwhile never lingers as a penalty after the meter is back.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from appliance.lm.model import Phases3

log = logging.getLogger("ampgate.lm")

METER_GRACE_S = 10.0   # about three control cycles: one lost reading is not a fault


@dataclass(frozen=True)
class HouseReading:
    budgeted: Phases3    # what the budget subtracts: measured values, worst case for failed meters
    measured: Phases3    # only what the meters said (for the shown load and the overdraft)
    faults: dict[str, str]  # meter name -> why its house load is taken as the worst case


def _counts(dev: Any) -> bool:
    """Meters whose reading is house load (grid, consumption, generation); display/ev meters are not."""
    return bool(getattr(dev, "counts_house_load", True))


def _worst(dev: Any, limit: float) -> Phases3:
    if getattr(dev, "feeds_in", False):      # lost generation is no generation
        return (0.0, 0.0, 0.0)
    return (limit, limit, limit)


class HouseLoad:
    def __init__(self, events: Any, clock: Callable[[], float], grace_s: float | None = None):
        self.events = events
        self.clock = clock
        self.grace_s = METER_GRACE_S if grace_s is None else grace_s
        self._last: dict[str, Phases3] = {}      # last reading of each meter
        self._seen_at: dict[str, float] = {}     # when it last answered (or was first seen)
        self._faulted: set[str] = set()

    def read(self, devices: dict[str, Any], wallboxes: Phases3, limit: float) -> HouseReading:
        """`devices`: every device; meters are those with a `house_load()`. `wallboxes`: the measured
        draw of the wallboxes per building phase (a grid meter's reading includes it). `limit`: the
        connection limit per phase, the worst case of a failed meter."""
        now = self.clock()
        budgeted, measured = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
        faults: dict[str, str] = {}
        meters = {n: d for n, d in devices.items()
                  if not getattr(d, "is_evse", False) and getattr(d, "house_load", None) is not None and _counts(d)}
        self._forget([n for n in self._seen_at if n not in meters])
        for name, dev in meters.items():
            value = self._reading(name, dev, now)
            if value is None:
                self._seen_at.setdefault(name, now)
                silent = now - self._seen_at[name]
                value = self._last.get(name)
                if silent >= self.grace_s:
                    faults[name] = self._fault(name, dev, silent, limit)
                    value = None
            if value is not None and getattr(dev, "includes_wallboxes", False):
                value = tuple(max(0.0, value[p] - wallboxes[p]) for p in range(3))  # type: ignore[assignment]
            for p in range(3):
                if value is not None:
                    measured[p] += value[p]
                    budgeted[p] += value[p]
                else:
                    budgeted[p] += _worst(dev, limit)[p]
        return HouseReading(tuple(budgeted), tuple(measured), faults)  # type: ignore[arg-type]

    def _reading(self, name: str, dev: Any, now: float) -> Phases3 | None:
        try:
            value = dev.house_load()
        except Exception as e:
            log.warning("%s: house load unreadable: %s", name, e)
            value = None
        if value is None:
            return None
        self._last[name], self._seen_at[name] = value, now
        if name in self._faulted:
            self._faulted.discard(name)
            self.events.info("meter answering again: house load measured again", name)
        return value

    def _fault(self, name: str, dev: Any, silent: float, limit: float) -> str:
        worst = _worst(dev, limit)[0]
        since = f"for {silent:.0f} s" if name in self._last else f"since start ({silent:.0f} s)"
        then = "cars paused until it answers" if worst else "no generation counted until it answers"
        why = f"meter fault: no reading {since}; house load taken as {worst:g} A per phase (worst case), {then}"
        if name not in self._faulted:
            self._faulted.add(name)
            self.events.error(why, name)
        return why

    def _forget(self, names: list[str]) -> None:
        for name in names:
            self._last.pop(name, None)
            self._seen_at.pop(name, None)
            self._faulted.discard(name)
