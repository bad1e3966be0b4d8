"""The console next to a running appliance (`python -m appliance run` on free ports) with a simulated
OCPP wallbox charging: live status over the appliance's API, the event log read from its database
while it writes, following the log, and the selftest recognising the appliance's own ports."""
import json
import subprocess
import time
import urllib.request

import pytest

from conftest import PYTHON, ROOT, free_port, subprocess_env
from test_console import HASH, PASSWORD, TIMEOUT, answers, console, terminal  # noqa: F401 (fixture)


def _get_status(port: int) -> dict | None:
    import base64

    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/status")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def _wait(predicate, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Site:
    def __init__(self, tmp):
        self.web, self.ocpp = free_port(), free_port()
        self.conf, self.data = tmp / "ampgate.conf", tmp / "var"
        self.conf.write_text(f"""[web]
bind = 127.0.0.1
port = {self.web}
password_hash = {HASH}
[ocpp_server]
bind = 127.0.0.1
port = {self.ocpp}
[load_management]
max_current_per_phase = 40
cycle_s = 0.5
settle_s = 0.2
[devices]
[[garage]]
type = ocpp16
address = CP1
max_current = 16
[[carport]]
type = ocpp16
address = CP2
max_current = 16
""", encoding="utf-8")
        self.procs: list[subprocess.Popen] = []
        self.log = open(tmp / "appliance.log", "w")
        self.spawn("run", "--config", str(self.conf), "--data", str(self.data))
        _wait(lambda: _get_status(self.web), "the appliance's API")

    def spawn(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([PYTHON, "-m", "appliance", *args], stdin=subprocess.PIPE, stdout=self.log,
                                stderr=subprocess.STDOUT, env=subprocess_env(), cwd=ROOT)
        self.procs.append(proc)
        return proc

    def wallbox(self, cpid: str) -> subprocess.Popen:
        return self.spawn("sim", "ocpp", f"ws://127.0.0.1:{self.ocpp}/{cpid}", "--auto", "0.1",
                          "--meter-interval", "0.5")

    def device(self, name: str) -> dict:
        return next(d for d in (_get_status(self.web) or {"devices": []})["devices"] if d["name"] == name)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("live"))
    try:
        s.wallbox("CP1")
        _wait(lambda: s.device("garage")["state"] == "charging" and any(s.device("garage")["currents_a"]),
              "the simulated wallbox to charge")
        yield s
    finally:
        s.stop()


def login(terminal, site):  # noqa: F811
    t = terminal(site.conf, site.data)
    t.expect("password: ")
    t.send(PASSWORD)
    t.expect("ampgate> ")
    return t


def test_status_shows_mode_cycle_load_and_devices(site, terminal):  # noqa: F811
    t = login(terminal, site)
    out = t.command("status")
    lines = out.split("\n")
    assert lines[0].startswith("mode      active")
    assert lines[1].startswith("cycle     every ")
    assert lines[2].startswith("load      L1 ") and "limit 40.0 A per phase" in lines[2]
    garage = next(line for line in lines if line.strip().startswith("garage"))
    assert "charging" in garage and "limit" in garage and "drawing" in garage
    assert "offline" in next(line for line in lines if line.strip().startswith("carport"))
    devices = t.command("devices")
    assert "CP1/1" in devices and "charging" in devices and "CP2/1" in devices


def test_log_tail_reads_the_running_appliances_events_and_follows(site, terminal):  # noqa: F811
    t = login(terminal, site)
    out = t.command("log tail -n 50")
    assert "garage: transaction" in out and "started, idTag SIMTAG" in out
    assert len(t.command("log tail -n 2").strip().split("\n")) == 2

    t.send("log tail -f -n 1")
    t.expect("-- following the log; Enter or Ctrl-C stops --")
    site.wallbox("CP2")                       # the appliance logs the new station while we follow
    t.expect("carport: connected from")
    t.send("")                                # Enter stops following
    t.expect("ampgate> ")

    t.send("log tail -f -n 1")
    t.expect("-- following the log")
    t.send("", end="\x03")                    # Ctrl-C on the terminal: back to the prompt, still logged in
    t.expect("ampgate> ")
    assert "status" in t.command("help")


def test_selftest_recognises_the_appliances_own_ports(site):
    out = answers(console(site.conf, site.data, [PASSWORD, "selftest"]).stdout)[0].split("\n")
    assert f"ok   web port 127.0.0.1:{site.web}: in use by the running appliance" in out
    assert f"ok   OCPP port 127.0.0.1:{site.ocpp}: in use by the running appliance" in out
    assert any(line.startswith("ok   database") and line.endswith("writable") for line in out)
    assert out[-1].endswith("0 failed")
