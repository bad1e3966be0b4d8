"""The page in a real browser (Debian's chromium driven by Playwright) against the real appliance
process (`python -m appliance run` on free ports)."""
from __future__ import annotations

import base64
import datetime
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.web_appliance import ROOT, Appliance, env, launch_browser, set_password, wait_for

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (make system-deps)")
sync_api = pytest.importorskip("playwright.sync_api")

PASSWORD = "web-test-pass"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = launch_browser(p)
        yield b
        b.close()


def api(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """A script's request: HTTP Basic auth, no CSRF token."""
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# Load management counts offline wallboxes at their maximum (safety rule); the devices the earlier
# tests add stay offline, so the connection is made big enough for all of them to leave room.
ROOMY = "[load_management]\nmax_current_per_phase = 200\n"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    with Appliance(tmp_path_factory.mktemp("web"), ROOMY) as a:
        set_password(a, PASSWORD)
        yield a


@pytest.fixture(scope="module")
def session(browser, appliance):
    """One logged-in browser context for the module (a context costs about a second)."""
    ctx = browser.new_context()
    pg = ctx.new_page()
    login(pg, appliance.url)
    pg.close()
    yield ctx
    ctx.close()


@pytest.fixture
def page(session):
    pg = session.new_page()
    pg.set_default_timeout(10000)
    yield pg
    pg.close()


def login(pg, base: str) -> None:
    pg.goto(base + "/")
    assert "/login" in pg.url
    pg.fill("#f-password", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_selector("#phases")


def test_first_visit_sets_the_password_then_login_is_required(browser, tmp_path):
    with Appliance(tmp_path) as a:
        ctx = browser.new_context(viewport=PHONE)
        pg = ctx.new_page()
        pg.goto(a.url + "/devices/")
        assert pg.url.endswith("/setup")
        assert pg.locator("nav").count() == 0          # nothing but "set password" is offered
        code = a.claim_code()
        assert code in a.log.read_text()                # the installer reads it in the log (or the console)
        pg.fill("#f-claim", "1111-2222")                # someone else on the LAN, without the code
        pg.fill("#f-password", PASSWORD)
        pg.fill("#f-password2", PASSWORD)
        pg.click("button[type=submit]")
        assert "wrong claim code" in pg.locator(".field.bad .error").inner_text()
        assert "pbkdf2" not in a.config.read_text()
        pg.fill("#f-claim", code)
        pg.fill("#f-password", "short")
        pg.fill("#f-password2", "short")
        pg.eval_on_selector("#setup", "f => f.noValidate = true")
        pg.click("button[type=submit]")
        assert "at least 8 characters" in pg.locator(".field.bad .error").inner_text()
        pg.fill("#f-claim", code)
        pg.fill("#f-password", PASSWORD)
        pg.fill("#f-password2", PASSWORD)
        pg.click("button[type=submit]")
        pg.wait_for_selector("#phases")
        assert "pbkdf2:sha256" in a.config.read_text()
        assert not (a.data / "claim_code").exists()     # one time only
        ctx.close()
        other = browser.new_context()
        pg = other.new_page()
        pg.goto(a.url + "/settings/")
        assert "/login" in pg.url
        pg.fill("#f-password", "wrong password")
        pg.click("button[type=submit]")
        assert pg.locator(".error").inner_text() == "wrong password"
        pg.fill("#f-password", PASSWORD)
        pg.click("button[type=submit]")
        pg.wait_for_url(re.compile(r"/settings/$"))
        other.close()


def test_add_a_wallbox_with_the_form(page, appliance):
    page.goto(appliance.url + "/devices/")
    page.click("text=+ OCPP wallbox")
    page.fill("#f-name", "garage")
    page.fill("#f-ocpp16-address", "CP-GARAGE")
    page.fill("#f-ocpp16-max_current", "20")
    page.select_option("#f-ocpp16-phase_rotation", "120")
    page.fill("#f-ocpp16-label", "Garage left")
    page.click("button:has-text('Save')")
    page.wait_for_selector("#device-list tr[data-name=garage]")
    assert "garage: saved" in page.locator(".flash.ok").inner_text()
    status, body = api(appliance.url, "GET", "/api/devices")
    dev = next(d for d in body["devices"] if d["name"] == "garage")
    assert (dev["address"], dev["max_current"], dev["phase_rotation"], dev["label"]) == ("CP-GARAGE", 20, 120, "Garage left")
    text = appliance.config.read_text()
    assert "[[garage]]" in text and "min_current" not in text     # defaults stay out of the file


def test_power_brain_form_shows_its_own_fields(page, appliance):
    page.goto(appliance.url + "/devices/new?type=ocpp16")
    assert page.is_visible("#f-ocpp16-address") and not page.is_visible("#f-powerbrain-port")
    page.select_option("#f-type", "powerbrain")
    assert page.is_visible("#f-powerbrain-port") and page.is_visible("#f-powerbrain-failsafe_timeout")
    assert not page.is_visible("#f-ocpp16-address")


def test_a_bad_value_is_rejected_at_its_field_and_the_file_is_unchanged(page, appliance):
    api(appliance.url, "POST", "/api/devices", {"name": "carport", "type": "ocpp16", "address": "CP9"})
    before = appliance.config.read_bytes()
    page.goto(appliance.url + "/devices/carport")
    page.fill("#f-ocpp16-max_current", "95")
    page.fill("#f-ocpp16-min_current", "8")
    page.click("button:has-text('Save')")
    err = page.locator(".field.bad[data-key=max_current] .error")
    assert "too big" in err.inner_text()
    assert page.locator(".field.bad").count() == 1
    assert page.input_value("#f-ocpp16-max_current") == "95"       # what the user typed stays
    assert page.input_value("#f-ocpp16-min_current") == "8"
    assert appliance.config.read_bytes() == before
    # a cross-field rule names its field too
    page.fill("#f-ocpp16-max_current", "7")
    page.click("button:has-text('Save')")
    assert "above max_current" in page.locator(".field.bad[data-key=min_current] .error").inner_text()
    assert appliance.config.read_bytes() == before


def test_dashboard_follows_a_simulated_wallbox_as_it_starts_charging(page, appliance):
    status, _ = api(appliance.url, "POST", "/api/devices", {"name": "bay1", "type": "ocpp16", "address": "SIM1"})
    assert status == 201
    page.goto(appliance.url + "/")
    marker = page.evaluate("() => (window.__marker = Math.random())")
    tile = page.locator(".tile[data-name=bay1]")
    tile.locator(".badge.st-offline").wait_for()
    sim = _sim(appliance, "SIM1", "--auto", "0.5", "--meter-interval", "1", "--car-max", "13", "--id-tag", "CARD42")
    try:
        tile.locator(".badge.st-charging").wait_for(timeout=20000)
        wait_for(lambda: "13.0 / 13.0 / 13.0 A" in tile.inner_text(), 15, "the drawn currents on the tile")
        text = tile.inner_text()
        assert "8.97 kW" in text and "CARD42" in text             # 3 x 13 A x 230 V
        assert re.search(r"Given / max\s+16.0 / 16 A", text), text  # load management gave it its max_current
        assert "SIM1 #1" in text
        wait_for(lambda: page.locator("#phases .phase >> nth=0").inner_text().split()[1] == "13.0", 10,
                 "L1 load on the phase bars")
        assert page.evaluate("() => window.__marker") == marker   # the same page all along, never reloaded
        page.goto(appliance.url + "/transactions?device=bay1")
        assert "CARD42" in page.locator("#tx-list").inner_text()
    finally:
        sim.terminate()
        sim.wait(10)
    page.goto(appliance.url + "/")
    tile.locator(".badge.st-offline").wait_for(timeout=20000)


def _sim(appliance: Appliance, cbid: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "appliance", "sim", "ocpp",
                             f"ws://127.0.0.1:{appliance.ocpp_port}/{cbid}", *args], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_an_unknown_wallbox_is_adopted_with_one_click(page, appliance):
    sim = _sim(appliance, "NEWBOX-7")
    try:
        page.goto(appliance.url + "/")
        page.wait_for_selector("#unconfigured:has-text('NEWBOX-7')", timeout=20000)   # the dashboard says so
        page.click("#unconfigured a")
        page.click("li[data-cbid='NEWBOX-7'] button:has-text('Adopt')")
        page.wait_for_url(re.compile(r"/devices/NEWBOX-7$"))
        assert page.input_value("#f-ocpp16-address") == "NEWBOX-7"
        _, body = api(appliance.url, "GET", "/api/devices")
        assert any(d["name"] == "NEWBOX-7" and d["address"] == "NEWBOX-7" for d in body["devices"])
        page.goto(appliance.url + "/")
        page.wait_for_selector(".tile[data-name='NEWBOX-7'] .badge.st-available", timeout=20000)
        assert not page.is_visible("#unconfigured")
    finally:
        sim.terminate()
        sim.wait(10)


def test_dashboard_shows_a_device_added_by_a_script_without_reload(page, appliance):
    page.goto(appliance.url + "/")
    marker = page.evaluate("() => (window.__marker = Math.random())")
    assert page.locator(".tile[data-name=pantry]").count() == 0
    status, _ = api(appliance.url, "POST", "/api/devices", {"name": "pantry", "type": "ocpp16", "address": "CP-P"})
    assert status == 201
    page.wait_for_selector(".tile[data-name=pantry]", timeout=8000)
    api(appliance.url, "PUT", "/api/devices/pantry", {"active": False})
    page.wait_for_selector(".tile[data-name=pantry] .badge.st-disabled", timeout=8000)
    assert page.evaluate("() => window.__marker") == marker       # same page, no reload


def _make_cert(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wallbox-gw.example"),
                      x509.NameAttribute(NameOID.LOCALITY_NAME, "Köln")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=200))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("wallbox-gw.example")]), critical=False)
            .sign(key, hashes.SHA256()))
    c, k = tmp / "server.crt", tmp / "server.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def test_certificate_upload(page, appliance, tmp_path):
    pytest.importorskip("appliance.certs.manage", reason="appliance.certs.manage not merged yet")
    cert, key = _make_cert(tmp_path)
    page.goto(appliance.url + "/certs/")
    form = page.locator("#server-cert form.upload")
    form.locator("input[name=cert]").set_input_files(str(cert))
    form.locator("input[name=key]").set_input_files(str(key))
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".flash")
    assert "server certificate imported" in page.locator(".flash").inner_text()
    server = page.locator("#server-cert dl.cert").inner_text()
    assert "wallbox-gw.example" in server and "Köln" in server
    # a key that does not belong to the certificate is refused with a message, not a traceback
    _, other_key = _make_cert(tmp_path / "..")
    form = page.locator("#server-cert form.upload")
    form.locator("input[name=cert]").set_input_files(str(cert))
    form.locator("input[name=key]").set_input_files(str(other_key))
    form.locator("button[type=submit]").click()
    assert page.locator(".flash.error").count() == 1


def test_phone_width_has_no_sideways_scrolling(browser, appliance):
    ctx = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    pg = ctx.new_page()
    login(pg, appliance.url)
    for path in ("/", "/devices/", "/devices/new?type=powerbrain", "/settings/", "/transactions", "/log"):
        pg.goto(appliance.url + path)
        width = pg.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
    assert not pg.is_visible("nav a:has-text('Settings')")       # behind the menu button
    pg.click(".navbtn")
    assert pg.is_visible("nav a:has-text('Settings')")
    ctx.close()
