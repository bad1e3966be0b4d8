"""gevent-websocket 0.10.1 made fit for OCPP (stack-pitfalls.md §2).

What the stock classes get wrong and this module fixes:
- every check (identity, password, client certificate, subprotocol) must happen before the 101;
- the subprotocol must be matched as an exact token and echoed;
- close codes are dropped on send and never recorded on receipt;
- no frame size limit, no timeouts;
- sends from two greenlets can interleave on the wire (pongs and closes come from the reader).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import socket
import struct
import time
import urllib.parse
from typing import Any, Callable

import gevent.lock
from geventwebsocket.exceptions import FrameTooLargeException, ProtocolError, WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, Stream, WebSocket

from appliance.ocpp.oversize import ShallowFrame

SUBPROTOCOL = "ocpp1.6"
ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455 section 1.3
VERSIONS = ("13", "8", "7")
READ_BUFFER = 1024   # bytes buffered per connection: OCPP frames are small, larger ones are read directly
_CHUNK = 1 << 16      # bytes read at a time from an oversized frame (a multiple of 4: the mask)
log = logging.getLogger("ampgate.ocpp")


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte client mask, as one big-integer operation (C speed, not a Python loop)."""
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class OversizedFrame(FrameTooLargeException):
    """A frame that would take the message over the limit; its payload is still unread."""

    def __init__(self, header: Header, message: str):
        super().__init__(message)
        self.header = header


class OcppWebSocket(WebSocket):
    """A websocket with a size limit, real close codes, and one lock around every frame sent.

    Slotted and without the stock UTF-8 validator object: thousands of idle stations each hold one."""

    oversize_limit = 64 << 20    # a StopTransaction over max_message is read shallow up to this size

    __slots__ = ("_send_lock", "_sock", "close_code", "close_reason", "last_rx", "_size", "max_message")

    def __init__(self, environ: dict, stream: Stream, handler: Any, max_message: int = 65536):
        self.environ = environ
        self.closed = False
        self.stream = stream
        self.raw_write = stream.write
        self.raw_read = stream.read
        self.utf8validator = None            # read_message checks UTF-8 in C instead
        self.handler = handler
        self._send_lock = gevent.lock.Semaphore()
        self._sock = handler.socket          # pywsgi drops handler.socket when the request ends
        self.close_code: int | None = None
        self.close_reason = ""
        self.last_rx = time.monotonic()
        self._size = 0
        self.max_message = max_message

    def send_frame(self, message: Any, opcode: int) -> None:
        with self._send_lock:
            super().send_frame(message, opcode)

    def read_message(self) -> Any:
        """The next text (str) or binary (bytes) message; None after a close frame.

        Replaces the stock method, whose pure-Python UTF-8 validator (run per frame and again per
        message) and byte-by-byte unmasking took most of the server's time under load: the C
        decoder checks UTF-8 at once (UnicodeDecodeError ends in close 1007)."""
        self._size = 0
        opcode = None
        parts: list[bytes] = []
        while True:
            try:
                header, payload = self.read_frame()
            except OversizedFrame as e:
                if (opcode or e.header.opcode) != self.OPCODE_TEXT:
                    raise
                return self._read_shallow(e.header, parts)
            code = header.opcode
            if code in (self.OPCODE_TEXT, self.OPCODE_BINARY):
                if opcode is not None:
                    raise ProtocolError(f"opcode {code} inside a fragmented message")
                opcode = code
            elif code == self.OPCODE_CONTINUATION:
                if opcode is None:
                    raise ProtocolError("continuation frame without a message")
            elif code == self.OPCODE_PING:
                self.handle_ping(header, payload)
                continue
            elif code == self.OPCODE_PONG:
                self.handle_pong(header, payload)
                continue
            elif code == self.OPCODE_CLOSE:
                self.handle_close(header, payload)
                return None
            else:
                raise ProtocolError(f"unexpected opcode {code}")
            parts.append(payload)
            if header.fin:
                break
        self.last_rx = time.monotonic()
        data = b"".join(parts)
        return data.decode("utf-8") if opcode == self.OPCODE_TEXT else data

    def read_frame(self) -> tuple[Header, bytes]:
        header = Header.decode_header(self.stream)
        self._size += header.length
        if header.length > self.max_message or self._size > self.max_message:
            raise OversizedFrame(header, f"message over {self.max_message} bytes")  # payload not read yet
        if header.flags:
            raise ProtocolError("reserved bits set")
        payload = self.raw_read(header.length) if header.length else b""
        if len(payload) != header.length:
            raise WebSocketError("connection closed inside a frame")
        self.last_rx = time.monotonic()
        return header, (unmask(payload, header.mask) if header.mask else payload)

    def _read_shallow(self, header: Header, parts: list[bytes]) -> str | None:
        """The rest of a text message over the limit, kept only down to the payload's own fields
        (oversize.py): a StopTransaction is still a Stop. Anything else still closes with 1009."""
        shallow = ShallowFrame(self.max_message)
        for part in parts:
            shallow.feed(part)
        while True:
            if self._size > self.oversize_limit:
                raise FrameTooLargeException(f"message over {self.oversize_limit} bytes")
            self._stream_payload(header, shallow.feed)
            if header.fin:
                break
            header = self._next_continuation()
            if header is None:
                return None
        text = shallow.text()
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        if not (isinstance(frame, list) and len(frame) == 4 and frame[0] == 2 and frame[2] == "StopTransaction"):
            raise FrameTooLargeException(f"message over {self.max_message} bytes")
        log.warning("%s: StopTransaction of %d bytes is over the %d-byte limit: kept without its transactionData",
                    self.environ.get("ocpp.charge_box_id"), shallow.received, self.max_message)
        return text

    def _next_continuation(self) -> Header | None:
        """The next frame of a fragmented message, answering control frames in between."""
        while True:
            header = Header.decode_header(self.stream)
            if header.flags or header.length > 125 and header.opcode != self.OPCODE_CONTINUATION:
                raise ProtocolError("bad frame inside a fragmented message")
            if header.opcode == self.OPCODE_CONTINUATION:
                self._size += header.length
                return header
            payload = self.raw_read(header.length) if header.length else b""
            payload = unmask(payload, header.mask) if header.mask else payload
            if header.opcode == self.OPCODE_PING:
                self.handle_ping(header, payload)
            elif header.opcode == self.OPCODE_PONG:
                self.handle_pong(header, payload)
            elif header.opcode == self.OPCODE_CLOSE:
                self.handle_close(header, payload)
                return None
            else:
                raise ProtocolError(f"opcode {header.opcode} inside a fragmented message")

    def _stream_payload(self, header: Header, sink: Callable[[bytes], None]) -> None:
        """Read a frame's payload in pieces (never all of it in memory), unmasked, into `sink`."""
        left = header.length
        while left:
            chunk = self.raw_read(min(left, _CHUNK))
            if not chunk:
                raise WebSocketError("connection closed inside a frame")
            left -= len(chunk)
            sink(unmask(chunk, header.mask) if header.mask else chunk)   # _CHUNK % 4 == 0: mask stays aligned
            self.last_rx = time.monotonic()

    def receive(self) -> Any:
        """The next message, or None once closed (close_code says why)."""
        if self.closed:
            return None
        try:
            return self.read_message()
        except FrameTooLargeException:   # a ProtocolError subclass: must come first
            self.close(1009, "message too big")
            self.drain()
        except UnicodeError:
            self.close(1007, "invalid UTF-8")
            self.drain()
        except ProtocolError:
            self.close(1002, "protocol error")
            self.drain()
        except (OSError, WebSocketError):
            self.closed = True
        return None

    def close(self, code: int = 1000, message: bytes | str = b"") -> None:
        """Send a close frame that carries `code` (the stock method drops it)."""
        if self.closed:
            return
        reason = message.encode() if isinstance(message, str) else bytes(message or b"")
        try:
            self.send_frame(struct.pack("!H", code) + reason[:123], self.OPCODE_CLOSE)
        except (OSError, WebSocketError):
            pass
        self.closed = True

    def abort(self) -> None:
        """Cut the TCP connection (wakes a reader blocked on a peer that no longer answers)."""
        self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def drain(self, seconds: float = 1.0, limit: int = 1 << 20) -> None:
        """Read and drop what the peer still sends, so closing does not reset the connection
        before our close frame reached it (unread data makes the kernel send RST)."""
        sock = self._sock
        try:
            sock.settimeout(seconds)
            while limit > 0:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                limit -= len(chunk)
        except OSError:
            pass

    def handle_close(self, header: Header, payload: bytes) -> None:
        self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        self.close_reason = bytes(payload[2:]).decode("utf-8", "replace")
        self.close(self._echo_code(self.close_code, len(payload)))

    @staticmethod
    def _echo_code(code: int, length: int) -> int:
        """The code we answer a close with: the peer's if it may be sent, else 1000 for an empty
        close and 1002 for a malformed one (never 1005/1006/1015, which are not for the wire)."""
        if length == 0:
            return 1000
        if length == 1:
            return 1002
        return code if code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code <= 4999 else 1002

    def handle_pong(self, header: Header, payload: bytes) -> None:
        self.last_rx = time.monotonic()

    def ping(self, data: bytes = b"") -> None:
        self.send_frame(data, self.OPCODE_PING)


def basic_credentials(environ: dict) -> tuple[str | None, bytes | None]:
    """(user, password bytes) from HTTP Basic. Parsed as bytes: the spec's own AuthorizationKey
    example is not UTF-8, so Werkzeug's parser returns nothing for it."""
    scheme, _, rest = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        raw = base64.b64decode(rest.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None, None
    return user.decode("utf-8", "replace"), password


def charge_box_id(target: str) -> str | None:
    """The last segment of the request target as sent (not WSGI's PATH_INFO, which is decoded
    as Latin-1 and has %2F turned into a separator), percent-decoded once as UTF-8; None when that
    is not UTF-8. Tolerates '//id' and a trailing slash."""
    path = target.split("?", 1)[0].encode("latin-1", "replace")   # the request line's own bytes
    segment = path.rstrip(b"/").rsplit(b"/", 1)[-1]
    try:
        return urllib.parse.unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        return None


class OcppHandler(WebSocketHandler):
    """pywsgi handler that decides about a station before answering 101.

    `gate(charge_box_id, environ)` is set by the server: it returns None to accept, or an HTTP status
    line such as "401 Unauthorized" to refuse before the upgrade.
    """

    gate: Callable[[str, dict], str | None] = staticmethod(lambda cpid, env: None)
    handshake_timeout = 10.0
    max_message = 65536
    handshake: Any = None    # the guard's Handshake (appliance/ocpp/guard.py), set by the server

    def __init__(self, sock: Any, address: Any, server: Any):
        super().__init__(sock, address, server, rfile=sock.makefile("rb", READ_BUFFER))

    def handle(self) -> None:
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.socket.settimeout(self.handshake_timeout)   # pywsgi has no timeouts of its own
        try:
            super().handle()
        except (socket.timeout, OSError):
            pass

    def _handle_client_error(self, ex: Exception) -> None:
        # pywsgi prints a traceback for a half-sent request; one quiet 400 is enough
        if isinstance(ex, (socket.timeout, OSError)):
            self.close_connection = True
            return None
        return super()._handle_client_error(ex)

    def get_environ(self) -> dict:
        env = super().get_environ()
        tls = hasattr(self.socket, "getpeercert")        # ws and wss may share one port
        env["wsgi.url_scheme"] = "https" if tls else "http"
        env["ocpp.tls"] = tls
        env["ocpp.peercert"] = self.socket.getpeercert() if tls else None
        return env

    def upgrade_connection(self) -> Any:
        if self.handshake is not None:
            self.handshake.done()    # the request is in: its deadline and slot are no longer needed
        env = self.environ
        offered = [t.strip() for t in env.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "").split(",")]
        env["ocpp.subprotocol"] = SUBPROTOCOL if SUBPROTOCOL in offered else None
        cpid = charge_box_id(self.path or "")
        env["ocpp.charge_box_id"] = cpid
        refusal = self.gate(cpid or "", env)
        if refusal:
            headers = [("Content-Type", "text/plain")]
            if refusal.startswith("401"):
                headers.append(("WWW-Authenticate", 'Basic realm="OCPP"'))
            self.start_response(refusal, headers)
            return [refusal.encode() + b"\n"]
        return self._accept(env)

    def _accept(self, env: dict) -> Any:
        """The 101 (RFC 6455 4.2.2), making our websocket class directly: the stock method builds
        its own first, which we would only throw away."""
        version = env.get("HTTP_SEC_WEBSOCKET_VERSION")
        if version not in VERSIONS:
            self.start_response("400 Bad Request", [("Sec-WebSocket-Version", ", ".join(VERSIONS))])
            return [f"unsupported websocket version {version}".encode()]
        key = env.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        try:
            key_ok = len(base64.b64decode(key)) == 16
        except (binascii.Error, ValueError):
            key_ok = False
        if not key_ok:
            self.start_response("400 Bad Request", [])
            return [b"missing or invalid Sec-WebSocket-Key"]
        self.websocket = OcppWebSocket(env, Stream(self), self, self.max_message)
        env["wsgi.websocket_version"] = version
        env["wsgi.websocket"] = self.websocket
        accept = base64.b64encode(hashlib.sha1((key + ACCEPT_GUID).encode("latin-1")).digest()).decode("ascii")
        self.start_response("101 Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                        ("Sec-WebSocket-Accept", accept)])
        self.socket.settimeout(None)   # liveness is now the idle sweep's job
        return None

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Any:
        if status.startswith("101") and self.environ.get("ocpp.subprotocol"):
            headers = list(headers) + [("Sec-WebSocket-Protocol", self.environ["ocpp.subprotocol"])]
        return super().start_response(status, headers, exc_info)
