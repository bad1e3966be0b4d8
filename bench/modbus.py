"""Modbus benchmark: Power Brain control-cycle time on one RTU bus, and reads/s over Modbus TCP.

RTU: 1, 4 and 8 simulated boxes on one socat pty pair; a control cycle per box is what
PowerBrainEvse does (read 8058..8069, read 8087..8121, write 8093..8094), all through one bus queue.
Printed beside it: the time those bytes need on a real wire at that baud rate (11 bits per character
as Modbus RTU counts them, plus a 3.5-character gap after every frame), and the ratio.
A pty ignores the baud rate, so the measured figure is our + pymodbus's overhead, not the wire.
TCP: sequential 10-register reads through our bus queue, beside plain pymodbus without the queue.

Run: .venv/bin/python bench/modbus.py   (needs socat)
"""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.modbus import registers as R  # noqa: E402
from appliance.modbus.bus import Bus, parse_port  # noqa: E402
from appliance.modbus.powerbrain import PowerBrainUnit  # noqa: E402
from appliance.sim.powerbrain import SimProcess  # noqa: E402

CYCLES = 20
BITS_PER_CHAR = 11
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def wire_seconds_per_box(baud: int) -> float:
    """Bytes of one box's control cycle on an RTU wire, with a 3.5-char gap after each frame."""
    from appliance.modbus.powerbrain import STATE_SPAN

    frames = [8, 5 + 2 * R.MEASURE_BLOCK[1],          # read measurements: request, answer
              8, 5 + 2 * STATE_SPAN[1],               # read state block
              9 + 2 * 2, 8]                            # write limit + enable (FC16), answer
    chars = sum(frames) + 3.5 * len(frames)
    return chars * BITS_PER_CHAR / baud


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rtu_bench(tmp: Path) -> None:
    a, b = str(tmp / "ttyA"), str(tmp / "ttyB")
    socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not (Path(a).exists() and Path(b).exists()) and time.monotonic() < deadline:
            time.sleep(0.02)
        with SimProcess(["--serial", a, "--units", ",".join(str(i) for i in range(1, 9))], env=ENV):
            print("RTU, one bus (socat pty pair: the baud rate is ignored by a pty, so 'measured' is software"
                  " overhead; 'wire' is computed for a real RS-485 line)")
            print(f"{'baud':>7} {'boxes':>5} {'measured cycle ms':>18} {'wire ms':>9} {'measured/wire':>14}")
            for baud in (9600, 115200):
                bus = Bus(parse_port(f"{b},{baud},8,n,1"), timeout=0.5, retries=0)
                try:
                    for n in (1, 4, 8):
                        boxes = [PowerBrainUnit(bus, u) for u in range(1, n + 1)]
                        for box in boxes:                      # warm up: open the port, first frames
                            box.read()
                        t0 = time.perf_counter()
                        for _ in range(CYCLES):
                            for box in boxes:
                                box.read()
                                box.command(10.0, True)
                        measured = (time.perf_counter() - t0) / CYCLES
                        wire = wire_seconds_per_box(baud) * n
                        print(f"{baud:>7} {n:>5} {measured * 1000:>18.1f} {wire * 1000:>9.1f} {measured / wire:>14.2f}")
                finally:
                    bus.stop()
            print("  (on the pty, 9600 is slower than 115200 only because pymodbus paces its receive polling"
                  " from the configured baud rate)")
    finally:
        socat.terminate()
        socat.wait(5)


def _rate(read, seconds: float) -> tuple[int, float]:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        read()
        n += 1
    return n, time.perf_counter() - t0


def tcp_bench() -> None:
    """Alternate short slices of both ways, so load from other processes hits both alike."""
    from pymodbus.client import ModbusTcpClient

    port = free_port()
    with SimProcess(["--tcp", f"127.0.0.1:{port}"], env=ENV):
        bus = Bus(parse_port(f"tcp://127.0.0.1:{port}"), timeout=0.5, retries=0)
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0)
        client.connect()
        totals = {"ours": [0, 0.0], "plain": [0, 0.0]}
        for _ in range(10):
            for key, read in (("ours", lambda: bus.read_holding(1, R.CP_STATE.address, 10)),
                              ("plain", lambda: client.read_holding_registers(R.CP_STATE.address, count=10,
                                                                              device_id=1))):
                n, dt = _rate(read, 0.2)
                totals[key][0] += n
                totals[key][1] += dt
        bus.stop()
        client.close()
    ours, plain = (totals[k][0] / totals[k][1] for k in ("ours", "plain"))
    print("\nModbus TCP, 10-register reads, sequential, loopback (2 s each, interleaved)")
    print(f"  through the bus queue: {ours:8.0f} reads/s")
    print(f"  plain pymodbus client: {plain:8.0f} reads/s   (ratio {ours / plain:.2f})")


def main() -> int:
    if shutil.which("socat") is None:
        print("socat is needed (Debian package socat)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        rtu_bench(Path(tmp))
    tcp_bench()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
