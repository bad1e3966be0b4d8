"""German and English: the catalogue is complete and compiled, the page follows the browser and the
switch, numbers are read with a decimal comma (page, API, file) and shown in the reader's way."""
from __future__ import annotations

import gettext
import io
import re

import pytest

from appliance import config, i18n
from appliance.runtime import Runtime
from appliance.webapp import create_app
from tests import i18n_catalog

PLACEHOLDER = re.compile(r"%\(\w+\)[sdr]|%\(\w+\)\d*[df]")


@pytest.fixture(scope="module")
def catalogue():
    return i18n_catalog.read()


def test_every_marked_string_has_a_german_translation(catalogue):
    """Fails when a template, script or module gains a string the German catalogue lacks
    (run `make translations`, then write the German text into the .po)."""
    missing = []
    for m in i18n_catalog.extract():
        if not m.id:
            continue
        entry = catalogue.get(m.id)
        if entry is None or not i18n_catalog.translated(entry):
            missing.append(f"{m.locations[0][0]}:{m.locations[0][1]}: {m.id!r}")
    assert not missing, "no German translation for:\n" + "\n".join(missing)


def test_translations_keep_their_placeholders(catalogue):
    for m in catalogue:
        if not m.id:
            continue
        ids = [m.id] if isinstance(m.id, str) else list(m.id)
        strings = [m.string] if isinstance(m.string, str) else list(m.string)
        want = set(PLACEHOLDER.findall(ids[-1]))
        for s in strings:   # a plural's singular may leave out %(num)d ("Adopt" for one)
            got = set(PLACEHOLDER.findall(s))
            assert got == want or (len(ids) > 1 and got == want - {"%(num)d"}), f"{m.id!r} -> {s!r}"


def test_compiled_catalogue_matches_the_po(catalogue):
    """The .mo the appliance reads is the compiled .po (`make translations` writes both)."""
    fresh = gettext.GNUTranslations(io.BytesIO(i18n_catalog.compiled(catalogue)))
    with i18n_catalog.MO.open("rb") as f:
        shipped = gettext.GNUTranslations(f)
    assert shipped._catalog == fresh._catalog, "run `make translations`: the .mo is older than the .po"


def test_gettext_follows_the_context_language():
    i18n.set_language("de")
    try:
        assert i18n._("Devices") == "Geräte"
        assert i18n.ngettext("%(num)d transaction", "%(num)d transactions", 3) == "3 Ladevorgänge"
        assert i18n.fmt_number(25.5) == "25,5" and i18n.fmt_number(16.0) == "16"
    finally:
        i18n.set_language("en")
    assert i18n._("Devices") == "Devices" and i18n.fmt_number(25.5) == "25.5"


@pytest.mark.parametrize("text, value", [("25,5", "25.5"), (" 25.5 ", "25.5"), ("16", "16"), ("-3,0", "-3.0"),
                                         (",5", ".5")])
def test_decimal_comma_is_read(text, value):
    assert i18n.normalise_number(text) == value


@pytest.mark.parametrize("text", ["1.500,5", "25,5,1", "abc", "", "1e3", "16 A"])
def test_unreadable_numbers_say_how_to_write_them(text):
    with pytest.raises(i18n.NumberError, match="write it like 16 or 25.5"):
        i18n.normalise_number(text)


def test_whole_numbers_refuse_a_fraction():
    assert i18n.parse_number("16,0", integer=True) == 16
    with pytest.raises(i18n.NumberError, match="not a whole number"):
        i18n.parse_number("16,5", integer=True)


def test_times_are_local_in_the_language_format(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    import time
    time.tzset()
    try:
        i18n.set_language("de")
        assert i18n.fmt_time("2026-12-03T20:14:26Z") == "03.12.2026 21:14:26"
        i18n.set_language("en")
        assert i18n.fmt_time("2026-12-03T20:14:26Z") == "2026-12-03 21:14:26"
        assert i18n.fmt_time(None) == ""
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_console_language_from_the_environment():
    assert i18n.from_env({"LANG": "de_DE.UTF-8"}) == "de"
    assert i18n.from_env({"LANGUAGE": "de:en", "LANG": "C"}) == "de"
    assert i18n.from_env({"LANG": "fr_FR.UTF-8"}) == "en"
    assert i18n.from_env({}) == "en"


def test_decimal_comma_in_the_configuration_file(conf_file):
    cfg = config.load(conf_file("[load_management]\nmax_current_per_phase = 32,5\n"))
    assert cfg.section("load_management")["max_current_per_phase"] == 32.5
    with pytest.raises(config.ConfigError, match=r"ampgate.conf:2: \[load_management\] reserve: '1,2,3' is not a "
                                                 r"number: write it like 16 or 25.5"):
        config.load(conf_file("[load_management]\nreserve = 1,2,3\n"))


# -- the page -----------------------------------------------------------------------------------------
CONF = "[devices]\n  [[garage]]\n  type = ocpp16\n  address = CP1\n"


@pytest.fixture
def client(conf_file, data_dir):
    rt = Runtime(config.load(conf_file(CONF)), data_dir)
    app = create_app(rt)
    c = app.test_client()
    c.rt = rt
    yield c
    rt.close()


def _token(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def _login(c) -> str:
    from tests.test_web_api import PASSWORD, set_password

    assert PASSWORD
    return set_password(c)


def test_page_follows_the_browser_language(client):
    assert '<html lang="de">' in client.get("/setup", headers={"Accept-Language": "de-DE,de;q=0.9"}).text
    assert "Passwort setzen" in client.get("/setup", headers={"Accept-Language": "de-DE,de;q=0.9"}).text
    assert "Set password" in client.get("/setup", headers={"Accept-Language": "en-US"}).text
    assert "Set password" in client.get("/setup", headers={"Accept-Language": "fr"}).text


def test_switch_is_remembered_over_the_browser_language(client):
    r = client.get("/setup?lang=de", headers={"Accept-Language": "en-US"})
    assert "Passwort setzen" in r.text and "ampgate_lang=de" in r.headers["Set-Cookie"]
    assert "Passwort setzen" in client.get("/setup", headers={"Accept-Language": "en-US"}).text
    client.get("/setup?lang=en")
    assert "Set password" in client.get("/setup", headers={"Accept-Language": "de"}).text


def test_scripts_get_their_strings_in_the_page_language(client):
    _login(client)
    js = client.get("/i18n.js", headers={"Accept-Language": "de"}).text
    assert '"charging": "lädt"' in js and 'window.LANG = "de"' in js
    assert '"charging": "charging"' in client.get("/i18n.js", headers={"Accept-Language": "en"}).text


def test_every_page_renders_in_german(client):
    _login(client)
    client.get("/?lang=de")
    for path, word in [("/", "Netzlast je Phase"), ("/devices/", "Geräte"), ("/devices/garage", "Höchststrom"),
                       ("/devices/new?type=powerbrain", "Notlaufstrom"), ("/settings/", "Lastmanagement"),
                       ("/certs/", "Serverzertifikat"), ("/transactions", "Ladevorgänge"),
                       ("/log", "Ereignisprotokoll")]:
        r = client.get(path)
        assert r.status_code == 200 and word in r.text, path


def test_api_errors_in_the_callers_language(client):
    _login(client)
    r = client.get("/api/transactions?limit=x", headers={"Accept-Language": "de"})
    assert r.status_code == 400 and r.json["error"] == "limit: muss eine ganze Zahl sein"
    assert client.get("/api/transactions?limit=x").json["error"] == "limit: must be a whole number"


def test_decimal_comma_on_the_page_and_the_api(client):
    tok = _login(client)
    r = client.post("/settings/load_management", data={"csrf_token": tok, "max_current_per_phase": "40,5"})
    assert r.status_code == 200, r.text
    assert client.rt.config.section("load_management")["max_current_per_phase"] == 40.5
    r = client.post("/settings/load_management?lang=de", data={"csrf_token": tok, "reserve": "1.500,5"})
    assert r.status_code == 400 and "ist keine Zahl: bitte wie 16 oder 25,5 schreiben" in r.text
    r = client.put("/api/devices/garage", json={"max_current": "12,5"}, headers={"X-CSRF-Token": tok})
    assert r.status_code == 200 and r.json["device"]["max_current"] == 12.5
    r = client.put("/api/devices/garage", json={"connector": "1,5"}, headers={"X-CSRF-Token": tok})
    assert r.status_code == 400 and r.json["error"] == "connector: '1,5' ist keine ganze Zahl: bitte wie 16 schreiben"


def test_allowed_values_are_named(client):
    tok = _login(client)
    r = client.post("/settings/load_management", data={"csrf_token": tok, "mode": "turbo"})
    assert r.status_code == 400 and "&#39;turbo&#39; is not one of: active, monitor" in r.text
