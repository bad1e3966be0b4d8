"""Editing JSON text without re-serialising it: a relayed payload keeps the station's own bytes
(escapes, number spellings, key order, unknown fields) except the members a gateway must map."""
from __future__ import annotations

import json

_DECODER = json.JSONDecoder()
_SPACE = " \t\r\n"


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return pos


def members(text: str) -> dict[str, tuple[int, int]]:
    """The top-level members of a JSON object as key -> (start, end) of the value's text."""
    pos = _skip(text, 0)
    if text[pos:pos + 1] != "{":
        raise ValueError("not a JSON object")
    out: dict[str, tuple[int, int]] = {}
    pos = _skip(text, pos + 1)
    if text[pos:pos + 1] == "}":
        return out
    while True:
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _skip(text, pos)
        if text[pos] != ":":
            raise ValueError("':' expected")
        start = _skip(text, pos + 1)
        _, end = _DECODER.raw_decode(text, start)
        out[key] = (start, end)
        pos = _skip(text, end)
        if text[pos] == "}":
            return out
        if text[pos] != ",":
            raise ValueError("',' expected")
        pos = _skip(text, pos + 1)


def replace(text: str, values: dict[str, object]) -> str:
    """`text` with the named top-level members' values replaced by `values` (JSON-encoded); members
    that are absent are left absent, everything else is unchanged byte for byte."""
    spans = members(text)
    edits = sorted(((spans[k], json.dumps(v, separators=(",", ":"))) for k, v in values.items() if k in spans),
                   reverse=True)
    for (start, end), new in edits:
        text = text[:start] + new + text[end:]
    return text


def value(text: str, key: str) -> object:
    """One top-level member's value, decoded (None when absent)."""
    span = members(text).get(key)
    return None if span is None else json.loads(text[span[0]:span[1]])
