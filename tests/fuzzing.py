"""A fuzzer for the OCPP endpoint of a running appliance, shared by tests/test_fuzz.py (a short,
deterministic run) and bench/fuzz.py (`make fuzz`, 100,000 frames and more).

Hypothesis strategies build valid CALLs of every 1.6 action from the OCA schemas the appliance
validates against, then break them: byte-level mutations, wrong types, invalid UTF-8, fragments,
binary frames and ping floods. A `Fuzzer` sends what they draw over one websocket and re-syncs
every few frames with a Heartbeat: a frame that gets no answer within the deadline, or a process
that exits, is what we count as a failure.
"""
from __future__ import annotations

import importlib.resources
import json
import random
import socket
import string
import time
from dataclasses import dataclass, field
from typing import Any

import websocket
from hypothesis import strategies as st

from appliance.ocpp import schemas

TEXT, BINARY, CONT, PING = (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY,
                            websocket.ABNF.OPCODE_CONT, websocket.ABNF.OPCODE_PING)
SYNC_EVERY = 25


# -- valid payloads from the schemas --------------------------------------------------------------
def _schema(name: str) -> dict[str, Any]:
    path = importlib.resources.files("ocpp") / "v16" / "schemas" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


_DATETIME = st.builds(lambda y, mo, d, h, mi, s: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z",
                      st.integers(2000, 2040), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23),
                      st.integers(0, 59), st.integers(0, 59))
_TEXT = st.text(string.ascii_letters + string.digits + "-_. äöü€", max_size=30)


def strategy_for(schema: dict[str, Any], root: dict[str, Any] | None = None) -> st.SearchStrategy:
    """A strategy for values valid under `schema` (the subset of JSON Schema the 1.6 files use)."""
    root = root or schema
    if "$ref" in schema:
        return strategy_for(root["definitions"][schema["$ref"].rsplit("/", 1)[-1]], root)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = {k: strategy_for(v, root) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries({k: v for k, v in props.items() if k in required},
                                     optional={k: v for k, v in props.items() if k not in required})
    if kind == "array":
        return st.lists(strategy_for(schema.get("items", {}), root), min_size=schema.get("minItems", 0), max_size=4)
    if kind == "string":
        if schema.get("format") == "date-time":
            return _DATETIME
        return _TEXT.map(lambda t: t[:schema.get("maxLength", 500)])
    if kind == "integer":
        return st.integers(0, 2**31 - 1)
    if kind == "number":
        return st.integers(0, 10000).map(lambda n: n / 10)
    if kind == "boolean":
        return st.booleans()
    return st.none()


def _call(action: str) -> st.SearchStrategy:
    return strategy_for(_schema(action)).map(lambda p: [2, "", action, p])


ACTIONS = sorted(schemas.known_actions())
VALID_CALLS = st.one_of([_call(a) for a in ACTIONS])


# -- what is sent ---------------------------------------------------------------------------------
@dataclass
class Send:
    """Frames for the wire: (opcode, payload bytes, fin) each."""
    kind: str
    frames: list[tuple[int, bytes, bool]]
    closes: bool = False          # the server is expected to close the connection after it


def _with_id(call: list, msg_id: int) -> list:
    return [call[0], f"f{msg_id}", *call[2:]]


def _text(kind: str, text: str | bytes, closes: bool = False) -> Send:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return Send(kind, [(TEXT, data, True)], closes)


_JUNK = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.text(max_size=20), st.none(),
                  st.booleans(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@st.composite
def wrong_types(draw: Any, call: list) -> Send:
    payload = dict(call[3])
    if payload:
        payload[draw(st.sampled_from(sorted(payload)))] = draw(_JUNK)
    else:
        payload[draw(st.text(max_size=10))] = draw(_JUNK)
    return _text("wrong type", json.dumps([2, call[1], call[2], payload]))


@st.composite
def mutated(draw: Any, call: list) -> Send:
    data = bytearray(json.dumps(call).encode())
    for _ in range(draw(st.integers(1, 6))):
        op, pos = draw(st.sampled_from("flip insert delete")), draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0x20, 0x7E))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([b"[", b"]", b"{", b"}", b",", b'"', b"\\", b"\\u", b"0", b"-1e999"]))
        elif data:
            del data[pos]
    return _text("mutated", bytes(data))


@st.composite
def shape_breakers(draw: Any, call: list) -> Send:
    forms = [
        [call[0]], [call[0], call[1]], [9, call[1], {}], [3, call[1], {}], [4, call[1], "X", "", {}],
        [2, call[1], call[2], call[3], "extra"], [2, 17, call[2], call[3]], [2, call[1], 5, {}],
        {"not": "an array"}, [], [2, call[1] * 50, call[2], call[3]],
    ]
    deep = draw(st.integers(500, 5000))
    return draw(st.sampled_from([
        _text("shape", json.dumps(draw(st.sampled_from(forms)))),
        _text("deep", f'[2,"{call[1]}","DataTransfer",{{"vendorId":"x","data":' + "[" * deep + "]" * deep + "}]"),
        _text("surrogate", f'[2,"{call[1]}","BootNotification",{{"chargePointVendor":"\\ud800","chargePointModel":"M"}}]'),
        _text("unknown action", json.dumps([2, call[1], draw(st.text(max_size=40)), call[3]])),
    ]))


@st.composite
def fragmented(draw: Any, call: list) -> Send:
    data = json.dumps(call).encode()
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=4, unique=True)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    frames = [(TEXT if i == 0 else CONT, p, i == len(pieces) - 1) for i, p in enumerate(pieces)]
    if draw(st.booleans()) and len(frames) > 1:
        frames.insert(1, (PING, b"between", True))     # control frames may come between fragments
    return Send("fragments", frames)


def _breaks_connection(draw: Any, call: list) -> Send:
    data = json.dumps(call).encode()
    return draw(st.sampled_from([
        Send("invalid utf-8", [(TEXT, data[:5] + b"\xff\xfe\xc3" + data[5:], True)], closes=True),
        Send("binary", [(BINARY, data, True)], closes=True),
        Send("bad continuation", [(CONT, data, True)], closes=True),
    ]))


_SPREAD = list(range(100))
random.Random(16).shuffle(_SPREAD)


@st.composite
def sends(draw: Any) -> Send:
    call = _with_id(draw(VALID_CALLS), draw(st.integers(0, 999999)))
    choice = _SPREAD[draw(st.integers(0, 99))]   # hypothesis favours small numbers: spread them
    if choice < 25:
        return _text("valid", json.dumps(call))
    if choice < 45:
        return draw(wrong_types(call))
    if choice < 70:
        return draw(mutated(call))
    if choice < 85:
        return draw(shape_breakers(call))
    if choice < 93:
        return draw(fragmented(call))
    if choice < 96:
        return Send("ping flood", [(PING, b"p" * draw(st.integers(0, 125)), True)] * draw(st.integers(10, 300)))
    return _breaks_connection(draw, call)


# -- sending ----------------------------------------------------------------------------------------
@dataclass
class Fuzzer:
    """Sends what the strategies draw to `url_base + chargeBoxId`, counting what happened."""
    url_base: str
    timeout: float = 10.0
    frames: int = 0
    reconnects: int = 0
    hangs: list[str] = field(default_factory=list)   # frames after which the server answered nothing
    kinds: dict[str, int] = field(default_factory=dict)
    ws: websocket.WebSocket | None = None
    _since_sync: int = 0
    _syncs: int = 0

    def connect(self) -> None:
        self.ws = websocket.create_connection(f"{self.url_base}FUZZ{self.reconnects}", timeout=self.timeout,
                                              subprotocols=["ocpp1.6"], skip_utf8_validation=True)
        self.reconnects += 1

    def send(self, item: Send) -> None:
        if self.ws is None:
            self.connect()
        assert self.ws is not None
        self.kinds[item.kind] = self.kinds.get(item.kind, 0) + 1
        try:
            for opcode, data, fin in item.frames:
                self.ws.send_frame(websocket.ABNF.create_frame(data, opcode, fin=int(fin)))
                self.frames += 1
        except (OSError, websocket.WebSocketException):
            self._reset()
            return
        if item.closes:
            self._expect_close(item.kind)
            return
        self._since_sync += 1
        if self._since_sync >= SYNC_EVERY:
            self.sync(item.kind)

    def sync(self, after: str = "") -> None:
        """A Heartbeat, and read until its answer: the server handled everything before it."""
        if self.ws is None:
            return
        self._since_sync = 0
        self._syncs += 1
        msg_id = f"sync{self._syncs}"
        try:
            self.ws.send(json.dumps([2, msg_id, "Heartbeat", {}]))
            self.frames += 1
            while True:
                answer = self.ws.recv()
                if isinstance(answer, str) and f'"{msg_id}"' in answer:
                    return
        except (socket.timeout, websocket.WebSocketTimeoutException):
            self.hangs.append(after)
            self._reset()
        except (OSError, websocket.WebSocketException):
            self._reset()

    def _expect_close(self, kind: str) -> None:
        assert self.ws is not None
        try:
            while self.ws.recv():
                pass
        except (socket.timeout, websocket.WebSocketTimeoutException):
            self.hangs.append(kind + " (no close)")
        except (OSError, websocket.WebSocketException):
            pass
        self._reset()

    def _reset(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close(timeout=0.5)
            except (OSError, websocket.WebSocketException):
                pass
        self.ws = None

    def close(self) -> None:
        self.sync("the end")
        self._reset()


def heartbeat_latencies(url: str, seconds: float, gap: float = 0.05) -> list[float]:
    """A well-behaved station: Heartbeat round trips (s) for `seconds`, one every `gap`."""
    ws = websocket.create_connection(url, timeout=30, subprotocols=["ocpp1.6"])
    out = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        t0 = time.perf_counter()
        ws.send(json.dumps([2, f"h{n}", "Heartbeat", {}]))
        while f'"h{n}"' not in ws.recv():
            pass
        out.append(time.perf_counter() - t0)
        time.sleep(gap)
    ws.close()
    return out


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
