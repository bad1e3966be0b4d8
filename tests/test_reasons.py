"""A reason on every tile: load management's and the boxes' states in an operator's words, with
durations, in German and English; the same words for OCPP and Power Brain boxes; tiles in a stable order."""
from __future__ import annotations

import time

import gevent
import pytest

from appliance import config, i18n
from appliance.lm import engine
from appliance.runtime import Runtime
from appliance.webapp import create_app
from appliance.webapp.reasons import LM_WORDS, explain


@pytest.fixture(autouse=True)
def english():
    i18n.set_language("en")
    yield
    i18n.set_language("en")


def test_every_engine_reason_has_operator_words():
    for name in ("IDLE", "INACTIVE", "UNCONTROLLABLE", "OVERDRAWING", "PAUSE", "MIN_ABOVE_MAX", "IMBALANCE",
                 "AT_MAX", "UNUSED", "GRID_OPERATOR", "TURN_OVER", "IDLE_TURN"):
        assert getattr(engine, name) in LM_WORDS, name


@pytest.mark.parametrize("kind", ["ocpp16", "powerbrain"])
def test_waiting_with_the_phase_and_the_next_turn(kind):
    d = {"type": kind, "state": "car_connected", "online": True}
    alloc = {"reason": f"{engine.NO_CURRENT} L1", "current": 0, "next_turn_s": 420}
    assert explain(d, alloc) == "waiting: L1 at its limit; next turn in 7 min"
    i18n.set_language("de")
    assert explain(d, alloc) == "wartet: L1 an der Grenze; an der Reihe in 7 min"


def test_pause_with_the_time_left():
    d = {"type": "powerbrain", "state": "paused", "online": True}
    assert explain(d, {"reason": engine.PAUSE, "pause_left_s": 252}) == "paused 4:12 (minimum pause)"
    i18n.set_language("de")
    assert explain(d, {"reason": engine.PAUSE, "pause_left_s": 252}) == "pausiert 4:12 (Mindestpause)"


def test_pause_says_why_it_stopped_and_a_held_car_says_it_is_no_pause():
    d = {"type": "powerbrain", "state": "paused", "online": True}
    paused = {"reason": f"{engine.PAUSE} ({engine.TURN_OVER})", "pause_left_s": 252}
    assert explain(d, paused) == "paused 4:12 (minimum pause): its turn is over: gave way to a waiting car"
    held = {"reason": f"{engine.NO_CURRENT} L2; {engine.HELD} (new uncontrollable)"}
    assert explain(d, held) == "waiting: L2 at its limit; held for a moment, no pause (new uncontrollable)"
    assert explain(d, {"reason": "switching to 1 phase"}) == "switching to one phase"
    i18n.set_language("de")
    assert explain(d, paused).startswith("pausiert 4:12 (Mindestpause): seine Zeit ist um")


def test_counted_boxes_name_the_reason_and_the_current():
    d = {"type": "ocpp16", "state": "charging", "online": True}
    assert explain(d, {"reason": f"{engine.UNCONTROLLABLE}: counted at 16 A"}) == \
        "does not take our limits: counted at 16 A"
    i18n.set_language("de")
    assert explain(d, {"reason": f"{engine.OVERDRAWING}: counted at 16.5 A"}) == \
        "zieht mehr als freigegeben: mit 16,5 A eingerechnet"


def test_box_state_comes_before_load_management():
    since = time.time() - 60
    off = {"type": "ocpp16", "state": "offline", "online": False, "offline_since": since}
    assert explain(off, {"reason": engine.IDLE}) == f"not reachable since {time.strftime('%H:%M', time.localtime(since))}"
    auth = {"type": "ocpp16", "state": "car_connected", "online": True, "ocpp_status": "Preparing", "transaction": None}
    assert explain(auth, {"reason": engine.IDLE}) == "waiting for authorisation (RFID card or app)"
    missing = {"type": "powerbrain", "state": "not_running", "active": True}
    assert explain(missing, None, "/dev/ttyUSB0 does not exist") == "not running: /dev/ttyUSB0 does not exist"
    assert explain({"state": "charging", "active": False}, None) == "switched off on the Devices page"


def test_status_api_gives_reasons_and_keeps_the_file_order(conf_file, data_dir):
    text = ("[devices]\n  [[zeta]]\n  type = ocpp16\n  address = CP9\n"
            "  [[alpha]]\n  type = powerbrain\n  port = tcp://127.0.0.1:1\n  active = false\n"
            "  [[mid]]\n  type = ocpp16\n  address = CP1\n")
    rt = Runtime(config.load(conf_file(text)), data_dir)
    try:
        rt.load_devices()
        gevent.sleep(0)
        client = create_app(rt).test_client()
        st = client.get("/api/status", headers={"Accept-Language": "de"}).json
        assert [c["name"] for c in st["configured"]] == ["zeta", "alpha", "mid"]
        why = {d["name"]: d["why"] for d in st["devices"]}
        assert why["zeta"].startswith("nicht erreichbar seit ")
        shown = {c["name"]: c.get("why") for c in st["configured"]} | why
        assert shown["alpha"] == "auf der Seite Geräte ausgeschaltet"
    finally:
        rt.close()
