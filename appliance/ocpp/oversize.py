"""A StopTransaction too large to keep whole is still a Stop (issue 16 item 13).

A station that sends a day of signed meter samples in its StopTransaction can exceed any frame limit
we can afford per connection; refusing the frame (1009) makes it resend until it gives up, and the
transaction never closes. Instead the oversized message is read through `ShallowFrame`, which keeps
only the frame's own elements and the payload's own fields (nesting depth 2) and replaces every
deeper array or object with an empty one: the Stop arrives with its transactionId, meterStop and
timestamp, and without its transactionData. Memory stays bounded by what is kept, not by what is sent.
"""
from __future__ import annotations

import re

from geventwebsocket.exceptions import FrameTooLargeException

_OUTSIDE = re.compile(rb'["\[\]{}]')     # what changes the state outside strings
_INSIDE = re.compile(rb'["\\]')          # inside a string: its end, or an escape
KEEP_DEPTH = 2                           # [frame] = 1, {payload} = 2


class TooLarge(FrameTooLargeException):
    """Even the shallow part of the message is too large to keep."""


class ShallowFrame:
    """Fed the bytes of one JSON text in pieces; `text()` is that JSON with everything nested deeper
    than KEEP_DEPTH emptied. JSON's structural characters are ASCII, so bytes are scanned directly."""

    def __init__(self, keep_limit: int):
        self.keep_limit = keep_limit
        self.kept = bytearray()
        self.depth = 0
        self.in_string = False
        self.escaped = False     # a backslash ended the previous piece: its next byte is escaped
        self.received = 0

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        pos, end = 0, len(data)
        if self.escaped and end:
            self._keep(data[:1])
            self.escaped, pos = False, 1
        while pos < end:
            pos = self._in_string(data, pos) if self.in_string else self._outside(data, pos)
        if len(self.kept) > self.keep_limit:
            raise TooLarge(f"over {self.keep_limit} bytes even without its nested data")

    def _in_string(self, data: bytes, pos: int) -> int:
        m = _INSIDE.search(data, pos)
        if m is None:
            self._keep(data[pos:])
            return len(data)
        if data[m.start()] == 0x5C:          # backslash: the next byte belongs to the escape
            stop = min(m.start() + 2, len(data))
            self._keep(data[pos:stop])
            self.escaped = m.start() + 1 >= len(data)
            return stop
        self._keep(data[pos:m.end()])
        self.in_string = False
        return m.end()

    def _outside(self, data: bytes, pos: int) -> int:
        m = _OUTSIDE.search(data, pos)
        if m is None:
            self._keep(data[pos:])
            return len(data)
        self._keep(data[pos:m.start()])
        ch = data[m.start():m.end()]
        if ch == b'"':
            self._keep(ch)
            self.in_string = True
        elif ch in (b"[", b"{"):
            self._keep(ch)                   # kept when the container itself is shallow
            self.depth += 1
        else:
            self.depth -= 1
            self._keep(ch)
        return m.end()

    def _keep(self, piece: bytes) -> None:
        if self.depth <= KEEP_DEPTH and piece:
            self.kept += piece

    def text(self) -> str:
        """The shallow JSON text (raises UnicodeDecodeError when the kept part is not UTF-8)."""
        return self.kept.decode("utf-8")
