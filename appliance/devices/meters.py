"""Modbus meters as Devices (`is_evse = False`): an Eastron SDM630 and the Power Brain S0 inputs.

For load management a meter offers `house_load()`: its reading per BUILDING phase (A, after factor and
phase rotation), signed by role — consumption +, generation −, grid as measured at the connection
point (wallbox draw included: `includes_wallboxes` tells the controller to subtract the measured
wallbox draw, charging-manager.md §2.4). `None` when the meter is offline or its role is display/ev:
the controller must then not assume zero.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from appliance.devices.base import AVAILABLE, OFFLINE, Device, DeviceStatus, Reading
from appliance.lm.model import Phases3
from appliance.modbus import sdm630
from appliance.modbus.bus import BusError, check_shareable
from appliance.modbus.health import Health, ModbusPolled, error_kind
from appliance.modbus.powerbrain import S0Unit

if TYPE_CHECKING:
    from appliance.runtime import Runtime

ROLE_SIGN = {"consumption": 1.0, "grid": 1.0, "generation": -1.0}
STALE_S = 10.0   # a reading older than this (or three poll intervals, if longer) is no longer current


def to_building(box: Phases3, rotation: int) -> Phases3:
    """Meter phase i is on building phase (i + rotation/120) mod 3."""
    k = (rotation // 120) % 3
    out = [0.0, 0.0, 0.0]
    for i, amps in enumerate(box):
        out[(i + k) % 3] += amps
    return out[0], out[1], out[2]


class ModbusReadOnly(ModbusPolled, Device):
    """A polled Modbus device we only read (a meter, a control box): its link, unit and health."""

    is_evse = False

    def __init__(self, name: str, settings: dict[str, Any], runtime: "Runtime"):
        super().__init__(name, settings, runtime)
        self.link = check_shareable(settings["port"])   # a bad port fails here, with one clear error
        self.unit_id = int(settings["unit"])
        self.health = Health(name, runtime.events)

    def start(self) -> None:
        self.open_bus()
        self.start_polling(self.poll)

    def stop(self) -> None:
        self.stop_polling()

    def poll(self) -> None:
        raise NotImplementedError

    def apply(self, current: float, phases: int) -> bool:
        raise TypeError(f"{self.name} is not an EVSE")

    def deactivate(self, mode: str) -> None:
        pass


class ModbusMeter(ModbusReadOnly):
    def __init__(self, name: str, settings: dict[str, Any], runtime: "Runtime"):
        super().__init__(name, settings, runtime)
        self.reading = Reading()
        self.read_at = -math.inf

    @property
    def role(self) -> str:
        return str(self.settings["role"])

    @property
    def includes_wallboxes(self) -> bool:
        return self.role == "grid"

    @property
    def counts_house_load(self) -> bool:
        """Load management counts this meter (a display or ev meter is shown only)."""
        return self.role in ROLE_SIGN

    @property
    def feeds_in(self) -> bool:
        """A generation meter: losing it means counting no generation (load management's worst case)."""
        return self.role == "generation"

    def poll(self) -> None:
        try:
            self.reading = self.measure()
        except (BusError, ValueError) as e:     # OutOfRange is a ValueError
            kind, msg = error_kind(e)
            self.health.failed(kind, msg, "house load unknown")
            return
        self.read_at = time.monotonic()
        self.health.ok()

    def measure(self) -> Reading:
        raise NotImplementedError

    def house_load(self) -> Phases3 | None:
        sign = ROLE_SIGN.get(self.role)
        if sign is None or not self.health.online or self.reading.currents is None:
            return None
        if time.monotonic() - self.read_at > max(STALE_S, 3 * self.poll_interval()):
            return None   # polling stuck: an old reading is not a measurement
        factor = float(self.settings["factor"])
        rotated = to_building(self.reading.currents, int(self.settings["phase_rotation"]))
        return tuple(round(sign * factor * a, 2) for a in rotated)  # type: ignore[return-value]

    def lm_input(self):  # meters are not charge points
        raise TypeError(f"{self.name} is a meter, not an EVSE")

    def status(self) -> DeviceStatus:
        r = self.reading
        factor = float(self.settings["factor"])
        return DeviceStatus(
            name=self.name, type=self.settings["type"], online=self.health.online,
            state=AVAILABLE if self.health.online else OFFLINE,
            currents_a=[round(a * factor, 2) for a in r.currents] if r.currents else [0.0, 0.0, 0.0],
            power_w=None if r.power_w is None else r.power_w * factor, energy_wh=r.energy_wh,
            error=self.health.error,
            extra={"role": self.role, "port": self.link.key, "unit": self.unit_id, "house_load_a": self.house_load()})


class Sdm630Meter(ModbusMeter):
    """Eastron SDM630: per-phase current (signed by power flow), power and import energy."""

    kind = "sdm630"

    def measure(self) -> Reading:
        assert self.bus is not None
        block = self.bus.read_input(self.unit_id, *sdm630.BLOCK)
        energy = self.bus.read_input(self.unit_id, *sdm630.ENERGY_BLOCK)
        currents = sdm630.signed_currents(block)
        power = sum(sdm630.f32(block, p - sdm630.BLOCK[0]) for p in sdm630.POWERS)
        volts = sdm630.f32(block, sdm630.VOLTAGES[0])
        return Reading(currents=currents, power_w=round(power, 1), voltage=round(volts, 1),
                       energy_wh=round(sdm630.f32(energy, 0) * 1000, 1))


class PowerBrainS0Meter(ModbusMeter):
    """A Power Brain S0 input: only power and energy, so the current is spread over its `phases`
    (default 3) as power / (voltage × phases)."""

    kind = "powerbrain_s0"

    def measure(self) -> Reading:
        assert self.bus is not None
        energy, power = S0Unit(self.bus, self.unit_id).read()
        phases = int(self.settings["phases"]) or 3
        volts = float(self.runtime.config.section("load_management")["voltage"])
        amps = round(power / (volts * phases), 2)
        currents = tuple(amps if i < phases else 0.0 for i in range(3))
        return Reading(currents=currents, power_w=power, energy_wh=energy)  # type: ignore[arg-type]



class ControlBox(ModbusReadOnly):
    """A grid operator's control box (§14a EnWG) read over Modbus: one holding register, non-zero while
    the operator limits the wallboxes. Not a meter: it carries only the signal (appliance/lm/grid_limit.py)."""

    kind = "control_box"

    def __init__(self, name: str, settings: dict[str, Any], runtime: "Runtime"):
        super().__init__(name, settings, runtime)
        self.value: int | None = None

    def poll(self) -> None:
        assert self.bus is not None
        try:
            (self.value,) = self.bus.read_holding(self.unit_id, int(self.settings["register"]), 1)
        except BusError as e:
            kind, msg = error_kind(e)
            self.health.failed(kind, msg, "grid operator signal unknown; the last state holds")
            return
        self.health.ok()

    def grid_limit_signal(self, _input: int = 1) -> bool | None:
        return None if not self.health.online or self.value is None else self.value != 0

    def status(self) -> DeviceStatus:
        return DeviceStatus(name=self.name, type=self.kind, online=self.health.online,
                            state=AVAILABLE if self.health.online else OFFLINE, error=self.health.error,
                            extra={"port": self.link.key, "unit": self.unit_id, "register": self.settings["register"],
                                   "grid_limit_signal": self.grid_limit_signal()})
