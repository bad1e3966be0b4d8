"""The web app through Flask's test client on a real Runtime (real config file, real SQLite):
JSON API, authentication, CSRF on every state-changing route, secrets never sent back."""
from __future__ import annotations

import base64
import io
import re
import resource
import signal
import stat
import urllib.parse

import pytest

from appliance import config
from appliance.runtime import Runtime
from appliance.webapp import create_app

PASSWORD = "correct horse"
CONF = """[web]
port = 8080

[ocpp_server]
password = ocpp-secret-XYZ

[devices]
  [[garage]]
  type = ocpp16
  address = CP1
  gateway_password = gw-secret-ABC
  ocpp_password = station-secret-Q
"""
SECRETS = ("ocpp-secret-XYZ", "gw-secret-ABC", "station-secret-Q")


@pytest.fixture
def rt(conf_file, data_dir):
    runtime = Runtime(config.load(conf_file(CONF)), data_dir)
    yield runtime
    runtime.close()


@pytest.fixture
def app(rt):
    return create_app(rt)


def token_of(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def claim_code(client) -> str:
    from appliance import claim

    return claim.read(client.application.config["RUNTIME"].data_dir)


def set_password(client) -> str:
    """First visit: set the password with the claim code; returns the session's CSRF token."""
    tok = token_of(client.get("/setup").text)
    r = client.post("/setup", data={"password": PASSWORD, "password2": PASSWORD, "csrf_token": tok,
                                    "claim_code": claim_code(client)})
    assert r.status_code == 302, r.text
    return token_of(client.get("/").text)


@pytest.fixture
def logged_in(app):
    client = app.test_client()
    return client, set_password(client)


def basic(user: str = "admin", pw: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def state_changing_routes(app) -> list[tuple[str, str]]:
    """Every (method, url) that can change state, with dummy path arguments."""
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"GET", "HEAD", "OPTIONS"}):
            url = rule.build({a: "garage" for a in rule.arguments}, append_unknown=False)[1]
            out.append((method, url))
    return out


def snapshot(rt) -> tuple[bytes, list]:
    files = sorted((p.name, p.read_bytes()) for p in rt.data_dir.rglob("*") if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm") and not p.name.endswith(("-wal", "-shm")))
    return rt.config.path.read_bytes(), files


# -- first visit ---------------------------------------------------------------------------------------
def test_first_visit_only_offers_setting_the_password(app, rt):
    c = app.test_client()
    assert c.get("/").headers["Location"].endswith("/setup")
    assert c.get("/devices/").headers["Location"].endswith("/setup")
    assert c.get("/api/status").status_code == 200            # reading is open until a password exists
    r = c.post("/api/devices", json={"name": "x", "type": "ocpp16", "address": "X"})
    assert r.status_code == 403 and "password" in r.json["error"]
    tok = token_of(c.get("/setup").text)
    r = c.post("/setup", data={"password": "short", "password2": "short", "csrf_token": tok,
                               "claim_code": claim_code(c)})
    assert r.status_code == 400 and "at least 8" in r.text
    r = c.post("/setup", data={"password": PASSWORD, "password2": PASSWORD})   # no CSRF token
    assert r.status_code == 403
    assert config.load(rt.config.path).section("web")["password_hash"] == ""
    set_password(c)
    h = config.load(rt.config.path).section("web")["password_hash"]
    assert h.startswith("pbkdf2:sha256:") and PASSWORD not in h
    assert c.get("/setup").status_code == 302                   # only once


def test_session_secret_is_private_and_kept(app, rt):
    p = rt.data_dir / "web_secret"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert create_app(rt).secret_key == app.secret_key
    assert p.read_bytes() not in rt.config.path.read_bytes()


# -- every state-changing route refuses requests without session or CSRF token -------------------------
def test_state_changing_routes_need_session_and_csrf(app, rt):
    routes = state_changing_routes(app)
    assert len(routes) >= 14, routes   # devices, settings, certs, auth, API ...
    assert ("DELETE", "/api/devices/garage") in routes
    client, tok = app.test_client(), None
    # before a password exists nothing but /setup (with token) is accepted
    for method, url in routes:
        r = client.open(url, method=method, data={"active": "false", "name": "n"})
        assert r.status_code in (302, 403), (method, url, r.status_code)
        if r.status_code == 302:
            assert r.headers["Location"].endswith("/setup"), (method, url)
    tok = set_password(client)
    before = snapshot(rt)
    anonymous = app.test_client()
    other = app.test_client()
    other_tok = token_of(other.get("/login").text)   # a session of its own, not logged in
    for method, url in routes:
        if url in ("/login", "/setup"):
            continue
        form = {"active": "false", "name": "n", "type": "ocpp16", "address": "Z", "password": "x" * 9}
        r = anonymous.open(url, method=method, data=form)
        assert r.status_code in (302, 401, 403), (method, url, r.status_code)
        if r.status_code == 302:
            assert "/login" in r.headers["Location"], (method, url)
        r = client.open(url, method=method, data=form)                       # session, no token
        assert r.status_code == 403, (method, url, r.status_code)
        r = client.open(url, method=method, data={**form, "csrf_token": other_tok})   # someone else's
        assert r.status_code == 403, (method, url, r.status_code)
        r = client.open(url, method=method, json={"name": "n"}, headers={"X-CSRF-Token": tok + "x"})
        assert r.status_code == 403, (method, url, r.status_code)
        if method == "POST":   # what a cross-site form can send, with cached Basic credentials: no change
            r = anonymous.open(url, method=method, data=form, headers=basic())
            assert r.status_code in (400, 403), (method, url, r.status_code)
        # the right token, but from a foreign page
        r = client.open(url, method=method, data={**form, "csrf_token": tok},
                        headers={"Origin": "http://evil.example"})
        assert r.status_code == 403, (method, url, r.status_code)
    assert snapshot(rt) == before
    assert "garage" in rt.config.devices()
    # the login form itself needs the token too (login CSRF)
    assert app.test_client().post("/login", data={"password": PASSWORD}).status_code == 403


def test_logout_and_password_change_end_sessions(logged_in, app):
    client, tok = logged_in
    second = app.test_client()
    t2 = token_of(second.get("/login").text)
    assert second.post("/login", data={"password": PASSWORD, "csrf_token": t2}).status_code == 302
    assert second.get("/api/status").status_code == 200
    r = client.post("/password", data={"current": PASSWORD, "password": "another pass", "csrf_token": tok})
    assert r.status_code == 302
    assert second.get("/api/status").status_code == 401          # old sessions end
    assert client.get("/api/status").status_code == 200          # the changer stays logged in
    tok = token_of(client.get("/").text)
    client.post("/logout", data={"csrf_token": tok})
    assert client.get("/api/status").status_code == 401


# -- API ---------------------------------------------------------------------------------------------
def test_api_needs_auth_once_password_set_and_basic_needs_no_csrf(logged_in, app, rt):
    anon = app.test_client()
    r = anon.get("/api/status")
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]
    assert anon.get("/api/devices", headers=basic(pw="wrong password")).status_code == 401
    assert anon.get("/api/devices", headers=basic(user="root")).status_code == 401
    r = anon.post("/api/devices", json={"name": "carport", "type": "powerbrain", "port": "tcp://127.0.0.1:4701"},
                  headers=basic())
    assert r.status_code == 201, r.json
    assert r.json["device"]["port"] == "tcp://127.0.0.1:4701"
    assert config.load(rt.config.path).devices()["carport"]["type"] == "powerbrain"


def test_api_device_crud(logged_in, rt):
    client, tok = logged_in
    h = {"X-CSRF-Token": tok}
    r = client.post("/api/devices", json={"name": "p2", "type": "ocpp16", "address": "CP2", "connector": 2,
                                          "max_current": 20, "fcfs": True}, headers=h)
    assert r.status_code == 201, r.json
    d = r.json["device"]
    assert (d["connector"], d["max_current"], d["fcfs"]) == (2, 20.0, True)
    r = client.put("/api/devices/p2", json={"priority": 5, "max_current": None}, headers=h)
    assert r.status_code == 200 and r.json["device"]["priority"] == 5 and r.json["device"]["max_current"] == 16
    assert rt.config.devices()["p2"]["connector"] == 2                     # PUT keeps what it did not name
    names = [d["name"] for d in client.get("/api/devices").json["devices"]]
    assert names == ["garage", "p2"]
    assert client.post("/api/devices", json={"name": "p2", "type": "ocpp16", "address": "Q"},
                       headers=h).status_code == 409
    assert client.delete("/api/devices/p2", headers=h).json == {"deleted": "p2"}
    assert client.delete("/api/devices/p2", headers=h).status_code == 404
    assert client.put("/api/devices/nope", json={}, headers=h).status_code == 404
    assert "p2" not in config.load(rt.config.path).devices()


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "type": "ocpp16", "address": "A", "max_current": 100}, "max_current"),
    ({"name": "x", "type": "ocpp16", "address": "A", "max_current": "lots"}, "max_current"),
    ({"name": "x", "type": "ocpp16", "address": "A", "min_current": 20, "max_current": 10}, "min_current"),
    ({"name": "x", "type": "ocpp16", "address": ""}, "address"),
    ({"name": "x", "type": "ocpp16", "address": "A/B"}, "address"),
    ({"name": "x", "type": "tesla", "address": "A"}, "type"),
    ({"name": "x", "type": "powerbrain"}, "port"),
    ({"name": "bad name!", "type": "ocpp16", "address": "A"}, "name"),
    ({"name": "x", "type": "ocpp16", "address": "A", "colour": "red"}, "colour"),
    ({"name": "x", "type": "ocpp16", "address": "A", "phases": [1, 2]}, "phases"),
    ({"type": "ocpp16", "address": "A"}, "name"),
    ({"name": "x", "type": "ocpp16", "address": "A", "gateway_url": "http://x"}, "gateway_url"),
    ({"name": "x", "type": "ocpp16", "address": "A", "gateway_url": "ws://backend/ocpp"}, "gateway_id"),
    ({"name": "x", "type": "ocpp16", "address": "A", "gateway_url": "wss://b/", "gateway_id": "a/b"}, "gateway_id"),
])
def test_api_rejects_bad_values_naming_the_field_and_changes_nothing(logged_in, rt, body, field):
    client, tok = logged_in
    before = rt.config.path.read_bytes()
    r = client.post("/api/devices", json=body, headers={"X-CSRF-Token": tok})
    assert r.status_code == 400, r.json
    assert r.json["field"] == field and r.json["error"]
    if field != "name":   # the same values as a change of an existing device
        r = client.put("/api/devices/garage", json={k: v for k, v in body.items() if k != "name"},
                       headers={"X-CSRF-Token": tok})
        assert r.status_code == 400 and r.json["field"] == field
    assert rt.config.path.read_bytes() == before


def test_api_rejects_a_body_that_is_not_json(logged_in):
    client, tok = logged_in
    r = client.post("/api/devices", data="name=x", headers={"X-CSRF-Token": tok})
    assert r.status_code == 400 and r.json["field"] == "body"


def test_status_transactions_history(logged_in, rt):
    client, _ = logged_in
    st = client.get("/api/status").json
    assert st["mode"] == "active" and st["limit_a"] == 32
    assert st["configured"] == [{"name": "garage", "type": "ocpp16", "label": "", "active": True,
                                 "address": "CP1 #1", "max_current": 16.0, "phases": 3,
                                 "state": "not_running", "why": "not running: see the log"}]   # not started here
    rt.store.start_transaction(connector=1, id_tag="TAG1", meter_start=100, start_time="2026-11-30T10:00:00Z",
                               device="garage", charge_box_id="CP1")
    rt.store.start_transaction(connector=1, id_tag="TAG2", meter_start=0, start_time="2026-11-29T10:00:00Z",
                               device="other", charge_box_id="CP9")
    txs = client.get("/api/transactions?device=garage").json["transactions"]
    assert [t["id_tag"] for t in txs] == ["TAG1"]
    import time
    rt.store.add_history(time.time() - 60, {"load_a": [10, 11, 12], "budget_a": [20, 20, 20], "allocations": {"garage": 8}})
    rt.store.add_history(time.time() - 5 * 3600, {"load_a": [1, 1, 1], "budget_a": [2, 2, 2], "allocations": {}})
    pts = client.get("/api/history?hours=1").json["points"]
    assert [p["load_a"] for p in pts] == [[10, 11, 12]]


# -- pages ---------------------------------------------------------------------------------------------
def test_no_secret_is_ever_sent_back(logged_in, app, rt):
    client, tok = logged_in
    pages = ["/", "/devices/", "/devices/garage", "/devices/new", "/settings/", "/certs/", "/transactions",
             "/log", "/api/status", "/api/devices", "/transactions.csv"]
    # a failed save re-renders the form: still no secret, not even the one just typed
    r = client.post("/devices/garage", data={"csrf_token": tok, "type": "ocpp16", "address": "CP1",
                                             "max_current": "99", "gateway_password": "typed-secret-QQ"})
    assert r.status_code == 400 and "typed-secret-QQ" not in r.text
    r = client.post("/settings/ocpp_server", data={"csrf_token": tok, "port": "0", "password": "typed-secret-QQ"})
    assert r.status_code == 400 and "typed-secret-QQ" not in r.text
    for url in pages:
        body = client.get(url).text
        for s in SECRETS + (PASSWORD, rt.config.section("web")["password_hash"]):
            assert s not in body, (url, s)
    assert "set (leave empty to keep)" in client.get("/devices/garage").text
    assert client.get("/api/devices").json["devices"][0]["gateway_password_set"] is True
    assert client.get("/api/devices").json["devices"][0]["ocpp_password_set"] is True


def test_device_form_keeps_secret_unless_cleared(logged_in, rt):
    client, tok = logged_in
    form = {"csrf_token": tok, "type": "ocpp16", "address": "CP1", "connector": "1", "max_current": "20",
            "active": "true", "gateway_password": ""}
    assert client.post("/devices/garage", data=form).status_code == 302
    dev = config.load(rt.config.path).devices()["garage"]
    assert dev["gateway_password"] == "gw-secret-ABC" and dev["max_current"] == 20
    assert dev["ocpp_password"] == "station-secret-Q"
    assert client.post("/devices/garage", data={**form, "gateway_password_clear": "1"}).status_code == 302
    assert config.load(rt.config.path).devices()["garage"]["gateway_password"] == ""


def test_settings_validate_and_say_when_a_restart_is_needed(logged_in, rt):
    client, tok = logged_in
    before = rt.config.path.read_bytes()
    r = client.post("/settings/load_management", data={"csrf_token": tok, "mode": "active",
                                                       "max_current_per_phase": "-3"})
    assert r.status_code == 400 and "too small" in r.text
    assert rt.config.path.read_bytes() == before
    r = client.post("/settings/load_management", data={"csrf_token": tok, "mode": "monitor",
                                                       "max_current_per_phase": "40"})
    assert r.status_code == 200 and "Restart" not in r.text.split("Saved.")[1][:80]
    lm = config.load(rt.config.path).section("load_management")
    assert (lm["mode"], lm["max_current_per_phase"]) == ("monitor", 40)
    r = client.post("/settings/ocpp_server", data={"csrf_token": tok, "port": "19600", "tls": "detect"})
    assert "Restart the appliance to apply: port, tls" in r.text
    srv = config.load(rt.config.path).section("ocpp_server")
    assert (srv["port"], srv["tls"], srv["password"]) == (19600, "detect", "ocpp-secret-XYZ")


def test_adopt_unconfigured_station(logged_in, rt):
    client, tok = logged_in
    rt.unconfigured["ABL 0815"] = {"vendor": "ABL", "model": "eMH3"}
    assert "ABL 0815" in client.get("/devices/").text
    r = client.post("/devices/adopt", data={"csrf_token": tok, "charge_box_id": "ABL 0815"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/devices/ABL_0815")
    dev = config.load(rt.config.path).devices()["ABL_0815"]
    assert (dev["type"], dev["address"], dev["connector"]) == ("ocpp16", "ABL 0815", 1)
    assert "ABL 0815" not in rt.unconfigured


def test_transactions_filter_and_csv(logged_in, rt):
    client, _ = logged_in
    for day, dev, tag in (("2026-11-28", "garage", "A"), ("2026-11-29", "garage", "B"), ("2026-11-29", "x", "C")):
        tx, _ = rt.store.start_transaction(connector=1, id_tag=tag, meter_start=1000, start_time=f"{day}T08:00:00Z",
                                           device=dev, charge_box_id="CP1")
        rt.store.stop_transaction(tx, meter_stop=3500, stop_time=f"{day}T09:00:00Z", reason="Local")
    page = client.get("/transactions?device=garage&since=2026-11-29&until=2026-11-29").text
    assert ">B<" in page and ">A<" not in page and ">C<" not in page
    csv_text = client.get("/transactions.csv?since=2026-11-29").text
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("id,device,charge_box_id") and len(lines) == 3
    assert lines[1].endswith(",2500")


def test_log_newest_first(logged_in, rt):
    client, _ = logged_in
    rt.events.info("first thing")
    rt.events.warning("second thing", "garage")
    page = client.get("/log").text
    assert page.index("second thing") < page.index("first thing")


def test_certificates_page_ca_list_and_clear_messages(logged_in, rt, tmp_path):
    pytest.importorskip("appliance.certs.manage")
    from tests.test_web_browser import _make_cert

    client, tok = logged_in
    page = client.get("/certs/").text
    assert "onboard, self-signed" in page and "SHA-256" in page
    cert, key = _make_cert(tmp_path)
    r = client.post("/certs/ca", data={"csrf_token": tok, "cert": (cert.open("rb"), "ca.pem")},
                    content_type="multipart/form-data", follow_redirects=True)
    assert "CA certificate added" in r.text and "wallbox-gw.example" in r.text
    fp = re.search(r'/certs/ca/([^/]+)/delete', r.text).group(1)
    r = client.post("/certs/server", data={"csrf_token": tok, "cert": (cert.open("rb"), "c.pem"),
                                          "key": (io.BytesIO(b"not a key"), "k.pem")},
                    content_type="multipart/form-data", follow_redirects=True)
    assert 'class="flash error"' in r.text and "Traceback" not in r.text
    r = client.post("/certs/server", data={"csrf_token": tok}, follow_redirects=True)
    assert "choose a PEM file" in r.text
    r = client.post(f"/certs/ca/{fp}/delete", data={"csrf_token": tok}, follow_redirects=True)
    assert "CA certificate removed" in r.text and "wallbox-gw.example" not in r.text
    server_fp = re.compile(r'id="server-cert".*?class="fp">([^<]+)<', re.S)
    old = server_fp.search(r.text).group(1)
    r = client.post("/certs/regenerate", data={"csrf_token": tok}, follow_redirects=True)
    assert "onboard certificate regenerated" in r.text
    assert server_fp.search(r.text).group(1) != old


def test_unknown_pages_and_oversized_uploads_get_plain_answers(logged_in):
    client, tok = logged_in
    r = client.get("/api/nothing")
    assert r.status_code == 404 and "not found" in r.json["error"]
    assert client.get("/devices/nothing").status_code == 404
    r = client.post("/certs/ca", data={"csrf_token": tok, "cert": (io.BytesIO(b"x" * (2 * 1024 * 1024)), "big.pem")},
                    content_type="multipart/form-data")
    assert r.status_code == 413 and "Traceback" not in r.text


def test_the_forms_cover_every_device_setting_of_the_spec():
    from appliance.config import _spec
    from appliance.webapp.fields import DEVICE_KEYS, section_fields

    spec_keys = set(_spec()["devices"]["__many__"].scalars) - {"type"}
    assert spec_keys == set().union(*DEVICE_KEYS.values())
    lm = {f.key for f in section_fields("load_management")}
    assert lm == set(_spec()["load_management"].scalars)


def test_a_failed_save_gives_a_message_and_the_app_keeps_serving(logged_in, rt):
    """A full flash disk, made real with a file-size limit on this process (works as root too)."""
    client, tok = logged_in
    before = rt.config.path.read_bytes()
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # then write() fails with EFBIG
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, old_limit[1]))
    try:
        r = client.post("/api/devices", json={"name": "x", "type": "ocpp16", "address": "X"},
                        headers={"X-CSRF-Token": tok})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert r.status_code == 500 and r.json["error"].startswith("not saved: File too large"), r.json
    assert rt.config.path.read_bytes() == before
    assert [d["name"] for d in client.get("/api/status").json["configured"]] == ["garage"]
    assert client.post("/api/devices", json={"name": "x", "type": "ocpp16", "address": "X"},
                       headers={"X-CSRF-Token": tok}).status_code == 201


@pytest.mark.parametrize("target, lands", [("/settings/", "/settings/"), ("//evil.example/", "/"),
                                           ("/\\evil.example/", "/"), ("https://evil.example/", "/")])
def test_login_goes_back_only_to_pages_of_this_site(logged_in, app, target, lands):
    c = app.test_client()
    tok = token_of(c.get("/login").text)
    r = c.post("/login?next=" + urllib.parse.quote(target), data={"password": PASSWORD, "csrf_token": tok})
    assert r.status_code == 302 and r.headers["Location"] == lands


def test_meter_and_power_brain_forms_write_only_their_own_keys(logged_in, rt):
    client, tok = logged_in
    form = {"csrf_token": tok, "name": "grid", "type": "sdm630", "port": "tcp://127.0.0.1:5020", "unit": "2",
            "role": "grid", "factor": "-1", "active": "true", "keep_connection": "true",
            "address": "ignored-for-meters"}
    assert client.post("/devices/new", data=form).status_code == 302
    written = dict(rt.config.data["devices"]["grid"])
    assert written["factor"] == -1 and written["unit"] == 2 and written["address"] == ""   # default: not written
    assert "address" not in rt.config.path.read_text().split("[[grid]]")[1]
    form = {"csrf_token": tok, "name": "pb", "type": "powerbrain", "port": "/dev/ttyUSB0,9600,8,n,1",
            "failsafe_current": "6", "failsafe_timeout": "70000", "active": "true"}
    r = client.post("/devices/new", data=form)
    assert r.status_code == 400 and "70000 is too big: at most 65535" in r.text
    assert "pb" not in config.load(rt.config.path).devices()
