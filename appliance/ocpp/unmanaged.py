"""Stations nobody adopted (yet): held at 0 A and counted until they are (charging-manager.md §2.7).

A station that connects without a configured device gets a zero TxDefaultProfile on connector 0 (every
connector; a configured connector's own profile beats it, ocpp16.md §8), after the stale transaction
and connector profiles that could beat it are cleared. Until the station confirmed that, it is
`held = False`: while a car is connected it is counted at the connection limit (`UNMANAGED_` Evse
entries the controller adds), so a station that refuses the profile keeps the others from overloading
the connection. Its entry in `runtime.unconfigured` says which.
"""
from __future__ import annotations

import logging
from typing import Any

from appliance.devices.ocpp_evse import STACK_LEVEL, tx_default_profile
from appliance.lm.model import Evse
from appliance.ocpp.actions import Status
from appliance.ocpp.errors import CallFailed

log = logging.getLogger("ampgate.ocpp")

PREFIX = "unmanaged:"   # the controller's name for such a station: never a valid device name
DEMAND = {Status.PREPARING, Status.CHARGING, Status.SUSPENDED_EV, Status.SUSPENDED_EVSE}
HELD_TEXT = "unmanaged, held at 0 A"
# (unit, stack level) tried in turn: ours, then for stations whose ChargeProfileMaxStackLevel is 0 or
# that take power (W) profiles only
ATTEMPTS = (("A", STACK_LEVEL), ("A", 0), ("W", 0))


def hold(runtime: Any, session: Any, connectors: set[int] | None = None) -> bool:
    """Install the zero profile on an unadopted station; True once the station accepted it."""
    cpid = session.cpid
    entry = runtime.unconfigured.get(cpid)
    if entry is None or runtime.config.section("load_management")["mode"] == "monitor":
        return False
    entry["held"] = False
    seen = {int(c) for c in entry.get("connectors", {}) if str(c).isdigit() and int(c) > 0}
    status = ""
    for unit, level in ATTEMPTS:   # 0 A is 0 W: a station refusing one form may take the other
        try:
            status = session.call("SetChargingProfile", tx_default_profile(0, 0.0, unit, 3, level)).get("status", "")
        except CallFailed as e:
            return _not_held(runtime, cpid, f"SetChargingProfile failed: {e}")
        if status == "Accepted":
            break
    else:
        return _not_held(runtime, cpid, f"station answered {status} to our 0 A profile")
    for connector in sorted(seen | (connectors or set()) | {1}):
        for purpose in ("TxProfile", "TxDefaultProfile"):   # these would beat the connector-0 profile
            try:
                session.call("ClearChargingProfile", {"connectorId": connector, "chargingProfilePurpose": purpose})
            except CallFailed as e:
                log.info("%s: ClearChargingProfile %s on connector %s failed: %s", cpid, purpose, connector, e)
    if runtime.unconfigured.get(cpid) is entry:
        entry["held"] = True
        log.info("%s: not configured; held at 0 A until adopted", cpid)
    runtime.lm_trigger()
    return True


def _not_held(runtime: Any, cpid: str, why: str) -> bool:
    entry = runtime.unconfigured.get(cpid)
    if entry is not None:
        entry["problem"] = why
    runtime.events.warning(f"unadopted station {cpid}: {why}; while a car is connected it is counted at the "
                           "connection limit (adopt it, or switch it off)")
    runtime.lm_trigger()
    return False


def counted(runtime: Any, limit: float) -> list[Evse]:
    """What the unadopted stations may draw, for load management: nothing when held at 0 A or
    without a car; the connection limit when a car is connected (as it last said, also while it is
    away: it keeps whatever profile it had) and the hold is not confirmed."""
    out = []
    for cpid, entry in list(runtime.unconfigured.items()):
        if entry.get("held"):
            continue
        if not any(status in DEMAND for status in entry.get("connectors", {}).values()):
            continue
        out.append(Evse(PREFIX + cpid, min_current=0.0, max_current=limit, controllable=False,
                        max_possible_draw=limit, demand=True))
    return out


def shown(entry: dict[str, Any]) -> str:
    """The words for the page."""
    if entry.get("held"):
        return HELD_TEXT
    if entry.get("problem"):
        return f"unmanaged, NOT held: {entry['problem']}"
    return "unmanaged, being held at 0 A"
