"""`make screenshots`: the pages at desktop and phone width, in English and German (files *-de.png), as PNGs.

Starts the real appliance with a demo configuration on free ports, connects simulated OCPP wallboxes
(`ampgate sim ocpp`) when that simulator is available, and photographs the pages with chromium.
The plot's last hours are seeded into the database before the start (the appliance only records
history while it runs; a fresh demo would otherwise show an empty plot).

    python -m tests.screenshots OUTPUT_DIR
"""
from __future__ import annotations

import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.web_appliance import ROOT, Appliance, env, launch_browser, set_password, wait_for

PASSWORD = "screenshot-demo"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
LANGS = ("en-US", "de-DE")
LAST_LOAD = """async () => { const r = await fetch('/api/history?hours=0.05'); const p = (await r.json()).points;
                            return p.length ? Math.max(...p[p.length - 1].load_a) : 0; }"""
DEMO_DEVICES = """[load_management]
max_current_per_phase = 32
mode = {mode}

[devices]
  [[garage]]
  type = ocpp16
  label = Garage left
  address = CP1
  max_current = 16

  [[carport]]
  type = ocpp16
  label = Carport
  address = CP2
  max_current = 32
  phase_rotation = 120

  [[visitor]]
  type = powerbrain
  label = Visitor spot
  port = tcp://127.0.0.1:4701
  active = false
"""


def seed_history(data_dir: Path, hours: float = 3) -> None:
    """Plausible per-phase load for the last hours: a house base load plus two cars."""
    from appliance.store import Store

    store = Store(data_dir / "ampgate.db")
    now = time.time()
    for i in range(int(hours * 3600 / 60)):
        ts = now - hours * 3600 + i * 60
        h = (ts - now) / 3600 + hours
        house = [6 + 3 * math.sin(h * 2.1 + p) + (4 if 1.2 < h < 1.5 and p == 0 else 0) for p in range(3)]
        car1 = 16 if 0.3 < h < 2.6 else 0
        car2 = min(16, 32 - 2 - max(house) - car1) if h > 1.0 else 0   # what the budget leaves
        car2 = car2 if car2 >= 6 else 0                                   # below min current: paused
        alloc = {"garage": car1, "carport": round(car2, 1)}
        budget = [32 - x for x in house]
        load = [round(house[p] + car1 + car2, 1) for p in range(3)]
        store.add_history(ts, {"load_a": load, "budget_a": [round(b, 1) for b in budget], "allocations": alloc})
    store.close()


def simulator_available() -> bool:
    from appliance.sim import ocpp_wallbox

    return "not implemented" not in ocpp_wallbox.HELP


def demo_mode() -> str:
    """active when load management is in this build (it gives the cars their current); otherwise
    monitor, where the appliance commands nothing and the simulated car charges at its maximum."""
    try:
        import appliance.lm.controller  # noqa: F401
    except ImportError:
        return "monitor"
    return "active"


def start_simulators(a: Appliance) -> list[subprocess.Popen]:
    """Two simulated wallboxes on the appliance's OCPP port, one charging (when the simulator exists)."""
    if not simulator_available():
        print("screenshots: OCPP simulator not available; tiles show the devices as offline", file=sys.stderr)
        return []
    procs = []
    for cbid, extra in (("CP1", ["--auto", "1", "--id-tag", "04A2B3C4", "--meter-interval", "2"]),
                        ("CP2", ["--auto", "1", "--car-max", "11", "--phases", "1", "--id-tag", "RFID-7781",
                                 "--meter-interval", "2"]),
                        ("ABL-0815", [])):
        cmd = [sys.executable, "-m", "appliance", "sim", "ocpp", f"ws://127.0.0.1:{a.ocpp_port}/{cbid}", *extra]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    return procs


def shoot(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        a = Appliance(Path(tmp), DEMO_DEVICES.format(mode=demo_mode()))
        a.data.mkdir(parents=True)
        seed_history(a.data)
        with a:
            set_password(a, PASSWORD)
            sims = start_simulators(a)
            try:
                with sync_playwright() as p:
                    browser = launch_browser(p)
                    for lang, label, viewport in [(lg, lb, vp) for lg in LANGS
                                                  for lb, vp in (("desktop", DESKTOP), ("phone", PHONE))]:
                        written += _pages(browser, a, out, lang, label, viewport, bool(sims))
                    browser.close()
            finally:
                for s in sims:
                    s.terminate()
                    s.wait(10)
    return written


def _pages(browser, a: Appliance, out: Path, lang: str, label: str, viewport: dict, sims: bool) -> list[Path]:
    """Every page in one language at one width; German files end in -de."""
    written = []
    suffix = "" if lang.startswith("en") else "-" + lang[:2]
    ctx = browser.new_context(viewport=viewport, device_scale_factor=1, is_mobile=label == "phone", locale=lang)
    pg = ctx.new_page()
    pg.goto(a.url + "/login")
    pg.fill("#f-password", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_selector(".tile")
    if sims:
        wait_for(lambda: pg.locator(".badge.st-charging").count() == 2, 30, "two charging tiles")
        wait_for(lambda: not re.search(r"0[.,]0 / 0[.,]0 / 0[.,]0", pg.locator(".tile >> nth=0").inner_text()), 30,
                 "meter values on the tiles")
        wait_for(lambda: not re.match(r"0[.,]0", pg.locator("#phases .pval >> nth=0").inner_text()), 30,
                 "the grid load from load management")
        if label == "desktop":   # the plot ends at the load of now (history every 10 s)
            wait_for(lambda: pg.evaluate(LAST_LOAD) > 0, 30, "a history point with the cars")
            pg.click(".plot-tools button[data-hours='3']")
    pg.wait_for_selector("#plot path")
    written.append(_save(pg, out / f"dashboard-{label}{suffix}.png"))
    for page, path in (("devices", "/devices/"), ("transactions", "/transactions"), ("system", "/system/")):
        pg.goto(a.url + path)
        written.append(_save(pg, out / f"{page}-{label}{suffix}.png"))
    pg.goto(a.url + "/devices/garage")
    written.append(_save(pg, out / f"device-form-{label}{suffix}.png"))
    pg.fill("#f-ocpp16-max_current", "95")
    pg.click("#device-form button[type=submit]")
    pg.wait_for_selector(".field.bad")
    pg.locator(".field.bad").first.scroll_into_view_if_needed()
    if label == "desktop":
        written.append(_save(pg, out / f"device-form-error-{label}{suffix}.png", full=False))
    ctx.close()
    return written


def _save(pg, path: Path, full: bool = True) -> Path:
    pg.screenshot(path=str(path), full_page=full)
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    for p in shoot(Path(argv[0])):
        print(p)
    return 0


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    sys.exit(main(sys.argv[1:]))
