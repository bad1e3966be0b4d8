"""Power Brain EVSE and S0 units: what each register means, on top of the bus scheduler.

Per control cycle the driver reads two blocks (8058..8069 measurements, 8087..8121 relay, state, limit,
enable, signalled current, RFID, restart counter) and writes limit + enable in one request (8093..8094).
Flash registers (8080..8085) are read once per (re)connection and written only when a setting differs.
Every value read is range-checked; an out-of-range value raises `OutOfRange` and is never used.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.modbus import registers as R
from appliance.modbus.bus import ILLEGAL_DATA_ADDRESS, Bus, BusError

STATE_SPAN = (R.RELAY_SELECT.address, R.RESTART_COUNTER.address + R.RESTART_COUNTER.size - R.RELAY_SELECT.address)
S0_SPAN = (R.ENERGY.address, R.POWER.address + R.POWER.size - R.ENERGY.address)


@dataclass(frozen=True)
class Snapshot:
    """One cycle's reading of an EVSE unit (box phases, A / W / Wh)."""

    cp_state: int
    limit_a: float
    enabled: bool
    signalled_a: float
    currents: tuple[float, float, float]
    power_w: float
    energy_wh: float
    rfid: str
    restarts: int
    one_phase: bool
    status_bits: int = 0          # 8113: S0 input states, capabilities

    @property
    def plugged(self) -> bool:
        return self.cp_state in (R.CP_B, R.CP_C, R.CP_D)

    @property
    def charging(self) -> bool:
        return self.cp_state in (R.CP_C, R.CP_D)

    @property
    def fault(self) -> bool:
        return self.cp_state in (R.CP_E, R.CP_F, R.CP_DC_LEAK)

    @property
    def effective_a(self) -> float:
        """What the box lets a car draw right now, per phase. A limit register outside 6-63 A (0
        after a fail-safe with current 0, or never written) is taken at the nearest end of the range."""
        if not self.enabled:
            return 0.0
        return min(max(self.limit_a, R.LIMIT.lo or 6.0), R.LIMIT.hi or 63.0)


def failsafe_amps(raw: int) -> float:
    """What a fail-safe current register value means in A: 0 = stop, below 6 A = min current."""
    return 0.0 if raw == 0 else max(raw / 10, R.MIN_CURRENT_A)


def failsafe_raw(amps: float) -> int:
    """The setting (0 = stop, 1 = min current, else A) as register 8085 holds it."""
    return 0 if amps <= 0 else int(round(amps * 10))


class PowerBrainUnit:
    """An EVSE unit on a bus. Methods block the calling greenlet; errors are BusError / OutOfRange."""

    def __init__(self, bus: Bus, unit: int):
        self.bus = bus
        self.unit = unit
        self.documented_only = False   # the box refused a read spanning registers the map does not define

    def _read(self, start: int, count: int) -> list[int]:
        """One request for the span; a box answering "illegal data address" (exception 2) for the
        undefined registers inside it gets only documented runs from then on (gaps read as 0)."""
        if not self.documented_only:
            try:
                return self.bus.read_holding(self.unit, start, count)
            except BusError as e:
                if e.code != ILLEGAL_DATA_ADDRESS or R.documented(start, count) == [(start, count)]:
                    raise
                self.documented_only = True
        words = [0] * count
        for first, n in R.documented(start, count):
            words[first - start:first - start + n] = self.bus.read_holding(self.unit, first, n)
        return words

    def identify(self) -> dict[str, str | int]:
        words = self._read(R.VENDOR_ID.address, R.NAME.address + R.NAME.size - R.VENDOR_ID.address)
        get = lambda reg: words[reg.address - R.VENDOR_ID.address:reg.address - R.VENDOR_ID.address + reg.size]  # noqa: E731
        return {"vendor_id": R.to_int(get(R.VENDOR_ID)), "device_type": R.to_int(get(R.DEVICE_TYPE)),
                "firmware": R.to_int(get(R.FIRMWARE)), "serial": R.to_ascii(get(R.SERIAL)),
                "name": R.to_ascii(get(R.NAME))}

    def read(self) -> Snapshot:
        m = self.bus.read_holding(self.unit, *R.MEASURE_BLOCK)
        s = self._read(*STATE_SPAN)
        m0, s0 = R.MEASURE_BLOCK[0], STATE_SPAN[0]
        cp = int(R.value(R.CP_STATE, s, s0))
        if cp not in R.VALID_CP_STATES:
            raise R.OutOfRange(f"register {R.CP_STATE.address} = {cp}: no such CP state")
        rfid_off = R.RFID.address - s0
        return Snapshot(
            cp_state=cp,
            # command registers hold the box's state, which we overwrite: never a reason to distrust it
            limit_a=R.value(R.LIMIT, s, s0, checked=False),
            enabled=bool(R.value(R.ENABLE, s, s0, checked=False)),
            signalled_a=R.value(R.SIGNALLED_CURRENT, s, s0),
            currents=tuple(R.value(reg, m, m0) for reg in R.CURRENTS),  # type: ignore[arg-type]
            power_w=R.value(R.POWER, m, m0),
            energy_wh=R.value(R.ENERGY, m, m0),
            rfid=R.to_ascii(s[rfid_off:rfid_off + R.RFID.size]),
            restarts=int(R.value(R.RESTART_COUNTER, s, s0)),
            one_phase=bool(R.value(R.RELAY_SELECT, s, s0, checked=False)),
            status_bits=int(R.value(R.CAPABILITIES, s, s0)),
        )

    def command(self, limit_a: float, enable: bool) -> None:
        """Limit and enable in one write. Below the 6 A minimum the box is paused, never sent < 60."""
        limit_a = min(max(limit_a, R.LIMIT.lo or 6.0), R.LIMIT.hi or 63.0)
        self.bus.write(self.unit, R.LIMIT.address, R.raw(R.LIMIT, limit_a) + [1 if enable else 0])

    def select_phases(self, phases: int) -> None:
        """Relay select (8087): only while no current flows (the caller checks)."""
        self.bus.write(self.unit, R.RELAY_SELECT.address, [1 if phases == 1 else 0])

    def read_flash(self) -> dict[int, int]:
        """Raw flash register values, address -> value (multi-register values combined)."""
        start, count = R.FLASH_BLOCK
        words = self.bus.read_holding(self.unit, start, count)
        return {reg.address: R.to_int(words[reg.address - start:reg.address - start + reg.size])
                for reg in (R.DEFAULT_FIXED_CURRENT, R.DEFAULT_LIMIT, R.DEFAULT_ENABLE,
                            R.FAILSAFE_TIMEOUT, R.FAILSAFE_CURRENT)}

    def write_flash(self, reg: R.Reg, raw_value: int) -> None:
        assert reg.flash, "only flash settings go through here"
        self.bus.write(self.unit, reg.address, R.from_int(raw_value, reg.size))


class S0Unit:
    """A Power Brain S0 meter input: energy (Wh) and power (W)."""

    def __init__(self, bus: Bus, unit: int):
        self.bus = bus
        self.unit = unit

    def read(self) -> tuple[float, float]:
        words = self.bus.read_holding(self.unit, *S0_SPAN)
        return R.value(R.ENERGY, words, S0_SPAN[0]), R.value(R.POWER, words, S0_SPAN[0])
