"""The .ipk installed as opkg would, run on exactly the Python packages an OpenWrt release's feed ships.

For each case a virtual environment holds only the feed's packages (openwrt/feeds/*.txt, pip --no-deps,
so nothing newer sneaks in) or, for "newest", the versions of constraints.txt; it stands in for the box's
/usr/bin/python3 with its python3-* packages. The package's data tree is unpacked into a scratch root,
byte-compiled as postinst does, and run from there: the appliance (OCPP port, web page including the
certificates page, a simulated wallbox charging), `ampgate cert show`, and the serial console's wrapper
on a pseudo-terminal. The environments are kept in ~/.cache/ampgate/openwrt-venvs (keyed by interpreter and
requirements), and pip's download cache makes a new one quick: the three cases add under a minute to make test.
"""
from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from test_console import HASH, PASSWORD, Terminal
from test_openwrt import build_ipk, fake_uci, unpack
from web_appliance import wait_for

pytestmark = pytest.mark.timeout(600)

FEEDS = ROOT / "openwrt" / "feeds"
# outside the checkout, so a fresh clone (CI) reuses them; the key covers everything they are made from
VENVS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ampgate" / "openwrt-venvs"


def interpreter(version: str) -> str:
    """A real python<version> (not a pyenv shim that may refuse), or "" if this machine has none."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    for path in [shutil.which(f"python{version}", path="/usr/bin:/usr/local/bin"),
                 *sorted(Path("/root/.pyenv/versions").glob(f"{version}.*/bin/python{version}"))]:
        if path and subprocess.run([str(path), "--version"], capture_output=True).returncode == 0:
            return str(path)
    return ""


PY311, PY313 = interpreter("3.11"), interpreter("3.13")


def newest_requirements() -> str:
    """The 24.10 feed's package list at the versions of constraints.txt (their own dependencies too)."""
    names = [ln.split("==")[0] for ln in (FEEDS / "24.10.txt").read_text().splitlines() if "==" in ln]
    return "\n".join(names) + "\n"


CASES = {   # case -> (python, requirements, install without dependencies)
    "openwrt-24.10": (PY311, (FEEDS / "24.10.txt").read_text(), True),
    "openwrt-25.12": (PY313, (FEEDS / "25.12.txt").read_text(), True),
    "newest-py3.13": (PY313, newest_requirements(), False),
}


def venv(case: str) -> Path:
    python, requirements, no_deps = CASES[case]
    if not python:
        pytest.skip("this machine has no Python for this case")
    version = subprocess.run([python, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(f"{python}\n{version}{requirements}{no_deps}".encode()).hexdigest()[:12]
    path = VENVS / f"{case}-{key}"
    if (path / "ready").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(path)], check=True)
    req = path / "requirements.txt"
    req.write_text(requirements)
    cmd = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(req)]
    cmd += ["--no-deps"] if no_deps else ["-c", str(ROOT / "constraints.txt")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (path / "ready").touch()
    return path


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so a killed test run leaves no appliance behind."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG (Linux)


@pytest.fixture(scope="module")
def ipk(tmp_path_factory) -> Path:
    return build_ipk(tmp_path_factory.mktemp("ipk"))


class Box:
    """The package's files in a scratch root, /usr/bin/python3 played by the case's environment."""

    def __init__(self, ipk: Path, tmp: Path, env_dir: Path):
        self.root = unpack(ipk, tmp / "ipk") / "data"
        self.python = env_dir / "bin" / "python"
        launcher = self.root / "usr/bin/ampgate"
        launcher.write_text(f"#!{self.python}\n" + launcher.read_text().split("\n", 1)[1])
        compiled = subprocess.run([str(self.python), "-m", "compileall", "-q", str(self.root / "usr/lib/ampgate")],
                                  capture_output=True, text=True)
        assert compiled.returncode == 0, compiled.stdout + compiled.stderr
        self.conf, self.data = self.root / "etc/ampgate/ampgate.conf", self.root / "etc/ampgate/data"
        self.web, self.ocpp = free_port(), free_port()
        self.conf.write_text(self.conf.read_text().replace("port = 8080", f"port = {self.web}\nbind = 127.0.0.1\n"
                                                          f"password_hash = {HASH}")
                             .replace("port = 19520", f"port = {self.ocpp}\nbind = 127.0.0.1")
                             .replace("[devices]", "cycle_s = 0.5\nsettle_s = 0.2\n[devices]\n[[garage]]\n"
                                      "type = ocpp16\naddress = CP1\nmax_current = 16"))
        self.log = open(tmp / "box.log", "w")
        self.procs: list[subprocess.Popen] = []

    def ampgate(self, *args: str) -> list[str]:
        return [str(self.root / "usr/bin/ampgate"), *args]

    def spawn(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(self.ampgate(*args), stdout=self.log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd="/", preexec_fn=_die_with_parent)
        self.procs.append(proc)
        return proc

    def get(self, path: str) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.web}{path}")
        req.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    def device(self, name: str) -> dict:
        import json
        status, body = self.get("/api/status")
        devices = json.loads(body)["devices"] if status == 200 else []
        return next((d for d in devices if d["name"] == name), {})

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()


@pytest.mark.parametrize("case", list(CASES))
def test_package_runs_on_the_feed_versions(case, ipk, tmp_path):
    env_dir = venv(case)
    # the bundled packages and the ocpp schemas come from the package, not from the environment
    probe = subprocess.run([str(env_dir / "bin/python"), "-c", "import ocpp"], capture_output=True)
    assert probe.returncode != 0, "the environment must not have the ocpp package: the .ipk ships its schemas"
    box = Box(ipk, tmp_path, env_dir)
    try:
        run = box.spawn("run", "--config", str(box.conf), "--data", str(box.data), "--log-level", "info")
        wait_for(lambda: run.poll() is not None or box.get("/api/status")[0] == 200, 60, "the web API")
        assert run.poll() is None, (tmp_path / "box.log").read_text()
        status, page = box.get("/")
        assert status == 200 and b"<html" in page.lower()
        status, page = box.get("/certs/")
        assert status == 200, page[-2000:]          # cryptography 41 on 24.10: no *_utc properties
        box.spawn("sim", "ocpp", f"ws://127.0.0.1:{box.ocpp}/CP1", "--auto", "0.1", "--meter-interval", "0.5")
        wait_for(lambda: box.device("garage").get("state") == "charging" and any(box.device("garage")["currents_a"]),
                 60, "the simulated wallbox to charge")

        shown = subprocess.run(box.ampgate("cert", "show", "--config", str(box.conf), "--data", str(box.data)),
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "RSA 2048" in shown.stdout, shown.stdout + shown.stderr

        bindir = fake_uci(tmp_path, box.conf, box.data)
        term = Terminal(box.conf, box.data, argv=["sh", str(box.root / "usr/sbin/ampgate-console")],
                        env={"PATH": f"{bindir}:/usr/bin:/bin", "AMPGATE": str(box.root / "usr/bin/ampgate"),
                             "LOGIN": "/bin/false", "TERM": "dumb"})
        try:
            term.expect("password: ", timeout=60)
            term.send(PASSWORD)
            term.expect("ampgate> ")
            assert "garage" in term.command("status")
            term.send("exit")
            assert term.wait() == 0
        finally:
            term.close()
    finally:
        box.stop()
