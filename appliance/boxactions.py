"""What an operator can do to one box from the page, the API or the console: charge now, pause,
resume, stop the session, unlock the connector. Every action is logged with who did it.

Charge now and pause are wishes to load management (Runtime.overrides), never commands that bypass it:
"charge now" puts the box first in line at its full current, and it still gets only what the grid limit
leaves; "pause" gives it 0 A. They last until resumed, until the time chosen or until the car is
unplugged, and not across a restart of the appliance (load management starts afresh then).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.i18n import N_, NumberError, _, parse_number

BOOST, PAUSE, STOP = "charge_now", "pause", "stop"
MAX_BOOST_MIN = 24 * 60


class ActionError(Exception):
    """One line for the user: why the action was not done."""


@dataclass
class Override:
    kind: str                  # BOOST | PAUSE | STOP (= paused until the car is unplugged)
    by: str
    until: float | None = None  # Unix time; None: until resumed (pause) or unplugged (charge now, stop)
    since: float = 0.0

    def public(self) -> dict[str, Any]:
        left = None if self.until is None else max(0, round(self.until - time.time()))
        return {"kind": self.kind, "by": self.by, "left_s": left}


def _device(rt: Any, name: str, evse: bool = True) -> Any:
    dev = rt.devices.get(name)
    if dev is None:
        if name in rt.config.devices():
            raise ActionError(_("%(name)s is not running (switched off or not set up)", name=name))
        raise ActionError(_("no device named %(name)r", name=name))
    if evse and not dev.is_evse:
        raise ActionError(_("%(name)s is a meter: it has no charging to control", name=name))
    return dev


def _done(rt: Any, name: str, what: str, who: str) -> None:
    rt.events.info(f"{what} (by {who})", name)
    rt.lm_trigger()


def charge_now(rt: Any, name: str, who: str, minutes: float | None = None) -> str:
    """Full current first in line, for `minutes` or (None) until the car is unplugged."""
    _device(rt, name)
    if minutes is not None and not 1 <= minutes <= MAX_BOOST_MIN:
        raise ActionError(_("charge now: give 1 to %(max)d minutes, or none for until unplugged", max=MAX_BOOST_MIN))
    until = None if minutes is None else time.time() + minutes * 60
    rt.overrides[name] = Override(BOOST, who, until, time.time())
    _done(rt, name, "charge now at full current " + (f"for {minutes:g} min" if minutes else "until unplugged"), who)
    return _("%(name)s: charges at full current first, within the grid limit", name=name)


def pause(rt: Any, name: str, who: str) -> str:
    _device(rt, name)
    rt.overrides[name] = Override(PAUSE, who, None, time.time())
    _done(rt, name, "paused by hand", who)
    return _("%(name)s: paused until resumed", name=name)


def resume(rt: Any, name: str, who: str) -> str:
    _device(rt, name)
    old = rt.overrides.pop(name, None)
    _done(rt, name, "resumed: load management decides again" if old else "resume: nothing was paused", who)
    return _("%(name)s: load management decides again", name=name)


def stop_session(rt: Any, name: str, who: str) -> str:
    """OCPP: RemoteStopTransaction. Power Brain (no remote stop): disabled until the car is unplugged."""
    dev = _device(rt, name)
    if dev.kind == "ocpp16":
        tx = dev.status().transaction
        if tx is None:
            raise ActionError(_("%(name)s: no session running", name=name))
        _call(dev, "RemoteStopTransaction", {"transactionId": tx})
        _done(rt, name, f"session {tx} stopped (RemoteStopTransaction)", who)
        return _("%(name)s: the box was asked to stop session %(tx)s", name=name, tx=tx)
    rt.overrides[name] = Override(STOP, who, None, time.time())
    _done(rt, name, "session stopped: charging disabled until the car is unplugged", who)
    return _("%(name)s: charging disabled until the car is unplugged", name=name)


def unlock(rt: Any, name: str, who: str) -> str:
    dev = _device(rt, name)
    if dev.kind != "ocpp16":
        raise ActionError(_("%(name)s: this box has no remote unlock", name=name))
    answer = _call(dev, "UnlockConnector", {"connectorId": dev.connector})
    status = answer.get("status", "")
    _done(rt, name, f"unlock asked: the box answered {status}", who)
    if status != "Unlocked":
        raise ActionError(_("%(name)s: the box answered %(status)s to the unlock", name=name, status=status))
    return _("%(name)s: connector unlocked", name=name)


def _call(dev: Any, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    session = dev.session
    if session is None:
        raise ActionError(_("%(name)s is not connected", name=dev.name))
    try:
        answer = session.call(action, payload)
    except Exception as e:   # CallFailed, timeouts, a dropped connection: one line for the user
        raise ActionError(_("%(name)s: %(action)s failed: %(why)s", name=dev.name, action=action,
                            why=str(e) or type(e).__name__)) from None
    if action == "RemoteStopTransaction" and answer.get("status") != "Accepted":
        raise ActionError(_("%(name)s: the box refused to stop (%(status)s)", name=dev.name,
                            status=answer.get("status")))
    return answer


def for_load_management(rt: Any, name: str, demand: bool) -> str | None:
    """The override load management applies this cycle (BOOST/PAUSE/STOP or None); ends those whose
    time is up or whose car left."""
    o = rt.overrides.get(name)
    if o is None:
        return None
    ended = (o.until is not None and time.time() >= o.until) or (not demand and o.kind in (BOOST, STOP))
    if ended:
        rt.overrides.pop(name, None)
        rt.events.info(f"{o.kind.replace('_', ' ')} ended " + ("(time is up)" if demand else "(car unplugged)"),
                       name)
        return None
    return o.kind


OVERRIDE_WORDS = {BOOST: N_("charge now"), PAUSE: N_("paused by hand"), STOP: N_("session stopped")}


ACTIONS = ("charge_now", "pause", "resume", "stop", "unlock")


def run(rt: Any, name: str, action: str, who: str, minutes: Any = None) -> str:
    """One action by its name (the page's buttons, the API, the console); returns the message to show."""
    if action == "charge_now":
        return charge_now(rt, name, who, _minutes(minutes))
    simple = {"pause": pause, "resume": resume, "stop": stop_session, "unlock": unlock}.get(action)
    if simple is None:
        raise ActionError(_("unknown action %(action)r: use one of %(allowed)s", action=action,
                            allowed=", ".join(ACTIONS)))
    return simple(rt, name, who)


def _minutes(value: Any) -> float | None:
    if value in (None, "", 0, "0", "until_unplugged"):
        return None
    try:
        return float(parse_number(str(value)))
    except NumberError:
        raise ActionError(_("charge now: minutes must be a number, e.g. 60")) from None
