"""The grid operator's limit (§14a EnWG): while the operator's control signal is on, all managed
wallboxes together may draw at most the dimmed power — by default 4.2 kW per controllable device the
operator counts (`grid_limit_kw_per_device` × `grid_limit_devices`, 0 = every managed wallbox).

The signal comes from one source (`grid_limit_source`): `api` (POST /api/grid-limit, persisted, so a
restart keeps it), or `device`: a Power Brain's S0 input (8113 bit 0/1, `grid_limit_input`) or a control
box's Modbus register (device type `control_box`, non-zero = dimmed). A source that cannot be read keeps
the last known state (logged once). Every activation is logged with its start and, when it ends, its
start, end and duration, under the event-log name GRID_LIMIT — the operator's proof.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from appliance.timefmt import iso_z

if TYPE_CHECKING:
    from appliance.runtime import Runtime

GRID_LIMIT = "grid_limit"     # its name in the event log and the state store


def _duration(s: float) -> str:
    h, rest = divmod(int(round(s)), 3600)
    return f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s"


def _stamp(t: float) -> str:
    return iso_z(datetime.fromtimestamp(t, timezone.utc), "seconds")


class GridLimit:
    def __init__(self, runtime: "Runtime", wall_clock: Callable[[], float] = time.time):
        self.rt = runtime
        self.wall_clock = wall_clock
        store = runtime.store
        self.api_on = bool(store.get_state(GRID_LIMIT, "api_signal", False))
        self.since: float | None = store.get_state(GRID_LIMIT, "active_since", None)
        self.unknown = False
        self.limit_w = 0.0

    @property
    def active(self) -> bool:
        return self.since is not None

    def set_api(self, on: bool) -> None:
        """The HTTP API's signal; stored before it is acknowledged."""
        self.api_on = bool(on)
        self.rt.store.put_state(GRID_LIMIT, "api_signal", self.api_on)

    def _signal(self, cfg: dict[str, Any]) -> bool | None:
        source = cfg["grid_limit_source"]
        if source == "api":
            return self.api_on
        if source != "device":
            return False
        dev = self.rt.devices.get(cfg["grid_limit_device"])
        read = getattr(dev, "grid_limit_signal", None)
        if read is None:
            return None
        try:
            return read(int(cfg["grid_limit_input"]))
        except Exception:
            return None

    def update(self, cfg: dict[str, Any], wallboxes: int) -> float:
        """Once per control cycle: read the signal, log a change; returns the power limit in W (0 = none)."""
        on = self._signal(cfg)
        if on is None:
            if not self.unknown:
                self.rt.events.warning(f"grid operator signal from {cfg['grid_limit_device'] or '?'} cannot be "
                                       f"read; keeping it {'on' if self.active else 'off'} until it can",
                                       GRID_LIMIT)
            self.unknown = True
            on = self.active
        elif self.unknown:
            self.unknown = False
            self.rt.events.info("grid operator signal readable again", GRID_LIMIT)
        devices = int(cfg["grid_limit_devices"]) or wallboxes
        limit_w = float(cfg["grid_limit_kw_per_device"]) * 1000 * max(devices, 1)
        now = self.wall_clock()
        if on and not self.active:
            self.since = now
            self.rt.store.put_state(GRID_LIMIT, "active_since", now)
            self.rt.events.warning(f"grid operator limit ON at {_stamp(now)}: all wallboxes together at most "
                                   f"{limit_w / 1000:g} kW ({devices} × {cfg['grid_limit_kw_per_device']:g} kW, "
                                   f"§14a EnWG; signal: {cfg['grid_limit_source']})", GRID_LIMIT)
        elif not on and self.since is not None:
            start, self.since = self.since, None
            self.rt.store.put_state(GRID_LIMIT, "active_since", None)
            self.rt.events.info(f"grid operator limit OFF at {_stamp(now)}; it was on from {_stamp(start)}, "
                                f"{_duration(now - start)}", GRID_LIMIT)
        self.limit_w = limit_w if self.active else 0.0
        return self.limit_w

    def status(self) -> dict[str, Any]:
        return {"active": self.active, "since": _stamp(self.since) if self.since is not None else None,
                "limit_kw": round(self.limit_w / 1000, 2) if self.active else None, "signal_unknown": self.unknown}
