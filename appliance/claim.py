"""The one-time claim code: who may set the first web password.

Before a password is set, anyone on the LAN who opens the page first would own the box. Setting it
therefore needs a code that only someone with the box in hand can read: the appliance log at start
and the serial console (`ampgate console`) show it. It is kept in `<data dir>/claim_code` (mode
0600) so the console, a separate process, can show it and a restart does not change it; it is
deleted once used.
"""
from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path

from appliance.fsutil import atomic_write

log = logging.getLogger("ampgate")
FILE = "claim_code"
DIGITS = 8


def _plain(text: str) -> str:
    """What the user typed, without the spaces and dashes people add when copying a code."""
    return "".join(c for c in text if c.isdigit())


def shown(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def read(data_dir: str | Path) -> str | None:
    """The pending code as shown to people ("1234-5678"), or None when there is none."""
    try:
        code = _plain((Path(data_dir) / FILE).read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError):
        return None
    return shown(code) if len(code) == DIGITS else None


class ClaimCode:
    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / FILE

    def pending(self) -> str | None:
        return read(self.path.parent)

    def announce(self) -> str:
        """Log the pending code, made first if there is none (at start, or after a password reset)."""
        pending = read(self.path.parent)
        if pending is None:
            pending = shown("".join(secrets.choice("0123456789") for _ in range(DIGITS)))
            atomic_write(self.path, pending.encode() + b"\n", mode=0o600)
        log.warning("the web page is not set up yet: open it and enter claim code %s with the new "
                    "password (also shown by `ampgate console`)", pending)
        return pending

    def matches(self, typed: str) -> bool:
        pending = read(self.path.parent)
        return pending is not None and hmac.compare_digest(_plain(typed).encode(), _plain(pending).encode())

    def spend(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
