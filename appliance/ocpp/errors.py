"""OCPP-J 1.6 error codes (exact 1.6 spellings, ocpp16.md §4) and the exceptions carrying them."""
from __future__ import annotations

from typing import Any

# Sent exactly as 1.6 spells them; the typo "Occurence" and "FormationViolation" are 1.6's own.
ERROR_CODES = frozenset({
    "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
    "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
    "TypeConstraintViolation", "GenericError",
})
MAX_DESCRIPTION = 200   # characters of an error description

# What other implementations send instead; accepted on receipt and mapped to the 1.6 name.
RECEIVED_ALIASES = {
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
    "FormatViolation": "FormationViolation",
}


class OcppError(Exception):
    """Raised by validation or handlers; becomes a CALLERROR with this code."""

    def __init__(self, code: str, description: str = "", details: dict[str, Any] | None = None):
        assert code in ERROR_CODES, code
        if len(description) > MAX_DESCRIPTION:   # it may quote the peer's input: logged and sent back
            description = description[:MAX_DESCRIPTION] + "…"
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


class CallFailed(Exception):
    """An outgoing CALL did not get a usable CALLRESULT."""


class CallError(CallFailed):
    """The peer answered our CALL with a CALLERROR."""

    def __init__(self, code: str, description: str, details: Any):
        super().__init__(f"{code}: {description}")
        self.code = RECEIVED_ALIASES.get(code, code)
        self.description = description
        self.details = details


class CallTimeout(CallFailed):
    """No answer within the call timeout (a late answer is dropped)."""


class ConnectionClosed(CallFailed):
    """The connection went away before the answer came."""
