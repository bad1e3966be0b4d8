"""Helpers for the Modbus / Power Brain tests: the simulator over TCP or a socat pty pair, a Runtime
with Power Brain devices, and waiting on conditions with a deadline (no sleep-and-hope)."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

from appliance import config
from appliance.modbus import bus as bus_mod
from appliance.runtime import Runtime
from appliance.sim.powerbrain import SimProcess
from conftest import free_port, subprocess_env, wait_for  # noqa: F401 (re-exported for the tests)

# small on purpose: a dead unit costs timeout × (retries + 1) per request
TEST_MODBUS = "[modbus]\ntimeout = 0.25\nretries = 0\n"


def tcp_sim(*extra: str) -> tuple[SimProcess, str]:
    port = free_port()
    sim = SimProcess(["--tcp", f"127.0.0.1:{port}", *extra], env=subprocess_env())
    return sim, f"tcp://127.0.0.1:{port}"


class PtyPair:
    """Two linked pseudo-terminals from socat: the simulator opens `a`, the master opens `b`."""

    def __init__(self, tmp: Path):
        if shutil.which("socat") is None:
            raise RuntimeError("socat is needed for the RTU tests (Debian package socat)")
        self.a, self.b = str(tmp / "ttyA"), str(tmp / "ttyB")
        self.proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: Path(self.a).exists() and Path(self.b).exists(), 5, what="socat ptys")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def make_runtime(tmp: Path, devices: dict[str, dict[str, Any]], extra: str = "") -> Runtime:
    for leftover in list(bus_mod._buses.values()):   # a failed test must not leak its buses into the next
        leftover.stop()
    bus_mod._buses.clear()
    lines = [TEST_MODBUS, "[load_management]\ncycle_s = 0.2\n", extra, "[devices]"]
    for name, values in devices.items():
        lines.append(f"[[{name}]]")
        lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in values.items()]
    path = tmp / "ampgate.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Runtime(config.load(path), tmp / "var")


def close_runtime(rt: Runtime) -> None:
    rt.close()
    assert not bus_mod._buses, "every bus released"


def events(rt: Runtime, device: str | None = None) -> list[str]:
    return [e["message"] for e in reversed(rt.store.events(device=device))]


@contextlib.contextmanager
def one_box(tmp: Path, settings: dict[str, Any], sim_args: tuple[str, ...] = (),
            before: Any = None) -> Iterator[tuple[SimProcess, Runtime, Any]]:
    """A TCP simulator with EVSE unit 1 and a Runtime with one Power Brain device "box" on it, online.
    `before(sim)` runs before the appliance starts (to prepare the box's registers)."""
    sim, port = tcp_sim("--units", "1", *sim_args)
    rt = None
    try:
        if before is not None:
            before(sim)
        rt = make_runtime(tmp, {"box": {"type": "powerbrain", "unit": 1, **settings, "port": port}})
        rt.load_devices()
        wait_for(lambda: rt.devices["box"].health.online, what="first poll")
        yield sim, rt, rt.devices["box"]
    finally:
        if rt is not None:
            rt.close()
        sim.stop()
