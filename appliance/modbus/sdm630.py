"""Eastron SDM630 (Modbus V2) three-phase meter: the register numbers we use and their decoding.

Input registers (function 04), IEEE-754 float32, high word first. Chosen as the common grid meter
because it is the most widely deployed Modbus DIN-rail meter in home charging setups (MID-certified,
RS-485, supported by practically every charging manager), so an installer most likely has one.
"""
from __future__ import annotations

import struct

VOLTAGES = (0x0000, 0x0002, 0x0004)        # V, L1..L3 to neutral
CURRENTS = (0x0006, 0x0008, 0x000A)        # A, magnitude per phase
POWERS = (0x000C, 0x000E, 0x0010)          # W, signed per phase (+ = import from the grid)
TOTAL_POWER = 0x0034                       # W
IMPORT_KWH = 0x0048
EXPORT_KWH = 0x004A
# one read covers 0x0000..0x0011 (voltages, currents, powers); a second the import/export counters
BLOCK = (0x0000, 0x0012)
ENERGY_BLOCK = (IMPORT_KWH, 4)
LAST = 0x004B

MAX_PLAUSIBLE_A = 1000.0                   # above this a reading is an error, not a number to use


def f32(words: list[int], offset: int) -> float:
    return struct.unpack(">f", struct.pack(">HH", words[offset], words[offset + 1]))[0]


def words(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def signed_currents(block: list[int]) -> tuple[float, float, float]:
    """Per-phase current with the sign of that phase's power (negative = feeding into the grid)."""
    out = []
    for i in range(3):
        amps = f32(block, CURRENTS[i] - BLOCK[0])
        watts = f32(block, POWERS[i] - BLOCK[0])
        if not abs(amps) <= MAX_PLAUSIBLE_A:         # also catches NaN
            raise ValueError(f"SDM630 current L{i + 1} = {amps} out of range")
        out.append(round(-abs(amps) if watts < 0 else abs(amps), 2))
    return out[0], out[1], out[2]
