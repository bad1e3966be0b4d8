"""The Modbus tool for electricians: read or write any register of any unit on a configured link.

Requests go through the link's shared Bus (appliance/modbus/bus.py), the very queue load management's
commands use, so a look at a register waits its turn and never talks over control. 16- or 32-bit values
(32-bit: high word first, as the Power Brain and most meters send them), signed or unsigned, scaled
(value = raw × scale). Power Brain flash registers (8080–8085) wear out: writing them needs an
explicit confirmation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.i18n import _, fmt_number
from appliance.modbus import bus as bus_mod
from appliance.modbus import registers as R

FLASH = range(R.FLASH_BLOCK[0], R.FLASH_BLOCK[0] + R.FLASH_BLOCK[1])
KINDS = ("holding", "input")


class ToolError(Exception):
    """One line for the user."""


@dataclass(frozen=True)
class Request:
    port: str
    unit: int
    address: int
    words: int = 1            # 1 (16-bit) or 2 (32-bit)
    signed: bool = False
    scale: float = 1.0
    kind: str = "holding"     # holding | input (input registers are read-only)

    def check(self, ports: list[str]) -> None:
        if self.port not in ports:
            raise ToolError(_("%(port)r is not a configured Modbus link; configured: %(ports)s", port=self.port,
                              ports=", ".join(ports) or _("none")))
        if not 1 <= self.unit <= 247:
            raise ToolError(_("unit %(unit)s: use 1 to 247", unit=self.unit))
        if not 0 <= self.address <= 65535 - (self.words - 1):
            raise ToolError(_("register %(address)s: use 0 to 65535", address=self.address))
        if self.words not in (1, 2):
            raise ToolError(_("size: 16 or 32 bits"))
        if self.kind not in KINDS:
            raise ToolError(_("register type: holding or input"))
        if self.scale == 0:
            raise ToolError(_("scale: must not be 0"))


def decode(words: list[int], signed: bool, scale: float) -> float:
    raw = 0
    for w in words:
        raw = (raw << 16) | (w & 0xFFFF)
    bits = 16 * len(words)
    if signed and raw >= 1 << (bits - 1):
        raw -= 1 << bits
    value = raw * scale
    return int(value) if float(value).is_integer() else round(value, 6)


def encode(value: float, words: int, signed: bool, scale: float) -> list[int]:
    raw = round(value / scale)
    bits = 16 * words
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= raw <= hi:
        raise ToolError(_("%(value)s does not fit: raw value %(raw)d is outside %(lo)d…%(hi)d", value=fmt_number(value),
                          raw=raw, lo=lo, hi=hi))
    raw &= (1 << bits) - 1
    return [(raw >> (16 * (words - 1 - i))) & 0xFFFF for i in range(words)]


def configured_ports(devices: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({d["port"] for d in devices.values() if d.get("port")})


def _with_bus(req: Request, modbus: dict[str, Any], fn: Any) -> Any:
    """Run `fn(bus)` on the link's shared bus (created for the call when no device uses it now)."""
    try:
        bus = bus_mod.acquire(req.port, modbus["timeout"], modbus["retries"])
    except ValueError as e:
        raise ToolError(str(e)) from None
    try:
        bus.start()
        return fn(bus)
    except bus_mod.BusError as e:
        raise ToolError(_("unit %(unit)d register %(address)d: %(why)s", unit=req.unit, address=req.address,
                          why=str(e))) from None
    finally:
        bus_mod.release(bus)


def read(req: Request, modbus: dict[str, Any]) -> dict[str, Any]:
    def go(bus: bus_mod.Bus) -> list[int]:
        read_fn = bus.read_input if req.kind == "input" else bus.read_holding
        return read_fn(req.unit, req.address, req.words)
    words = _with_bus(req, modbus, go)
    return {"words": words, "value": decode(words, req.signed, req.scale), "hex": " ".join(f"{w:04X}" for w in words)}


def write(req: Request, modbus: dict[str, Any], value: float, confirm_flash: bool = False) -> dict[str, Any]:
    if req.kind != "holding":
        raise ToolError(_("input registers cannot be written"))
    if any(a in FLASH for a in range(req.address, req.address + req.words)) and not confirm_flash:
        raise ToolError(_("register %(address)d is stored in the box's flash memory, which wears out with every "
                          "write: confirm to write it", address=req.address))
    words = encode(value, req.words, req.signed, req.scale)
    _with_bus(req, modbus, lambda bus: bus.write(req.unit, req.address, words))
    return {"words": words, "value": decode(words, req.signed, req.scale), "hex": " ".join(f"{w:04X}" for w in words)}


def from_fields(fields: dict[str, Any]) -> tuple[Request, float | None, bool]:
    """A request from the page's form, the API's JSON or the console's words (numbers may be typed
    with a decimal comma); returns (request, value to write or None, flash confirmed)."""
    from appliance.i18n import NumberError, parse_number

    def number(key: str, default: Any, integer: bool = False) -> Any:
        raw = fields.get(key)
        if raw in (None, ""):
            return default
        if isinstance(raw, bool):
            raise ToolError(_("%(key)s: a number is needed", key=key))
        try:
            return parse_number(str(raw), integer=integer)
        except NumberError as e:
            raise ToolError(f"{key}: {e}") from None

    def flag(key: str) -> bool:
        return fields.get(key) in (True, "true", "on", "1", 1, "yes")

    bits = number("bits", 16, integer=True)
    if bits not in (16, 32):
        raise ToolError(_("size: 16 or 32 bits"))
    req = Request(port=str(fields.get("port") or ""), unit=number("unit", 1, integer=True),
                  address=number("address", None, integer=True) if fields.get("address") not in (None, "") else -1,
                  words=bits // 16, signed=flag("signed"), scale=number("scale", 1.0),
                  kind=str(fields.get("kind") or "holding"))
    value = number("value", None)
    return req, value, flag("confirm_flash")


def run(fields: dict[str, Any], devices: dict[str, dict[str, Any]], modbus: dict[str, Any]) -> dict[str, Any]:
    """Check, then read (no value) or write (a value) and read back."""
    req, value, confirmed = from_fields(fields)
    req.check(configured_ports(devices))
    if value is None:
        return {"done": "read", **read(req, modbus)}
    write(req, modbus, value, confirmed)
    return {"done": "write", **read(req, modbus)}
