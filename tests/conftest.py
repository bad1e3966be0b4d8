"""Shared fixtures. gevent is patched first, as in the real process, so servers under test run in
greenlets of the test process while clients use real sockets."""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "var"
    d.mkdir()
    return d


@pytest.fixture
def conf_file(tmp_path: Path):
    """Write a config file from text; returns its path."""
    def make(text: str = "") -> Path:
        p = tmp_path / "ampgate.conf"
        p.write_text(text, encoding="utf-8")
        return p
    return make


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class CentralSystemUnderTest:
    """The real OCPP server and runtime, in this process's greenlets, on a free port."""

    def __init__(self, tmp_path: Path, conf_text: str = "", server: str = "", tls_context=None, check_peer=None):
        from appliance import config
        from appliance.ocpp.server import OcppServer
        from appliance.runtime import Runtime

        self.port = free_port()
        conf = tmp_path / "ampgate.conf"
        conf.write_text(f"[ocpp_server]\nport = {self.port}\nbind = 127.0.0.1\n{server}\n" + conf_text, encoding="utf-8")
        self.runtime = Runtime(config.load(conf), tmp_path / "var")
        self.runtime.load_devices()
        self.server = OcppServer(self.runtime, tls_context, check_peer)
        self.runtime.ocpp = self.server
        self.server.start()

    def url(self, cpid: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{cpid}"

    def stop(self) -> None:
        self.server.stop()
        self.runtime.close()


@pytest.fixture
def central(tmp_path):
    started = []

    def make(conf_text: str = "", **kw) -> CentralSystemUnderTest:
        cs = CentralSystemUnderTest(tmp_path, conf_text, **kw)
        started.append(cs)
        return cs
    yield make
    for cs in started:
        cs.stop()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Wait on a condition with a deadline (tests never sleep-and-hope)."""
    import gevent

    deadline = __import__("time").monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if __import__("time").monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        gevent.sleep(interval)


def fast_site_conf(grid: float, devices: dict[str, str], box_max: float = 16.0) -> str:
    """A site with a short control cycle for end-to-end tests: `devices` maps a name to the lines
    of its section (type, address or port...); every box gets `box_max`."""
    text = (f"[load_management]\nmax_current_per_phase = {grid}\nmax_imbalance = {grid}\ncycle_s = 0.3\n"
            "settle_s = 0.2\npause_s = 1\nrotation_s = 1000\n[devices]\n")
    for name, lines in devices.items():
        text += f"[[{name}]]\n{lines}\nmax_current = {box_max}\n"
    return text

