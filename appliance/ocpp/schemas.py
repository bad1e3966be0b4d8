"""The OCA 1.6 JSON schemas, loaded from the installed `ocpp` package and compiled once.

We commit no copy of the schemas (OCA material, CC BY-ND): they are read from the pinned package.
Validation errors are mapped onto the exact 1.6 CALLERROR codes (ocpp16.md §4).
"""
from __future__ import annotations

import importlib.resources
import json
import re
from functools import lru_cache
from typing import Any, Callable

import fastjsonschema

from appliance.ocpp.errors import OcppError

# Stations send naive times, a space instead of T, or no seconds (ocpp16.md §5): accept any
# date-time that datetime.fromisoformat understands in spirit; the handlers parse it properly.
_LENIENT_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}:?\d{2})?$")



def _is_datetime(value: str) -> bool:
    return bool(_LENIENT_DATETIME.match(value))


# fastjsonschema rule -> 1.6 error code
_RULE_CODES = {
    "required": "OccurenceConstraintViolation",
    "minItems": "OccurenceConstraintViolation",
    "maxItems": "OccurenceConstraintViolation",
    "type": "TypeConstraintViolation",
    "maxLength": "TypeConstraintViolation",
    "minLength": "TypeConstraintViolation",
    "additionalProperties": "FormationViolation",
}


def _schema_dir():
    return importlib.resources.files("ocpp") / "v16" / "schemas"


@lru_cache(maxsize=None)
def _schema_names() -> frozenset[str]:
    return frozenset(e.name[:-5] for e in _schema_dir().iterdir() if e.name.endswith(".json"))


@lru_cache(maxsize=None)
def _validator(name: str) -> Callable[[Any], Any] | None:
    """Compiled on first use, once: start-up stays short and each schema costs ~2 ms once."""
    if name not in _schema_names():
        return None
    schema = json.loads((_schema_dir() / f"{name}.json").read_text(encoding="utf-8"))
    return fastjsonschema.compile(schema, formats={"date-time": _is_datetime})


@lru_cache(maxsize=None)
def known_actions() -> frozenset[str]:
    """Every 1.6 action (core + security whitepaper) that has a schema."""
    return frozenset(n for n in _schema_names() if not n.endswith("Response"))


def validate(action: str, payload: Any, response: bool = False) -> None:
    """Raise OcppError with the 1.6 code if `payload` does not match the action's schema."""
    validator = _validator(action + ("Response" if response else ""))
    if validator is None:
        raise OcppError("NotImplemented", f"unknown action {action!r}")
    try:
        validator(payload)
    except fastjsonschema.JsonSchemaValueException as e:
        code = _RULE_CODES.get(e.rule, "PropertyConstraintViolation")
        field = ".".join(str(p) for p in e.path[1:]) or "payload"
        raise OcppError(code, f"{field}: {e.message.removeprefix('data.').removeprefix('data ')}",
                        {"field": field}) from None


def preload() -> int:
    """Compile every schema now (tests and benchmarks); returns the count."""
    return sum(_validator(n) is not None for n in _schema_names())
