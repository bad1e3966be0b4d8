"""The Modbus bus scheduler: one greenlet and one request queue per physical link.

It knows links, units, register addresses and words, never what a register means. Several units on
one RTU bus (or one TCP endpoint) share one `Bus`, which runs their requests strictly one after the
other, as RS-485 requires. A request waits at most `timeout × (retries + 1)` on the wire; a unit that
does not answer delays only the devices on its own bus, never the rest of the process.

Failures are raised as `BusError` with a `kind` the caller can log once per state change:
no_answer, crc_error, truncated, exception (a Modbus exception reply), connect (link down).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import gevent
import gevent.event
import gevent.queue

log = logging.getLogger("ampgate.modbus")

TCP_PREFIX = "tcp://"
RECONNECT_BACKOFF_MAX_S = 10.0


# -- links ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """A parsed `port` setting: tcp://HOST:PORT, or DEVICE[,BAUD,BITS,PARITY,STOP]."""

    kind: str                      # "tcp" | "rtu"
    address: str                   # host or serial device
    port: int = 0
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @property
    def key(self) -> str:
        """Units behind the same key share a bus (a serial device cannot be opened twice)."""
        return f"tcp://{self.address}:{self.port}" if self.kind == "tcp" else self.address


def parse_port(spec: str) -> Link:
    """`tcp://192.168.1.5:4701`, `/dev/ttyUSB0`, `/dev/ttyUSB0,9600,8,n,1` (vendor form `COM1,9600,8,n,1`)."""
    spec = spec.strip()
    if not spec:
        raise ValueError("no Modbus port configured")
    if spec.lower().startswith(TCP_PREFIX):
        host, sep, port = spec[len(TCP_PREFIX):].rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad Modbus TCP address {spec!r}: expected tcp://HOST:PORT")
        return Link("tcp", host.strip("[]"), int(port))
    device, *params = [p.strip() for p in spec.split(",")]
    if len(params) not in (0, 1, 4):
        raise ValueError(f"bad serial port {spec!r}: expected DEVICE or DEVICE,BAUD,8,n,1")
    try:
        baud = int(params[0]) if params else 9600
        bits = int(params[1]) if len(params) > 1 else 8
        parity = params[2].upper() if len(params) > 2 else "N"
        stop = int(params[3]) if len(params) > 3 else 1
    except ValueError:
        raise ValueError(f"bad serial parameters in {spec!r}") from None
    if baud <= 0 or bits not in (7, 8) or parity not in ("N", "E", "O") or stop not in (1, 2):
        raise ValueError(f"bad serial parameters in {spec!r}: baud, 7|8, n|e|o, 1|2")
    return Link("rtu", device, 0, baud, bits, parity, stop)


# -- errors ---------------------------------------------------------------------------------------
class BusError(Exception):
    def __init__(self, kind: str, message: str, code: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.code = code   # the Modbus exception code of an "exception" answer


ILLEGAL_DATA_ADDRESS = 2


def rtu_crc(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def classify_garbage(received: bytes, expected_len: int, rtu: bool) -> tuple[str, str]:
    """Name what came back instead of a valid answer (for one clear log line)."""
    if not received:
        return "no_answer", "no answer"
    if rtu and len(received) >= expected_len:
        frame = received[:expected_len]
        if rtu_crc(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
            return "crc_error", f"CRC error in answer ({len(received)} bytes)"
    if len(received) < expected_len:
        return "truncated", f"truncated answer ({len(received)} of {expected_len} bytes)"
    return "bad_frame", f"unusable answer ({len(received)} bytes)"


# -- the scheduler --------------------------------------------------------------------------------
@dataclass
class _Request:
    op: str                        # "read_holding" | "read_input" | "write"
    unit: int
    address: int
    arg: Any                       # count for reads, list of words for writes
    result: gevent.event.AsyncResult

    def expected_len(self, rtu: bool) -> int:
        """Length of a normal answer frame (RTU with CRC, TCP with MBAP header)."""
        pdu = 2 + 2 * self.arg if self.op.startswith("read") else 5
        return (1 + pdu + 2) if rtu else (7 + pdu)


class Bus:
    """One link (serial port or TCP endpoint), shared by every unit on it."""

    def __init__(self, link: Link, timeout: float = 0.5, retries: int = 1, keep_connection: bool = True):
        """`keep_connection=False` closes a TCP link whenever the queue is empty (a serial port stays open)."""
        self.link = link
        self.timeout = timeout
        self.retries = retries
        self.keep_connection = keep_connection
        self.queue: gevent.queue.Queue = gevent.queue.Queue()
        self.client: Any = None
        self._received = b""
        self._next_connect = 0.0
        self._connect_failures = 0
        self._greenlet: gevent.Greenlet | None = None
        self.stopped = False   # for good: a replacement Bus (a new acquire) owns the link now
        self.users = 0
        self.stats = {"requests": 0, "errors": 0, "reconnects": 0}

    # -- public, called from device greenlets ------------------------------------------------------
    def read_holding(self, unit: int, address: int, count: int) -> list[int]:
        return self._submit("read_holding", unit, address, count)

    def read_input(self, unit: int, address: int, count: int) -> list[int]:
        return self._submit("read_input", unit, address, count)

    def write(self, unit: int, address: int, words: list[int]) -> None:
        self._submit("write", unit, address, list(words))

    def start(self) -> None:
        if self._greenlet is None and not self.stopped:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self.stopped = True
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None
        while not self.queue.empty():      # nobody may wait forever on a stopped bus
            self.queue.get().result.set_exception(BusError("connect", "bus stopped"))
        self._close()

    def _submit(self, op: str, unit: int, address: int, arg: Any) -> Any:
        if self.stopped:   # a late request of a removed device: never reopen the port beside its successor
            raise BusError("connect", "bus stopped")
        self.start()
        req = _Request(op, unit, address, arg, gevent.event.AsyncResult())
        self.queue.put(req)
        return req.result.get()    # the bus greenlet always sets a value or an exception

    # -- the bus greenlet ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            req = self.queue.get()
            try:
                req.result.set(self._execute(req))
            except gevent.GreenletExit:
                req.result.set_exception(BusError("connect", "bus stopped"))
                raise
            except BusError as e:
                self.stats["errors"] += 1
                req.result.set_exception(e)
            except Exception as e:  # a library surprise must not kill the bus
                log.exception("%s: unexpected error", self.link.key)
                self.stats["errors"] += 1
                req.result.set_exception(BusError("bad_frame", f"unexpected error: {e}"))
            if not self.keep_connection and self.link.kind == "tcp" and self.queue.empty():
                self._close()

    def _execute(self, req: _Request) -> Any:
        self.stats["requests"] += 1
        error = BusError("no_answer", "no answer")
        for _ in range(self.retries + 1):
            self._connect()
            try:
                return self._once(req)
            except BusError as e:
                error = e
                if e.kind == "exception":
                    raise                    # the unit answered: retrying gives the same answer
                if e.kind == "connect":
                    raise
                if self.link.kind == "tcp":  # a late answer must not be taken for the next one
                    self._close()
        raise error

    def _once(self, req: _Request) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusIOException

        self._received = b""
        call: Callable[..., Any] = {
            "read_holding": lambda: self.client.read_holding_registers(req.address, count=req.arg, device_id=req.unit),
            "read_input": lambda: self.client.read_input_registers(req.address, count=req.arg, device_id=req.unit),
            "write": lambda: (self.client.write_register(req.address, req.arg[0], device_id=req.unit)
                              if len(req.arg) == 1 else
                              self.client.write_registers(req.address, req.arg, device_id=req.unit)),
        }[req.op]
        try:
            rr = call()
        except ModbusIOException:
            kind, msg = classify_garbage(self._received, req.expected_len(self.link.kind == "rtu"),
                                         self.link.kind == "rtu")
            raise BusError(kind, msg) from None
        except (ConnectionException, OSError) as e:
            self._close()
            raise BusError("connect", f"link lost: {e}") from None
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise BusError("exception", f"Modbus exception {code if code is not None else '?'}",
                           code if isinstance(code, int) else None)
        if req.op == "write":
            return None
        regs = list(rr.registers)
        if len(regs) != req.arg:
            raise BusError("bad_frame", f"asked {req.arg} registers, got {len(regs)}")
        return regs

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._received = bytes(data)   # pymodbus passes the whole buffer collected so far
        return data

    def _connect(self) -> None:
        if self.client is not None and self.client.connected:
            return
        now = time.monotonic()
        if now < self._next_connect:
            raise BusError("connect", f"{self.link.key} unreachable, retrying in {self._next_connect - now:.1f} s")
        if self.client is None:
            self.client = self._make_client()
        if self.client.connect():
            self._connect_failures = 0
            return
        self._connect_failures += 1
        self.stats["reconnects"] += 1
        # back off so a dead link costs one fast failure per cycle, not a connect timeout each time
        self._next_connect = now + min(0.25 * 2 ** self._connect_failures, RECONNECT_BACKOFF_MAX_S)
        self._close()
        raise BusError("connect", f"cannot open {self.link.key}")

    def _make_client(self) -> Any:
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient

        # pymodbus logs every timeout as an error; we log one line per state change ourselves
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

        if self.link.kind == "tcp":
            return ModbusTcpClient(self.link.address, port=self.link.port, timeout=self.timeout, retries=0,
                                   trace_packet=self._trace)
        return ModbusSerialClient(self.link.address, baudrate=self.link.baudrate, bytesize=self.link.bytesize,
                                  parity=self.link.parity, stopbits=self.link.stopbits, timeout=self.timeout,
                                  retries=0, trace_packet=self._trace)

    def _close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None
            if self.link.kind == "rtu":
                gevent.idle()   # gevent defers os.close of a tty; the port is only free after this


# -- sharing: devices on one link get one Bus ----------------------------------------------------------
_buses: dict[str, Bus] = {}


def check_shareable(spec: str) -> Link:
    """Parse `spec`; refuse a serial port already in use with other line parameters (one bus, one
    setting: the boxes on it would otherwise be polled at a baud rate that is not theirs)."""
    link = parse_port(spec)
    bus = _buses.get(link.key)
    if bus is not None and bus.link != link:
        raise ValueError(f"{link.key} is already in use as {bus.link.baudrate},{bus.link.bytesize},"
                         f"{bus.link.parity},{bus.link.stopbits}: all units on one bus need the same parameters")
    return link


def acquire(spec: str, timeout: float, retries: int, keep_connection: bool = True) -> Bus:
    """The shared Bus for a `port` setting (created on first use)."""
    link = check_shareable(spec)
    bus = _buses.get(link.key)
    if bus is None:
        bus = _buses[link.key] = Bus(link, timeout, retries, keep_connection)
    bus.users += 1
    return bus


def release(bus: Bus) -> None:
    bus.users -= 1
    if bus.users <= 0:
        bus.stop()
        if _buses.get(bus.link.key) is bus:
            del _buses[bus.link.key]
