"""The dashboard says in words what keeps the cars from their current (issue 15): an unadopted station
"unmanaged, held at 0 A", a grid meter in fault, a stopped control loop. The real appliance process in
Debian's chromium; the stopped loop (which a healthy appliance never shows) by answering /api/status
with the appliance's own status plus the field."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import free_port
from tests.web_appliance import ROOT, Appliance, env, launch_browser, set_password

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (make system-deps)")
sync_api = pytest.importorskip("playwright.sync_api")

PASSWORD = "safety-words-pass"


def test_the_dashboard_names_unmanaged_stations_meter_faults_and_a_stopped_loop(tmp_path):
    dead_meter = f'[devices]\n[[grid]]\ntype = sdm630\nport = "tcp://127.0.0.1:{free_port()}"\nunit = 10\n' \
                 "role = consumption\n"
    with Appliance(tmp_path, "[modbus]\ntimeout = 0.2\nretries = 0\n" + dead_meter) as a, \
            sync_api.sync_playwright() as p:
        set_password(a, PASSWORD)
        sim = subprocess.Popen([sys.executable, "-m", "appliance", "sim", "ocpp",
                                f"ws://127.0.0.1:{a.ocpp_port}/STRANGER"], cwd=ROOT, env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        browser = launch_browser(p)
        try:
            pg = browser.new_page()
            pg.set_default_timeout(30000)
            pg.goto(a.url + "/")
            pg.fill("#f-password", PASSWORD)
            pg.click("button[type=submit]")
            pg.wait_for_selector("#unconfigured:has-text('STRANGER: unmanaged, held at 0 A')")
            pg.wait_for_selector("#safety:has-text('grid: meter fault: no reading since start')")
            assert "cars paused until it answers" in pg.inner_text("#safety")

            def stopped(route):
                body = json.loads(route.fetch().text())
                body["load_management"]["stopped"] = "load management cycle failing: KeyError: 'x'; " \
                                                     "every wallbox is paused until it runs again"
                route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

            pg.route("**/api/status", stopped)
            pg.wait_for_selector("#safety:has-text('Load management stopped: load management cycle failing')")
            assert pg.is_visible("#safety")
        finally:
            browser.close()
            sim.terminate()
            sim.wait(10)
