"""Every Power Brain register number, size, scale and valid range, in one place
(powerbrain-modbus.md). The driver, the simulator and the tests all read this table.

All are holding registers; multi-register values are big-endian (high word first).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reg:
    address: int
    size: int = 1                 # registers
    scale: float = 1.0            # value in our unit = raw * scale
    signed: bool = False
    lo: float | None = None       # valid range in our unit (None = any)
    hi: float | None = None
    flash: bool = False           # stored in flash: write only when the setting changes
    cyclic: bool = False          # may be written every control cycle


# -- identification block (every unit) ------------------------------------------------------------
VENDOR_ID = Reg(8000, 2)
PRODUCT_ID = Reg(8002)
DEVICE_TYPE = Reg(8003)
FIRMWARE = Reg(8004, 2)
MAP_VERSION = Reg(8006)
SERIAL = Reg(8008, 8)             # ASCII, 2 chars per register
NAME = Reg(8016, 16)              # ASCII
SLAVE_ID = Reg(8040)
S0_PULSES_PER_KWH = Reg(8042)     # S0 meter units only

VENDOR_POWERBRAIN = 0x0000CF05
TYPE_EVSE = 0x0100

# -- EVSE unit --------------------------------------------------------------------------------------
METER_FLAGS = Reg(8057)
ENERGY = Reg(8058, 4, lo=0)                                      # Wh, u64
POWER = Reg(8062, 2, signed=True, lo=-100_000, hi=100_000)       # W, s32
CURRENT_L1 = Reg(8064, 2, 0.1, signed=True, lo=-100, hi=100)     # A
CURRENT_L2 = Reg(8066, 2, 0.1, signed=True, lo=-100, hi=100)
CURRENT_L3 = Reg(8068, 2, 0.1, signed=True, lo=-100, hi=100)
DEFAULT_FIXED_CURRENT = Reg(8080, scale=0.1, flash=True)
DEFAULT_LIMIT = Reg(8081, scale=0.1, flash=True)
DEFAULT_ENABLE = Reg(8082, flash=True)
FAILSAFE_TIMEOUT = Reg(8083, 2, lo=0, hi=65535, flash=True)      # s, 0 = off
FAILSAFE_CURRENT = Reg(8085, scale=0.1, lo=0, hi=63, flash=True)  # raw 0 = stop, 10 (1 A) = min current
CP_DISCONNECT = Reg(8086, cyclic=True)                           # s
RELAY_SELECT = Reg(8087, lo=0, hi=1, cyclic=True)                # 0 = 3 phases, 1 = 1 phase
RELAY2 = Reg(8088, cyclic=True)
CABLE_CAPACITY = Reg(8090, scale=0.1, lo=0, hi=80)
FIXED_CURRENT = Reg(8091, scale=0.1, cyclic=True)
CP_STATE = Reg(8092, lo=0, hi=9)
LIMIT = Reg(8093, scale=0.1, lo=6, hi=63, cyclic=True)
ENABLE = Reg(8094, lo=0, hi=1, cyclic=True)
SIGNALLED_CURRENT = Reg(8095, scale=0.1, lo=0, hi=80)
RFID = Reg(8096, 15)                                             # hex ASCII, NUL padded
RFID_INPUTS = Reg(8111)
HAS_METER = Reg(8112)
CAPABILITIES = Reg(8113)
RESTART_COUNTER = Reg(8120, 2)

CURRENTS = (CURRENT_L1, CURRENT_L2, CURRENT_L3)

# CP states (8092)
CP_A, CP_B, CP_C, CP_D, CP_E, CP_F, CP_DC_LEAK = 0, 1, 2, 3, 4, 5, 9
VALID_CP_STATES = {CP_A, CP_B, CP_C, CP_D, CP_E, CP_F, CP_DC_LEAK}

# status/capability bits (8113)
S0_INPUT_1 = 1 << 0               # S0 input states (a grid operator's control box may drive one, §14a)
S0_INPUT_2 = 1 << 1
CAP_SWITCH_PHASES_PLUGGED = 1 << 8   # the relay (8087) may be switched while a car is plugged in

# Failsafe current register semantics: raw 0 = stop, raw 10 (1.0 A) = "min current" (6 A).
MIN_CURRENT_A = 6.0

# The blocks the driver reads each cycle, chosen so one request covers each: 8058..8069 (energy, power,
# currents), 8092..8110 (state, limit, enable, signalled current, RFID), 8120..8121 (restart counter).
MEASURE_BLOCK = (ENERGY.address, CURRENT_L3.address + 2 - ENERGY.address)
STATE_BLOCK = (CP_STATE.address, RFID.address + RFID.size - CP_STATE.address)
FLASH_BLOCK = (DEFAULT_FIXED_CURRENT.address, FAILSAFE_CURRENT.address + 1 - DEFAULT_FIXED_CURRENT.address)
# Registers a real box holds: the simulator serves exactly this range.
FIRST, LAST = VENDOR_ID.address, RESTART_COUNTER.address + RESTART_COUNTER.size - 1


# -- decoding helpers (pure) ------------------------------------------------------------------------
def to_int(words: list[int], signed: bool = False) -> int:
    value = 0
    for w in words:
        value = (value << 16) | (w & 0xFFFF)
    bits = 16 * len(words)
    if signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def from_int(value: int, size: int) -> list[int]:
    value &= (1 << (16 * size)) - 1
    return [(value >> (16 * (size - 1 - i))) & 0xFFFF for i in range(size)]


def to_ascii(words: list[int]) -> str:
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def from_ascii(text: str, size: int) -> list[int]:
    raw = text.encode("ascii")[: 2 * size].ljust(2 * size, b"\0")
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, 2 * size, 2)]


class OutOfRange(ValueError):
    """A register held a value outside its documented range: an error to log, never a number to use."""


def value(reg: Reg, block: list[int], block_start: int, checked: bool = True) -> float:
    """Decode `reg` from a block read at `block_start`, scaled and range-checked (`checked=False` for
    a command register: what it holds is the box's state, which we overwrite, not a measurement)."""
    off = reg.address - block_start
    v = to_int(block[off:off + reg.size], reg.signed) * reg.scale
    if checked and ((reg.lo is not None and v < reg.lo) or (reg.hi is not None and v > reg.hi)):
        raise OutOfRange(f"register {reg.address} = {v:g} out of range")
    return round(v, 1) if reg.scale != 1 else v


def documented(start: int, count: int) -> list[tuple[int, int]]:
    """The runs of registers the map defines within [start, start + count): a box may answer
    "illegal data address" for a read that touches one it does not define."""
    runs: list[tuple[int, int]] = []
    for a in range(start, start + count):
        if a not in DEFINED:
            continue
        if runs and runs[-1][0] + runs[-1][1] == a:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((a, 1))
    return runs


def raw(reg: Reg, amount: float) -> list[int]:
    """Encode `amount` (our unit) as the register words."""
    return from_int(int(round(amount / reg.scale)), reg.size)


# every register address the map defines (multi-register values included)
DEFINED = frozenset(a for reg in list(globals().values()) if isinstance(reg, Reg)
                    for a in range(reg.address, reg.address + reg.size))
