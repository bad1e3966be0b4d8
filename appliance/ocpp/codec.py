"""JSON for OCPP frames, in one place: the hot path parses each frame once.

Handlers get numbers as Decimal (exact 0.1 A steps) while the schema validator needs floats. Most
frames carry no JSON float at all (meter readings are strings in 1.6, ids and connectors are
integers), and for those the float parse *is* the Decimal parse: `loads` says whether it met a
float, and only then does the caller parse a second time with Decimals.

The standard library's C decoder is used on purpose; orjson was measured (docs/ocpp.md,
"Speed") and not taken.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

_floats_seen = False


def _note_float(text: str) -> float:
    global _floats_seen
    _floats_seen = True
    return float(text)


_decoder = json.JSONDecoder(parse_float=_note_float)
_decimal_decoder = json.JSONDecoder(parse_float=Decimal)


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return int(o) if o == o.to_integral_value() else float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


_encoder = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def loads(text: str) -> Any:
    """Parse with float numbers (what the schema validator can check)."""
    return _decoder.decode(text)


def loads_noting_floats(text: str) -> tuple[Any, bool]:
    """(value, whether any JSON number in it was a float). Parsing never yields to another
    greenlet, so the module-level flag cannot be mixed up between frames."""
    global _floats_seen
    _floats_seen = False
    value = _decoder.decode(text)
    return value, _floats_seen


def loads_decimal(text: str) -> Any:
    """Parse with Decimal for every float (exact), integers stay int."""
    return _decimal_decoder.decode(text)


def dumps(obj: Any) -> str:
    """Compact JSON; Decimals as int or float."""
    return _encoder.encode(obj)
