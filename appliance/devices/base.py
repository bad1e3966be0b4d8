"""The one interface load management, the web page and the gateway see.

A device never knows about load management, and load management never knows whether a box speaks
OCPP or Modbus. All methods are called from greenlets; `apply` may block (cooperatively) until the
box confirmed the command or the attempt failed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from appliance.lm.model import Evse, Phases3

if TYPE_CHECKING:
    from appliance.runtime import Runtime

# device states shown on the page and in /api/status
OFFLINE, AVAILABLE, CONNECTED, CHARGING, PAUSED, ERROR = (
    "offline", "available", "car_connected", "charging", "paused", "error")


def left_at(mode: str, held: float | None, min_current: float) -> float:
    """The limit a box is left at by `stop` or `min_current` (on_deactivate). Never above what it holds
    now: a paused box raised to its min current would draw current nobody budgeted."""
    if mode == "stop" or held is None or held < min_current:
        return 0.0
    return min_current


@dataclass
class Reading:
    """What a device measured last (box phases; None where it has no meter)."""

    currents: Phases3 | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    voltage: float | None = None


@dataclass
class DeviceStatus:
    name: str
    type: str
    online: bool = False
    state: str = OFFLINE
    limit_a: float | None = None
    currents_a: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    power_w: float | None = None
    energy_wh: float | None = None       # energy of the running session
    transaction: int | None = None
    id_tag: str | None = None
    reason: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Charger(Protocol):
    """What load management needs of a wallbox (OCPP connector or Power Brain box alike)."""

    name: str
    settings: dict[str, Any]

    def lm_input(self) -> Evse: ...

    def apply(self, current: float, phases: int) -> bool: ...

    def deactivate(self, mode: str) -> None: ...

    def reactivate(self) -> None: ...


@runtime_checkable
class HouseMeter(Protocol):
    """A meter whose reading is house load (per building phase, signed by role); None = unknown.
    `includes_wallboxes`: it sits at the grid connection and sees the wallboxes' draw too."""

    name: str
    includes_wallboxes: bool

    def house_load(self) -> Phases3 | None: ...


class Device:
    """Base class; `settings` is the device's validated config section (a dict)."""

    kind = "device"
    is_evse = True              # a Charger; False: a meter (a HouseMeter when it offers house_load)
    includes_wallboxes = False

    def __init__(self, name: str, settings: dict[str, Any], runtime: "Runtime"):
        self.name = name
        self.settings = settings
        self.runtime = runtime

    # -- for load management --------------------------------------------------------------------
    def lm_input(self) -> Evse:
        raise NotImplementedError

    def apply(self, current: float, phases: int) -> bool:
        """Command `current` A per phase (0 = pause). True when the box confirmed it."""
        raise NotImplementedError

    def deactivate(self, mode: str) -> None:
        """Leave the box as `on_deactivate` says: stop | min_current | clear_limits."""
        raise NotImplementedError

    def reactivate(self) -> None:
        """Back under load management (monitor mode ended or set active again); default nothing."""

    # -- for the page, the API and the gateway ------------------------------------------------------
    def status(self) -> DeviceStatus:
        raise NotImplementedError

    def start(self) -> None:
        """Start background work (polling greenlets); default none."""

    def stop(self) -> None:
        """Stop background work; must not change what the box was last told."""
