"""`ampgate sim ocpp` behaves like a wallbox when the appliance restarts: it reconnects with backoff and
boots again, instead of dying or staying offline."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from tests.web_appliance import ROOT, Appliance, env, wait_for


def listed(a: Appliance, cbid: str) -> bool:
    try:
        with urllib.request.urlopen(a.url + "/api/status", timeout=2) as r:
            st = json.loads(r.read())
    except OSError:
        return False
    return any(u["charge_box_id"] == cbid and u.get("connected") is not False for u in st["unconfigured"])


def test_simulated_wallbox_reconnects_after_the_appliance_restarts(tmp_path):
    a = Appliance(tmp_path)
    sim = None
    try:
        a.start()
        sim = subprocess.Popen([sys.executable, "-m", "appliance", "sim", "ocpp", f"ws://127.0.0.1:{a.ocpp_port}/SIMR"],
                               cwd=ROOT, env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        wait_for(lambda: listed(a, "SIMR"), 20, "the simulator listed")
        a.stop()
        a.start()            # same ports, a fresh process: the simulator must come back by itself
        try:
            wait_for(lambda: listed(a, "SIMR"), 60, "the simulator listed again after the restart")
        except TimeoutError:
            sim.terminate()
            raise AssertionError("not back; the simulator said: " + "".join(sim.communicate(timeout=10))) from None
        assert sim.poll() is None, "the simulator died"
    finally:
        if sim is not None:
            sim.terminate()
            out, err = sim.communicate(timeout=10)
        a.stop()
    assert "trying again in 1 s" in err   # it said what it does, one line per try
