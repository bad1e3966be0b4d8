"""`ampgate sim powerbrain`: a Power Brain Modbus slave (full register map) with a simple car.

Runs pymodbus's asyncio server in this plain-Python process (never inside the gevent appliance).
Units on one link: EVSE units (`--units 1,2`), optional S0 meter units (`--s0 3`) and an Eastron
SDM630 grid meter (`--sdm630 10`), as they would share one RS-485 bus.

Tests and demos drive it through a control channel: JSON lines on a local TCP port (`--control`),
one request object per line, one answer object per line. See docs/modbus.md for the commands.
The first line on stdout is {"ready": true, "control": "HOST:PORT", ...} once both servers listen.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from appliance.modbus import registers as R
from appliance.modbus import sdm630

HELP = "simulated Power Brain wallbox/S0 units (and an SDM630) over Modbus TCP or RTU"
VOLTAGE = 230.0
TICK_S = 0.1
FAULTS = ("none", "silent", "crc", "truncate", "range")
POWERUP = {R.DEFAULT_FIXED_CURRENT.address: 0, R.DEFAULT_LIMIT.address: 160, R.DEFAULT_ENABLE.address: 1,
           R.FAILSAFE_CURRENT.address: 0}


class Unit:
    """One Modbus unit: its register image and what the master did to it."""

    span = (R.FIRST, R.LAST)     # registers served: [first, last]

    def __init__(self, unit_id: int):
        self.id = unit_id
        self.regs = [0] * (self.span[1] - self.span[0] + 1)
        self.fault = "none"
        self.strict_map = False          # answer "illegal data address" for registers the map does not define
        self.writes: dict[int, int] = {}     # register -> how many times the master wrote it
        self.requests = 0
        self.last_request = time.monotonic()

    # register image access by absolute address
    def get(self, reg: R.Reg) -> int:
        return R.to_int(self.regs[reg.address - self.span[0]:reg.address - self.span[0] + reg.size])

    def put(self, reg: R.Reg, value: int) -> None:
        off = reg.address - self.span[0]
        self.regs[off:off + reg.size] = R.from_int(int(value), reg.size)

    def identify(self, device_type: int, name: str) -> None:
        self.put(R.VENDOR_ID, R.VENDOR_POWERBRAIN)
        self.put(R.PRODUCT_ID, 1)
        self.put(R.DEVICE_TYPE, device_type)
        self.put(R.FIRMWARE, 0x00010203)
        self.put(R.MAP_VERSION, 2)
        off = R.SERIAL.address - self.span[0]
        self.regs[off:off + R.SERIAL.size] = R.from_ascii(f"SIM{self.id:05d}", R.SERIAL.size)
        off = R.NAME.address - self.span[0]
        self.regs[off:off + R.NAME.size] = R.from_ascii(name, R.NAME.size)
        self.put(R.SLAVE_ID, self.id)

    def validate_write(self, address: int, values: list[int]) -> bool:
        return True

    def written(self, address: int, values: list[int]) -> None:
        """The master's write has been stored in `regs`."""

    def tick(self, dt: float, now: float) -> None:
        pass

    def image(self) -> list[int]:
        """What a read sees (the fault mode may lie)."""
        return self.regs

    def describe(self) -> dict[str, Any]:
        return {"unit": self.id, "fault": self.fault, "requests": self.requests,
                "writes": {str(k): v for k, v in sorted(self.writes.items())}}


class EvseUnit(Unit):
    """The wallbox: CP state machine, a car that takes min(offered, its max), the fail-safe timer."""

    def __init__(self, unit_id: int):
        super().__init__(unit_id)
        self.identify(R.TYPE_EVSE, "Power Brain sim")
        for address, v in POWERUP.items():
            self.regs[address - self.span[0]] = v
        self.put(R.FAILSAFE_TIMEOUT, 300)
        self.put(R.CABLE_CAPACITY, 320)
        self.put(R.RFID_INPUTS, 1)
        self.put(R.HAS_METER, 1)
        self.put(R.CAPABILITIES, R.CAP_SWITCH_PHASES_PLUGGED)
        self.plugged = False
        self.car_max = 16.0
        self.car_phases = 3
        self.energy_wh = 0.0
        self.failsafe = False
        self.ocpp_limit = 63.0           # charging-manager.md §5: the box's own OCPP side
        self.ocpp_enable = True
        self.relay_refused = 0           # relay writes refused (under load, or not allowed while plugged)
        self.timeline: list[tuple[float, float]] = [(time.monotonic(), 0.0)]   # (monotonic, offered A)
        self.power_up()
        self.put(R.RESTART_COUNTER, 0)

    def power_up(self) -> None:
        self.put(R.LIMIT, max(self.get(R.DEFAULT_LIMIT), 60))
        self.put(R.ENABLE, self.get(R.DEFAULT_ENABLE))
        self.put(R.FIXED_CURRENT, self.get(R.DEFAULT_FIXED_CURRENT))
        self.put(R.RESTART_COUNTER, self.get(R.RESTART_COUNTER) + 1)
        self.set_rfid("")
        self.failsafe = False

    def set_rfid(self, tag: str) -> None:
        off = R.RFID.address - self.span[0]
        self.regs[off:off + R.RFID.size] = R.from_ascii(tag, R.RFID.size)

    def validate_write(self, address: int, values: list[int]) -> bool:
        for i, v in enumerate(values):
            a = address + i
            if a == R.LIMIT.address and not 60 <= v <= 630:
                return False
            if a in (R.ENABLE.address, R.RELAY_SELECT.address) and v not in (0, 1):
                return False
            if a == R.RELAY_SELECT.address and v != self.get(R.RELAY_SELECT) and not self.relay_may_move():
                self.relay_refused += 1
                return False
        return True

    def relay_may_move(self) -> bool:
        """The phase relay never switches under load, nor with a car plugged in unless 8113 bit 8 says
        the box allows that."""
        drawing = any(R.to_int(R.from_int(self.get(r), 2), True) for r in R.CURRENTS)
        allowed = bool(self.get(R.CAPABILITIES) & R.CAP_SWITCH_PHASES_PLUGGED) or not self.plugged
        return allowed and not drawing

    def written(self, address: int, values: list[int]) -> None:
        self.failsafe = False

    def offered(self) -> float:
        """Current signalled on CP, A: min of Modbus and OCPP limits, only while both enable."""
        if not self.plugged or not self.get(R.ENABLE) or not self.ocpp_enable:
            return 0.0
        fixed = self.get(R.FIXED_CURRENT)
        limit = (fixed or self.get(R.LIMIT)) / 10
        return min(limit, self.ocpp_limit)

    def tick(self, dt: float, now: float) -> None:
        timeout = self.get(R.FAILSAFE_TIMEOUT)
        if timeout and not self.failsafe and now - self.last_request > timeout:
            self.enter_failsafe()
        offered = self.offered()
        if offered != self.timeline[-1][1]:      # CLOCK_MONOTONIC is system-wide: comparable across processes
            self.timeline.append((now, offered))
        phases = 1 if self.get(R.RELAY_SELECT) == 1 else self.car_phases
        draw = min(offered, self.car_max) if offered >= 6 else 0.0
        amps = [draw if i < phases else 0.0 for i in range(3)]
        for reg, a in zip(R.CURRENTS, amps):
            self.put(reg, int(round(a * 10)) & 0xFFFFFFFF)
        power = sum(amps) * VOLTAGE
        self.put(R.POWER, int(round(power)))
        self.energy_wh += power * dt / 3600
        self.put(R.ENERGY, int(self.energy_wh))
        self.put(R.SIGNALLED_CURRENT, int(round(offered * 10)))
        state = R.CP_A if not self.plugged else (R.CP_C if draw > 0 else R.CP_B)
        self.put(R.CP_STATE, state)

    def enter_failsafe(self) -> None:
        """No Modbus request for the fail-safe timeout: fall back to the fail-safe current (8085)."""
        self.failsafe = True
        raw = self.get(R.FAILSAFE_CURRENT)
        if raw == 0:
            self.put(R.ENABLE, 0)
        else:
            self.put(R.LIMIT, max(raw, 60))      # 0 < raw < 60 means "min current"
            self.put(R.ENABLE, 1)
        log(f"unit {self.id}: fail-safe, current {max(raw, 60) / 10 if raw else 0:g} A")

    def image(self) -> list[int]:
        if self.fault != "range":
            return self.regs
        lie = list(self.regs)
        lie[R.CP_STATE.address - self.span[0]] = 42
        off = R.CURRENT_L1.address - self.span[0]
        lie[off:off + 2] = R.from_int(5000, 2)          # 500 A
        return lie

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "type": "evse", "plugged": self.plugged, "car_max": self.car_max,
                "cp_state": self.get(R.CP_STATE), "limit": self.get(R.LIMIT) / 10,
                "enable": self.get(R.ENABLE), "offered": self.offered(),
                "currents": [R.to_int(R.from_int(self.get(r), 2), True) / 10 for r in R.CURRENTS],
                "energy_wh": round(self.energy_wh, 3), "failsafe": self.failsafe,
                "restarts": self.get(R.RESTART_COUNTER), "relay": self.get(R.RELAY_SELECT),
                "relay_refused": self.relay_refused, "status_bits": self.get(R.CAPABILITIES),
                "failsafe_timeout": self.get(R.FAILSAFE_TIMEOUT), "failsafe_current": self.get(R.FAILSAFE_CURRENT) / 10,
                "ocpp_limit": self.ocpp_limit, "ocpp_enable": self.ocpp_enable}


class S0Unit(Unit):
    """An S0 meter input of the Power Brain: pulses per kWh, energy and power."""

    def __init__(self, unit_id: int):
        super().__init__(unit_id)
        self.identify(0x0200, "Power Brain S0")
        self.put(R.S0_PULSES_PER_KWH, 1000)
        self.power_w = 0.0
        self.energy_wh = 0.0

    def tick(self, dt: float, now: float) -> None:
        self.energy_wh += max(self.power_w, 0) * dt / 3600
        self.put(R.ENERGY, int(self.energy_wh))
        self.put(R.POWER, int(round(self.power_w)) & 0xFFFFFFFF)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "type": "s0", "power_w": self.power_w, "energy_wh": round(self.energy_wh, 3)}


class Sdm630Unit(Unit):
    """A grid meter (input registers, float32); the test sets its per-phase currents."""

    span = (0, sdm630.LAST)

    def __init__(self, unit_id: int):
        super().__init__(unit_id)
        self.currents = [0.0, 0.0, 0.0]
        self.import_kwh = 0.0

    def tick(self, dt: float, now: float) -> None:
        for i, amps in enumerate(self.currents):
            for address, v in ((sdm630.VOLTAGES[i], VOLTAGE), (sdm630.CURRENTS[i], abs(amps)),
                               (sdm630.POWERS[i], amps * VOLTAGE)):
                self.regs[address:address + 2] = sdm630.words(v)
        total = sum(self.currents) * VOLTAGE
        self.import_kwh += max(total, 0) * dt / 3_600_000
        self.regs[sdm630.TOTAL_POWER:sdm630.TOTAL_POWER + 2] = sdm630.words(total)
        self.regs[sdm630.IMPORT_KWH:sdm630.IMPORT_KWH + 2] = sdm630.words(self.import_kwh)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "type": "sdm630", "currents": self.currents}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Simulator:
    """The units behind one link, the pymodbus hooks and the control commands."""

    def __init__(self, units: list[Unit], rtu: bool):
        self.units = {u.id: u for u in units}
        self.rtu = rtu

    # -- pymodbus hooks -----------------------------------------------------------------------------
    async def action(self, unit: Unit, fc: int, start: int, address: int, count: int,
                     registers: list[int], values: list[int] | None) -> Any:
        from pymodbus.constants import ExcCodes

        if unit.fault == "silent":
            if values is not None:                  # a box that is off stores nothing
                values[:] = registers[address - start:address - start + len(values)]
            return None
        unit.requests += 1
        unit.last_request = time.monotonic()
        if unit.strict_map and any(a not in R.DEFINED for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        if values is not None:
            if not unit.validate_write(address, list(values)):
                return ExcCodes.ILLEGAL_VALUE
            for i in range(len(values)):
                unit.writes[address + i] = unit.writes.get(address + i, 0) + 1
            off = address - unit.span[0]
            unit.regs[off:off + len(values)] = [int(v) for v in values]
            unit.written(address, list(values))
            unit.tick(0.0, unit.last_request)
        registers[:] = unit.image()
        return None

    def trace(self, sending: bool, data: bytes) -> bytes:
        """Apply the unit's fault mode to the answer frame it sends."""
        if not sending or len(data) < 2:
            return data
        unit = self.units.get(data[0] if self.rtu else (data[6] if len(data) > 6 else -1))
        if unit is None:      # RS-485: nobody answers for an id that is not on the bus
            return b"" if self.rtu else data
        if unit.fault in ("none", "range"):
            return data
        if unit.fault == "silent":
            return b""
        if unit.fault == "crc":
            return data[:-1] + bytes([data[-1] ^ 0x5A])
        return data[:max(len(data) // 2, 1)]       # truncate

    def sim_devices(self) -> list[Any]:
        from functools import partial

        from pymodbus.simulator import DataType, SimData, SimDevice

        return [SimDevice(id=u.id, simdata=[SimData(u.span[0], count=len(u.regs), values=0,
                                                    datatype=DataType.REGISTERS)],
                          action=partial(self.action, u))
                for u in self.units.values()]

    async def ticker(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for u in self.units.values():
                u.tick(now - last, now)
            last = now

    # -- control channel ---------------------------------------------------------------------------
    def command(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd = msg.get("cmd")
        if cmd == "list":
            return {"ok": True, "units": [u.describe() for u in self.units.values()]}
        unit = self.units.get(msg.get("unit", 1))
        if unit is None:
            return {"ok": False, "error": f"no unit {msg.get('unit')}"}
        if cmd == "timeline" and isinstance(unit, EvseUnit):
            return self.command_timeline(unit)
        handler = getattr(self, f"cmd_{cmd}", None)
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        handler(unit, msg)
        now = time.monotonic()
        unit.tick(0.0, now)
        return {"ok": True, **unit.describe()}

    def cmd_get(self, unit: Unit, msg: dict) -> None:
        pass

    def command_timeline(self, unit: EvseUnit) -> dict[str, Any]:
        return {"ok": True, "unit": unit.id, "timeline": unit.timeline}

    def cmd_plug(self, unit: EvseUnit, msg: dict) -> None:
        unit.plugged = True
        unit.car_max = float(msg.get("car_max", unit.car_max))
        unit.car_phases = int(msg.get("phases", unit.car_phases))
        log(f"unit {unit.id}: car plugged in (max {unit.car_max:g} A, {unit.car_phases} phases)")

    def cmd_unplug(self, unit: EvseUnit, msg: dict) -> None:
        unit.plugged = False
        unit.set_rfid("")        # the box forgets the card with the car
        log(f"unit {unit.id}: car unplugged")

    def cmd_swipe(self, unit: EvseUnit, msg: dict) -> None:
        unit.set_rfid(str(msg["rfid"]))
        log(f"unit {unit.id}: RFID {msg['rfid']}")

    def cmd_car(self, unit: EvseUnit, msg: dict) -> None:
        unit.car_max = float(msg["max"])

    def cmd_fault(self, unit: Unit, msg: dict) -> None:
        if msg.get("mode") not in FAULTS:
            raise ValueError(f"mode must be one of {FAULTS}")
        unit.fault = msg["mode"]
        log(f"unit {unit.id}: fault mode {unit.fault}")

    def cmd_strict(self, unit: Unit, msg: dict) -> None:
        unit.strict_map = bool(msg.get("on", True))
        log(f"unit {unit.id}: {'only documented registers answered' if unit.strict_map else 'every register answered'}")

    def cmd_restart(self, unit: EvseUnit, msg: dict) -> None:
        unit.power_up()
        unit.last_request = time.monotonic()
        log(f"unit {unit.id}: restarted")

    def cmd_ocpp(self, unit: EvseUnit, msg: dict) -> None:
        unit.ocpp_limit = float(msg.get("limit", unit.ocpp_limit))
        unit.ocpp_enable = bool(msg.get("enable", unit.ocpp_enable))

    def cmd_inputs(self, unit: EvseUnit, msg: dict) -> None:
        """S0 input states (8113 bits 0/1), e.g. a grid operator's control box on input 1."""
        bits = unit.get(R.CAPABILITIES) & ~(R.S0_INPUT_1 | R.S0_INPUT_2)
        bits |= (R.S0_INPUT_1 if msg.get("s0_1") else 0) | (R.S0_INPUT_2 if msg.get("s0_2") else 0)
        unit.put(R.CAPABILITIES, bits)

    def cmd_set(self, unit: Unit, msg: dict) -> None:
        off = int(msg["address"]) - unit.span[0]
        unit.regs[off:off + len(msg["values"])] = [int(v) & 0xFFFF for v in msg["values"]]

    def cmd_meter(self, unit: Unit, msg: dict) -> None:
        if isinstance(unit, Sdm630Unit):
            unit.currents = [float(a) for a in msg["currents"]]
        elif isinstance(unit, S0Unit):
            unit.power_w = float(msg["power"])

    async def serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            try:
                answer = self.command(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        writer.close()


# -- CLI -------------------------------------------------------------------------------------------
def _ids(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def add_arguments(p: argparse.ArgumentParser) -> None:
    link = p.add_mutually_exclusive_group(required=True)
    link.add_argument("--tcp", metavar="HOST:PORT", help="serve Modbus TCP")
    link.add_argument("--serial", metavar="DEV", help="serve Modbus RTU on a serial device or pty")
    p.add_argument("--baud", type=int, default=9600, help="RTU baud rate (ignored by a pty)")
    p.add_argument("--units", default="1", help="EVSE unit ids, comma separated (default 1)")
    p.add_argument("--s0", default="", help="S0 meter unit ids, comma separated")
    p.add_argument("--sdm630", default="", help="unit ids of simulated SDM630 grid meters")
    p.add_argument("--control", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="JSON-line control channel (port 0 = any free port, printed on start)")
    p.add_argument("--failsafe-timeout", type=int, default=None,
                   help="initial fail-safe timeout register (8083), s")


async def _serve(args: argparse.Namespace) -> None:
    from pymodbus.server import ModbusSerialServer, ModbusTcpServer

    units: list[Unit] = [EvseUnit(i) for i in _ids(args.units)]
    units += [S0Unit(i) for i in _ids(args.s0)] + [Sdm630Unit(i) for i in _ids(args.sdm630)]
    if args.failsafe_timeout is not None:
        for u in units:
            if isinstance(u, EvseUnit):
                u.put(R.FAILSAFE_TIMEOUT, args.failsafe_timeout)
    sim = Simulator(units, rtu=bool(args.serial))
    if args.tcp:
        server = ModbusTcpServer(sim.sim_devices(), address=_hostport(args.tcp), trace_packet=sim.trace)
    else:
        server = ModbusSerialServer(sim.sim_devices(), port=args.serial, baudrate=args.baud,
                                    trace_packet=sim.trace)
    await server.serve_forever(background=True)
    host, port = _hostport(args.control)
    control = await asyncio.start_server(sim.serve_control, host, port)
    cport = control.sockets[0].getsockname()[1]
    ticker = asyncio.create_task(sim.ticker())
    print(json.dumps({"ready": True, "modbus": args.tcp or args.serial, "control": f"{host}:{cport}",
                      "units": sorted(sim.units)}), flush=True)
    try:
        await server.serving
    finally:
        ticker.cancel()


def _plain_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--tcp", args.tcp] if args.tcp else ["--serial", args.serial]
    argv += ["--baud", str(args.baud), "--units", args.units, "--s0", args.s0, "--sdm630", args.sdm630,
             "--control", args.control]
    if args.failsafe_timeout is not None:
        argv += ["--failsafe-timeout", str(args.failsafe_timeout)]
    return argv


def main(args: argparse.Namespace) -> int:
    from gevent import monkey

    if monkey.is_module_patched("socket"):
        # `ampgate` patched this process for gevent; pymodbus's server wants plain asyncio: start over
        # as a plain interpreter (same pid, so whoever started us can still stop us).
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "appliance.sim.powerbrain", *_plain_argv(args)])
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as e:
        print(f"sim powerbrain: {e}", file=sys.stderr)
        return 1
    return 0


# -- for tests, demos and the benchmark: run the simulator as a child process ----------------------------
class SimProcess:
    """A simulator child process (plain Python) and its control channel.

    `SimProcess(["--tcp", "127.0.0.1:5020", "--units", "1,2"])`; `.send({"cmd": ...})` -> answer dict.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, ready_timeout: float = 15.0):
        import socket
        import subprocess
        import tempfile

        self.log = tempfile.TemporaryFile()      # a pipe nobody reads would block the simulator
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.sim.powerbrain", *argv],
                                     stdout=subprocess.PIPE, stderr=self.log, env=env)
        line = self._readline(ready_timeout)
        if not line:
            self.stop()
            raise RuntimeError("simulator did not start: " + self.stderr())
        self.info = json.loads(line)
        host, port = _hostport(self.info["control"])
        self.sock = socket.create_connection((host, port), timeout=ready_timeout)
        self.reader = self.sock.makefile("rb")

    def _readline(self, timeout: float) -> bytes:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        return self.proc.stdout.readline() if ready else b""

    def send(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        answer = json.loads(self.reader.readline())
        if not answer.get("ok"):
            raise RuntimeError(f"simulator refused {msg}: {answer.get('error')}")
        return answer

    def stop(self) -> None:
        if getattr(self, "sock", None) is not None:
            self.sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __enter__(self) -> "SimProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="ampgate sim powerbrain", description=HELP)
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
