"""The bus scheduler against the real pymodbus-based simulator: Modbus TCP, and RTU over a socat pty
pair with two units on one bus; every kind of bad input is named, and the bus keeps serving."""
import time

import gevent
import pytest

from appliance.modbus import registers as R
from appliance.modbus.bus import Bus, BusError, classify_garbage, parse_port, rtu_crc
from appliance.sim.powerbrain import SimProcess
from conftest import subprocess_env
from modbus_fixtures import PtyPair, tcp_sim


def test_parse_port_forms():
    assert parse_port("tcp://192.168.1.5:4701").key == "tcp://192.168.1.5:4701"
    link = parse_port("/dev/ttyUSB0,19200,8,e,2")
    assert (link.kind, link.address, link.baudrate, link.parity, link.stopbits) == ("rtu", "/dev/ttyUSB0", 19200, "E", 2)
    assert parse_port("/dev/ttyS1").baudrate == 9600
    assert parse_port("COM1,9600,8,n,1").address == "COM1"
    for bad in ("", "tcp://host", "tcp://:80", "/dev/ttyUSB0,fast,8,n,1", "/dev/ttyUSB0,9600,9,n,1", "/dev/x,1,2"):
        with pytest.raises(ValueError):
            parse_port(bad)


def test_classify_garbage():
    frame = bytes([1, 3, 2, 0, 7])
    good = frame + rtu_crc(frame).to_bytes(2, "little")
    assert classify_garbage(b"", 7, True)[0] == "no_answer"
    assert classify_garbage(good[:-1] + b"\x00", 7, True)[0] == "crc_error"
    assert classify_garbage(good[:3], 7, True)[0] == "truncated"


@pytest.fixture
def tcp():
    sim, port = tcp_sim("--units", "1,2")
    bus = Bus(parse_port(port), timeout=0.25, retries=0)
    yield sim, bus
    bus.stop()
    sim.stop()


def test_tcp_read_write_and_exception(tcp):
    sim, bus = tcp
    words = bus.read_holding(1, R.VENDOR_ID.address, 2)
    assert R.to_int(words) == R.VENDOR_POWERBRAIN
    bus.write(2, R.LIMIT.address, [100, 1])
    assert sim.send({"cmd": "get", "unit": 2})["limit"] == 10.0
    with pytest.raises(BusError) as e:           # the box refuses a limit below 6 A
        bus.write(1, R.LIMIT.address, [10])
    assert e.value.kind == "exception"


def test_tcp_silent_unit_and_recovery(tcp):
    sim, bus = tcp
    sim.send({"cmd": "fault", "unit": 1, "mode": "silent"})
    t0 = time.monotonic()
    with pytest.raises(BusError) as e:
        bus.read_holding(1, R.CP_STATE.address, 1)
    assert e.value.kind == "no_answer" and time.monotonic() - t0 < 1.0
    assert bus.read_holding(2, R.CP_STATE.address, 1) == [0]      # the other unit still answers
    sim.send({"cmd": "fault", "unit": 1, "mode": "none"})
    assert bus.read_holding(1, R.CP_STATE.address, 1) == [0]      # and the unit comes back


def test_tcp_server_down_fails_fast_and_reconnects(tcp):
    sim, bus = tcp
    bus.read_holding(1, R.CP_STATE.address, 1)
    sim.stop()
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(BusError) as e:
            bus.read_holding(1, R.CP_STATE.address, 1)
        assert e.value.kind in ("connect", "no_answer") and time.monotonic() - t0 < 1.0


@pytest.fixture
def rtu(tmp_path):
    pty = PtyPair(tmp_path)
    sim = SimProcess(["--serial", pty.a, "--units", "1,2"], env=subprocess_env())
    bus = Bus(parse_port(f"{pty.b},9600,8,n,1"), timeout=0.25, retries=0)
    yield sim, bus
    bus.stop()
    sim.stop()
    pty.stop()


def test_rtu_two_units_one_bus_with_every_fault(rtu):
    sim, bus = rtu
    assert R.to_int(bus.read_holding(1, R.VENDOR_ID.address, 2)) == R.VENDOR_POWERBRAIN
    assert R.to_int(bus.read_holding(2, R.SLAVE_ID.address, 1)) == 2
    # requests from two greenlets at once are serialised on the bus, none mixed up
    jobs = [gevent.spawn(bus.read_holding, u, R.SLAVE_ID.address, 1) for u in (1, 2) * 10]
    gevent.joinall(jobs, raise_error=True)
    assert [j.value for j in jobs] == [[1], [2]] * 10

    for mode, kind in (("silent", "no_answer"), ("crc", "crc_error"), ("truncate", "truncated")):
        sim.send({"cmd": "fault", "unit": 1, "mode": mode})
        with pytest.raises(BusError) as e:
            bus.read_holding(1, R.STATE_BLOCK[0], R.STATE_BLOCK[1])
        assert e.value.kind == kind, (mode, str(e.value))
        # the bad frame left nothing behind: unit 2 on the same bus answers correctly at once
        assert bus.read_holding(2, R.SLAVE_ID.address, 1) == [2]
    sim.send({"cmd": "fault", "unit": 1, "mode": "none"})
    assert bus.read_holding(1, R.SLAVE_ID.address, 1) == [1]
    with pytest.raises(BusError) as e:                # no such unit on the bus: silence, as on RS-485
        bus.read_holding(7, R.SLAVE_ID.address, 1)
    assert e.value.kind == "no_answer"


def test_rtu_retry_counts(rtu):
    sim, bus = rtu
    bus.retries = 1
    sim.send({"cmd": "fault", "unit": 2, "mode": "silent"})
    t0 = time.monotonic()
    with pytest.raises(BusError):
        bus.read_holding(2, R.SLAVE_ID.address, 1)
    assert 0.45 < time.monotonic() - t0 < 1.5           # timeout × (retries + 1)
    assert bus.stats["errors"] == 1


def test_silent_unit_does_not_stall_the_process(rtu):
    """A ticker greenlet keeps its pace while the bus waits for a dead unit."""
    sim, bus = rtu
    sim.send({"cmd": "fault", "unit": 1, "mode": "silent"})
    late = []

    def ticker():
        last = time.monotonic()
        while True:
            gevent.sleep(0.01)
            now = time.monotonic()
            late.append(now - last - 0.01)
            last = now

    g = gevent.spawn(ticker)
    for _ in range(3):
        with pytest.raises(BusError):
            bus.read_holding(1, R.SLAVE_ID.address, 1)
    g.kill()
    assert len(late) > 30 and max(late) < 0.1


def test_missing_serial_port_fails_fast_with_backoff(tmp_path):
    bus = Bus(parse_port(str(tmp_path / "ttyNONE")), timeout=0.25, retries=1)
    kinds = []
    t0 = time.monotonic()
    for _ in range(5):
        with pytest.raises(BusError) as e:
            bus.read_holding(1, R.CP_STATE.address, 1)
        kinds.append(e.value.kind)
    assert kinds == ["connect"] * 5 and time.monotonic() - t0 < 0.5
    assert "cannot open" in str(e.value) or "unreachable" in str(e.value)
    bus.stop()


def test_sdm630_implausible_values_are_errors():
    from appliance.modbus import sdm630

    block = [0] * sdm630.BLOCK[1]
    for i, (amps, watts) in enumerate(((5.0, 1150.0), (2.0, -460.0), (0.0, 0.0))):
        block[sdm630.CURRENTS[i]:sdm630.CURRENTS[i] + 2] = sdm630.words(amps)
        block[sdm630.POWERS[i]:sdm630.POWERS[i] + 2] = sdm630.words(watts)
    assert sdm630.signed_currents(block) == (5.0, -2.0, 0.0)
    for bad in (float("nan"), 5000.0):
        block[sdm630.CURRENTS[2]:sdm630.CURRENTS[2] + 2] = sdm630.words(bad)
        with pytest.raises(ValueError):
            sdm630.signed_currents(block)
