"""OCPP-J RPC core, written once for both directions (central system and charge-point client).

It knows frames, message ids, validation and the one-outstanding-call rule; it knows nothing about
websockets (it is given a `send(text)` function and fed incoming text) and nothing about what the
actions mean (handlers do that).

- Incoming CALLs are handled in the receive loop, one at a time, in arrival order. A handler that
  wants to follow up with its own CALL uses `defer()`: the follow-up runs after our answer is sent
  (ocpp16.md §3: answer first, then call).
- Outgoing CALLs: one outstanding per endpoint; further callers queue behind it in order.
- Every payload is validated against the 1.6 schemas, incoming and outgoing. Numbers reach the
  handlers as Decimal (exact 0.1 A steps); validation runs on the float parse because fastjsonschema
  cannot check Decimals.
- `Message.raw` keeps each frame's text so a gateway can forward it byte for byte (`raw_elements`,
  `call_raw`, `RawPayload` answers).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import gevent
from gevent.event import AsyncResult
from gevent.lock import Semaphore

from appliance.ocpp import codec, schemas
from appliance.ocpp.actions import sent_by
from appliance.ocpp.errors import CallError, CallTimeout, ConnectionClosed, OcppError

log = logging.getLogger("ampgate.ocpp")

CALL, CALLRESULT, CALLERROR = 2, 3, 4
MAX_ID_LEN = 36
UNKNOWN_ID = "-1"          # the id we answer with when a frame is too broken to carry one
_ID_GUESS = re.compile(r'^\s*\[\s*\d+\s*,\s*"((?:[^"\\]|\\.){0,64})"')
_RECENT_ANSWERS = 16       # answered CALL ids kept to resend on a retransmission

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class RawPayload(str):
    """A payload as JSON text, sent exactly as it is (a relayed answer keeps the peer's bytes)."""


Answer = dict[str, Any] | RawPayload
Dispatch = Callable[["Message"], Answer]


@dataclass
class Message:
    kind: int
    id: str
    raw: str                       # the frame exactly as received
    action: str | None = None      # CALL only
    payload: Any = None            # CALL/CALLRESULT: as parsed (floats); decimal_payload() for handlers
    error_code: str | None = None  # CALLERROR only
    error_description: str = ""
    error_details: Any = None
    floats: bool = True            # the frame holds a JSON float: handlers need a Decimal parse


def encode_call(msg_id: str, action: str, payload: dict[str, Any]) -> str:
    return codec.dumps([CALL, msg_id, action, payload])


def encode_result(msg_id: str, payload: Answer) -> str:
    if isinstance(payload, RawPayload):
        return f"[{CALLRESULT},{json.dumps(msg_id)},{payload}]"
    return codec.dumps([CALLRESULT, msg_id, payload])


def encode_raw_call(msg_id: str, action: str, payload: str) -> str:
    """A CALL whose payload is JSON text kept byte for byte (a relayed message)."""
    return f"[{CALL},{json.dumps(msg_id)},{json.dumps(action)},{payload}]"


def encode_error(msg_id: str, code: str, description: str = "", details: dict | None = None) -> str:
    return codec.dumps([CALLERROR, msg_id, code, description, details or {}])


def raw_elements(text: str) -> list[str]:
    """The exact text of each element of a frame, so payload bytes can be forwarded unchanged
    (ocpp16.md §10): only the message id is replaced by the forwarder."""
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    parts: list[str] = []
    while True:
        while text[pos] in " \t\r\n,":
            pos += 1
        if text[pos] == "]":
            return parts
        _, end = dec.raw_decode(text, pos)
        parts.append(text[pos:end])
        pos = end


def _check(action: str, payload: Any, response: bool = False) -> None:
    """Validate a payload we built. fastjsonschema cannot check Decimals, so a payload holding
    any is checked in its JSON form instead."""
    try:
        schemas.validate(action, payload, response=response)
    except Exception:  # a Decimal fails "number" or crashes multipleOf: check the JSON form
        schemas.validate(action, codec.loads(codec.dumps(payload)), response=response)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _loads(text: str) -> tuple[Any, bool]:
    """The parsed frame and whether it held a JSON float (codec.loads_noting_floats), with lone
    UTF-16 surrogates (legal JSON escapes, but not text: they cannot be written to the database
    or a page) replaced by U+FFFD."""
    value, floats = codec.loads_noting_floats(text)
    return (_scrub(value) if _SURROGATE_ESCAPE.search(text) else value), floats


def _loads_decimal(text: str) -> Any:
    value = codec.loads_decimal(text)
    return _scrub(value) if _SURROGATE_ESCAPE.search(text) else value


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


def parse(text: str) -> Message:
    """Parse and shape-check one frame. Raises OcppError (with `.msg_id` set when known)."""
    try:
        frame, floats = _loads(text)
    except ValueError:
        raise _with_id(OcppError("FormationViolation", "not valid JSON"), text) from None
    except RecursionError:
        raise _with_id(OcppError("FormationViolation", "nested too deeply"), text) from None
    if not isinstance(frame, list) or not frame:
        raise _with_id(OcppError("FormationViolation", "a frame must be a JSON array"), text)
    kind = frame[0]
    if kind not in (CALL, CALLRESULT, CALLERROR) or isinstance(kind, bool):
        return Message(kind=-1, id="", raw=text)         # the spec says: ignore
    expected = {CALL: 4, CALLRESULT: 3, CALLERROR: 5}[kind]
    msg_id = frame[1] if len(frame) > 1 else None
    if not isinstance(msg_id, str):
        raise _with_id(OcppError("ProtocolError", "message id must be a string"), text, answer=kind == CALL)
    if len(msg_id) > MAX_ID_LEN:
        log.warning("message id longer than %d characters: %.40r", MAX_ID_LEN, msg_id)
    if len(frame) != expected:
        raise _with_id(OcppError("FormationViolation", f"message type {kind} needs {expected} elements, "
                                 f"got {len(frame)}"), text, msg_id, answer=kind == CALL)
    if kind == CALL:
        action, payload = frame[2], frame[3]
        if not isinstance(action, str):
            raise _with_id(OcppError("ProtocolError", "action must be a string"), text, msg_id)
        if not isinstance(payload, dict):
            raise _with_id(OcppError("ProtocolError", "payload must be an object"), text, msg_id)
        return Message(CALL, msg_id, text, action=action, payload=payload, floats=floats)
    if kind == CALLRESULT:
        return Message(CALLRESULT, msg_id, text, payload=frame[2], floats=floats)
    return Message(CALLERROR, msg_id, text, error_code=str(frame[2]), error_description=str(frame[3]),
                   error_details=frame[4])


def _with_id(err: OcppError, text: str, msg_id: str | None = None, answer: bool = True) -> OcppError:
    """Attach the id to answer with; `answer` is False for a broken CALLRESULT/CALLERROR, which
    gets no answer of its own (a CALLERROR only ever answers a CALL)."""
    if msg_id is None:
        m = _ID_GUESS.match(text)
        msg_id = m.group(1) if m and len(m.group(1)) <= MAX_ID_LEN else UNKNOWN_ID
    err.msg_id = msg_id  # type: ignore[attr-defined]
    err.answer = answer  # type: ignore[attr-defined]
    return err


def _fingerprint(msg: Message) -> str:
    """What a CALL asked, without its id: a reused id with another action or payload is a new
    request, not a retransmission. Taken from the raw text (cheap, and no recursion for deep input)."""
    return hashlib.sha256(msg.raw.replace(json.dumps(msg.id), "", 1).encode("utf-8", "surrogatepass")).hexdigest()


def decimal_payload(msg: Message) -> dict[str, Any]:
    """The payload with numbers as Decimal (exact), for handlers. A frame without any float
    parsed the same either way: its payload is used as it is, not parsed again."""
    if not msg.floats:
        return msg.payload
    frame = _loads_decimal(msg.raw)
    return frame[3] if msg.kind == CALL else frame[2]


def _gone(text: str) -> None:
    raise OSError("connection closed")


class RpcEndpoint:
    """One side of one OCPP-J connection.

    role: "cs" (we are the central system) or "cp" (we are a charge point).
    handlers: action -> fn(payload) -> response payload; raise OcppError for a CALLERROR.
    dispatch: instead of `handlers`, one callable that gets each validated CALL as a Message and returns
    its answer (a dict, or RawPayload text to send unchanged); it may wait (for a backend, say): the
    next CALL is read only after this one is answered, which is OCPP's one-call-at-a-time order.
    send: writes one text frame; may raise OSError when the peer is gone.
    """

    def __init__(self, role: str, send: Callable[[str], None], handlers: dict[str, Handler],
                 name: str = "", call_timeout: float = 30.0, lenient: frozenset[str] = frozenset(),
                 dispatch: Dispatch | None = None):
        self.role = role
        self.peer_may_send = sent_by("cp" if role == "cs" else "cs")
        self._send = send
        self.handlers = handlers
        self.name = name
        self.call_timeout = call_timeout
        self.lenient = lenient          # actions answered even when their payload is off-schema
        self._call_lock = Semaphore()   # one outstanding CALL; waiters queue in order
        self._pending: tuple[str, AsyncResult] | None = None
        self._answered: OrderedDict[str, tuple[str, str]] = OrderedDict()   # id -> (what was asked, answer)
        self._deferred: list[Callable[[], None]] = []
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]
        self.closed = False
        self.dispatch = dispatch

    # -- incoming ---------------------------------------------------------------------------------
    def receive(self, text: str) -> None:
        """Feed one incoming text frame. Never raises for the peer's mistakes."""
        try:
            msg = parse(text)
        except OcppError as e:
            log.warning("%s: %s: %s (frame %.80r)", self.name, e.code, e.description, text)
            if e.answer:  # type: ignore[attr-defined]
                self._send_quietly(encode_error(e.msg_id, e.code, e.description, e.details))  # type: ignore[attr-defined]
            return
        if msg.kind == CALL:
            self._on_call(msg)
        elif msg.kind in (CALLRESULT, CALLERROR):
            self._on_answer(msg)
        else:
            log.warning("%s: ignored a frame of unknown message type: %.80r", self.name, text)

    def _on_call(self, msg: Message) -> None:
        asked = _fingerprint(msg)
        cached = self._answered.get(msg.id)
        if cached is not None and cached[0] == asked:
            log.info("%s: %.40s id %.40s repeated; resending the first answer", self.name, msg.action, msg.id)
            self._send_quietly(cached[1])
            return
        try:
            answer = encode_result(msg.id, self._handle(msg))
        except OcppError as e:
            log.warning("%s: %.40s %.40s -> %s: %s", self.name, msg.action, msg.id, e.code, e.description)
            answer = encode_error(msg.id, e.code, e.description, e.details)
        except Exception:
            log.exception("%s: handler for %.40s failed", self.name, msg.action)
            answer = encode_error(msg.id, "InternalError", f"{msg.action} could not be processed")
        self._remember(msg.id, asked, answer)
        self._send_quietly(answer)
        self._run_deferred()

    def _handle(self, msg: Message) -> Answer:
        action = msg.action or ""
        if action not in schemas.known_actions():
            raise OcppError("NotImplemented", f"{action} is not an OCPP 1.6 action")
        if action not in self.peer_may_send or (self.dispatch is None and action not in self.handlers):
            raise OcppError("NotSupported", f"{action} is not supported here")
        schema_error = None
        try:
            schemas.validate(action, msg.payload)
        except OcppError as e:
            if action not in self.lenient or e.code == "OccurenceConstraintViolation":
                raise
            schema_error = e
        try:
            response = self.dispatch(msg) if self.dispatch is not None else self.handlers[action](decimal_payload(msg))
        except Exception:
            if schema_error is None:
                raise
            # the tolerated deviation was not tolerable after all: the 1.6 code, not InternalError
            raise schema_error from None
        if schema_error is not None:
            log.warning("%s: %s off-schema, answered anyway: %s", self.name, action, schema_error.description)
        try:
            _check(action, json.loads(response) if isinstance(response, RawPayload) else response, response=True)
        except OcppError as e:   # our bug (or a relayed peer's): never send an invalid answer
            log.error("%s: our %s answer is invalid: %s", self.name, action, e.description)
            raise OcppError("InternalError", f"{action} could not be answered") from None
        return response

    def _remember(self, msg_id: str, asked: str, answer: str) -> None:
        self._answered.pop(msg_id, None)
        self._answered[msg_id] = (asked, answer)
        while len(self._answered) > _RECENT_ANSWERS:
            self._answered.popitem(last=False)

    def _on_answer(self, msg: Message) -> None:
        pending = self._pending
        if pending is None or pending[0] != msg.id:
            log.warning("%s: dropped an answer to no outstanding call (id %.40s, late or unknown)", self.name, msg.id)
            return
        pending[1].set(msg)

    # -- deferred follow-ups ------------------------------------------------------------------------
    def defer(self, fn: Callable[[], None]) -> None:
        """Run `fn` in its own greenlet once the answer to the current CALL has been sent."""
        self._deferred.append(fn)

    def _run_deferred(self) -> None:
        todo, self._deferred = self._deferred, []
        for fn in todo:
            gevent.spawn(self._guarded, fn)

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("%s: follow-up failed", self.name)

    # -- outgoing ---------------------------------------------------------------------------------
    def call(self, action: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a CALL and wait for its answer (Decimal numbers). Raises CallError, CallTimeout,
        ConnectionClosed, or OcppError if our own payload is invalid (nothing is sent then)."""
        _check(action, payload)
        answer = self._exchange(action, lambda msg_id: encode_call(msg_id, action, payload), timeout)
        return decimal_payload(answer)

    def call_raw(self, action: str, payload: str, timeout: float | None = None, msg_id: str | None = None,
                 validate: bool = True) -> RawPayload:
        """Send a CALL whose payload is JSON text, byte for byte, and return the answer's payload text
        as the peer wrote it. `msg_id` keeps one id across retransmissions; `validate=False` leaves
        judging a relayed payload to the receiver. Raises as `call` does."""
        if validate:
            _check(action, json.loads(payload))
        answer = self._exchange(action, lambda own_id: encode_raw_call(msg_id or own_id, action, payload),
                                timeout, msg_id)
        return RawPayload(raw_elements(answer.raw)[2])

    def _exchange(self, action: str, frame: Callable[[str], str], timeout: float | None,
                  msg_id: str | None = None) -> Message:
        with self._call_lock:
            if self.closed:
                raise ConnectionClosed(f"{self.name}: connection closed")
            msg_id = msg_id or f"{self._prefix}-{next(self._ids)}"
            result = AsyncResult()
            self._pending = (msg_id, result)
            try:
                self._send(frame(msg_id))
                answer: Message = result.get(timeout=timeout or self.call_timeout)
            except gevent.Timeout:
                raise CallTimeout(f"{self.name}: {action} got no answer in {timeout or self.call_timeout:g} s") from None
            except OSError as e:
                raise ConnectionClosed(f"{self.name}: {e}") from None
            finally:
                self._pending = None
        if answer.kind == -2:
            raise ConnectionClosed(f"{self.name}: connection closed during {action}")
        if answer.kind == CALLERROR:
            raise CallError(answer.error_code or "GenericError", answer.error_description, answer.error_details)
        if not isinstance(answer.payload, dict):
            raise CallError("FormationViolation", "answer payload is not an object", {})
        try:
            schemas.validate(action, answer.payload, response=True)
        except OcppError as e:
            raise CallError(e.code, f"invalid {action} answer: {e.description}", {}) from None
        return answer

    def close(self) -> None:
        """The connection is gone: fail the outstanding call at once instead of waiting it out."""
        self.closed = True
        pending = self._pending
        if pending is not None and not pending[1].ready():
            pending[1].set(Message(kind=-2, id=pending[0], raw=""))

    def release(self) -> None:
        """The connection has ended and nothing more will be received: let go of the handlers and
        the send function, which refer back to it. A connection that leaves no reference cycle
        behind is freed at once, not later by the garbage collector (which also may never look at
        it once gc.freeze() has moved it aside: see appliance/gcpause.py)."""
        self.close()
        self.handlers = {}
        self.dispatch = None
        self._send = _gone

    def _send_quietly(self, text: str) -> None:
        try:
            self._send(text)
        except OSError as e:
            log.info("%s: could not send (peer gone): %s", self.name, e)
