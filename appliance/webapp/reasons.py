"""Why a box does what it does, in an operator's words and the reader's language, with durations.

One vocabulary for every kind of box: the page's tiles, the console and /api/status ("why") all use
`explain`, fed from a device's status (/api/status "devices") and load management's allocation for it.
The box's own state comes first (unreachable, fault, not set up); then load management's reason.
"""
from __future__ import annotations

import re
import time
from typing import Any

from appliance.boxactions import OVERRIDE_WORDS
from appliance.i18n import N_, _, fmt_duration, fmt_number, fmt_time

# load management's reasons (appliance/lm/engine.py, safety.py) -> words; the engine's texts are stable
LM_WORDS = {
    "no car": N_("no car plugged in"),
    "inactive": N_("switched off on the Devices page"),
    "uncontrollable": N_("does not take our limits"),
    "draws more than commanded": N_("draws more than it was given"),
    "pause after stop": N_("paused (minimum pause)"),
    "min current + offset above max current": N_("min current + offset is above max current: check its settings"),
    "phase imbalance": N_("waiting: the phases would be too unbalanced"),
    "max current": N_("at its maximum current"),
    "unused current": N_("the car takes less than offered"),
    "wallbox line limit": N_("the wallbox line is at its limit"),
    "safety: paused": N_("paused by the safety check"),
    "grid operator limit": N_("the grid operator's limit (§14a EnWG) applies"),
    "gave way to a waiting car": N_("its turn is over: gave way to a waiting car"),
    "not drawing: gave way to a waiting car": N_("takes nothing (full?): gave way to a waiting car"),
    "switching to 1 phase": N_("switching to one phase"),
    "switching to 3 phases": N_("switching to three phases"),
}
_PAUSED = re.compile(r"^pause after stop \((.+)\)$")
_HELD = re.compile(r"^(.+); held, no pause \((.+)\)$")
_WAITING = re.compile(r"^waiting: not enough current on L(\d)$")
_PHASE_LIMIT = re.compile(r"^L(\d) limit$")
_COUNTED = re.compile(r"^(.+): counted at ([\d.]+) A$")


def clock(ts: float | None) -> str:
    """12:03 today, else the date and time."""
    if ts is None:
        return ""
    if time.strftime("%Y%m%d", time.localtime(ts)) == time.strftime("%Y%m%d"):
        return time.strftime("%H:%M", time.localtime(ts))
    return fmt_time(ts)[:-3]


def lm_words(reason: str, alloc: dict[str, Any]) -> str:
    """Load management's reason for one box, with the pause left and the next turn."""
    m = _WAITING.match(reason)
    if m:
        text = _("waiting: L%(n)s at its limit", n=m.group(1))
        if alloc.get("next_turn_s") is not None:
            text += "; " + _("next turn in %(min)d min", min=max(1, round(alloc["next_turn_s"] / 60)))
        return text
    m = _PHASE_LIMIT.match(reason)
    if m:
        return _("L%(n)s at its limit", n=m.group(1))
    m = _COUNTED.match(reason)
    if m:
        return _("%(why)s: counted at %(a)s A", why=lm_words(m.group(1), {}), a=fmt_number(float(m.group(2))))
    m = _HELD.match(reason)
    if m:
        return lm_words(m.group(1), alloc) + "; " + _("held for a moment, no pause (%(why)s)", why=m.group(2))
    m = _PAUSED.match(reason)
    if m or reason == "pause after stop":
        text = _("paused %(left)s (minimum pause)", left=fmt_duration(alloc["pause_left_s"])) \
            if alloc.get("pause_left_s") else _(LM_WORDS["pause after stop"])
        return f"{text}: {lm_words(m.group(1), {})}" if m else text
    return _(LM_WORDS[reason]) if reason in LM_WORDS else reason


def explain(d: dict[str, Any], alloc: dict[str, Any] | None, setup_error: str = "") -> str:
    """One line for a tile: `d` is a device of /api/status (or a configured one that is not running)."""
    alloc = alloc or {}
    state = d.get("state")
    if d.get("active") is False:
        return _("switched off on the Devices page")
    override = d.get("override") or {}
    if override.get("kind") in OVERRIDE_WORDS and state not in ("offline", "error", "not_running"):
        text = _(OVERRIDE_WORDS[override["kind"]])
        if override.get("left_s") is not None:
            text = _("%(what)s, %(left)s left", what=text, left=fmt_duration(override["left_s"]))
        elif override["kind"] == "charge_now":
            text = _("%(what)s until unplugged", what=text)
        reason = (alloc or {}).get("reason", "")
        if override["kind"] == "charge_now" and reason and reason != "max current":
            text += "; " + lm_words(reason, alloc or {})   # what still holds it back (the grid limit)
        return text
    if state == "not_running":
        return _("not running: %(why)s", why=setup_error) if setup_error else _("not running: see the log")
    if state == "offline" or d.get("online") is False:
        since = clock(d.get("offline_since"))
        text = _("not reachable since %(time)s", time=since) if since else _("not reachable")
        return f"{text}: {d['error']}" if d.get("error") else text
    if state == "error":
        return d.get("error") or d.get("error_code") or _("the box reports a fault")
    if state == "car_connected" and d.get("ocpp_status") == "Preparing" and d.get("transaction") is None:
        return _("waiting for authorisation (RFID card or app)")
    if d.get("error"):
        return d["error"]
    reason = alloc.get("reason") or d.get("reason") or ""
    if reason:
        return lm_words(reason, alloc)
    if state == "charging" and alloc.get("current") is None and alloc:
        return _("monitor mode: not controlled")
    return ""
