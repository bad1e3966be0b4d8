"""JSON API (interfaces.md): status, devices, transactions, load history."""
from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from appliance import boxactions
from appliance.config import ConfigError
from appliance.i18n import _
from appliance.webapp import changes, reasons
from appliance.webapp.fields import public_values

api = Blueprint("api", __name__, url_prefix="/api")

HISTORY_MAX_S = 6 * 3600


def _rt() -> Any:
    return current_app.config["RUNTIME"]


def _error(e: ConfigError, status: int = 400):
    return jsonify(error=str(e), field=e.key), status


def _not_found(name: str):
    return jsonify(error=_("no device named %(name)r", name=name), field="name"), 404


def _body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise ConfigError(_("body: send a JSON object (Content-Type: application/json)"), key="body")
    return body


def device_list(rt: Any) -> list[dict[str, Any]]:
    """Configured devices with every setting (defaults filled in), secrets only as *_set flags."""
    return [{"name": name, **public_values(settings)} for name, settings in rt.config.devices().items()]


@api.get("/status")
def status():
    return jsonify(status_with_reasons(_rt()))


def status_with_reasons(rt: Any) -> dict[str, Any]:
    """The runtime's status plus, per device, `why` in the caller's language; the configured devices in
    the file's order (the page's tile order), those not running with their state and reason."""
    st = rt.status()
    st["reserve_a"] = rt.config.section("load_management")["reserve"]
    allocs = (st.get("load_management") or {}).get("allocations") or {}
    running = {d["name"]: d for d in st["devices"]}
    for d in st["devices"]:
        d["why"] = reasons.explain(d, allocs.get(d["name"]))
    st["configured"] = []
    for c in (dict(d) for d in configured(rt)):
        if c["name"] not in running:
            c["state"] = "not_running" if c["active"] else "disabled"
            c["why"] = reasons.explain(c, None, rt.setup_errors.get(c["name"], ""))
        st["configured"].append(c)
    return st


_configured: list = [None, []]   # [the configuration object it was made from, the list]


def configured(rt: Any) -> list[dict[str, Any]]:
    """The configured devices as the status lists them (callers copy before adding to an entry).
    Made again only when the configuration changed (every change makes a new configuration
    object): reading 200 device sections with their defaults was most of a status request's 12 ms."""
    data = rt.config.data
    if _configured[0] is not data:
        _configured[:] = [data, [{"name": d["name"], "type": d["type"], "label": d.get("label", ""),
                                  "active": d["active"], "address": where(d), "max_current": d["max_current"],
                                  "phases": d["phases"]} for d in device_list(rt)]]
    return _configured[1]


def where(d: dict[str, Any]) -> str:
    """How the device is reached, as the page shows it: "CP1 #1" or "tcp://10.0.0.5:502 id 1"."""
    return f"{d['address']} #{d['connector']}" if d["type"] == "ocpp16" else f"{d['port']} id {d['unit']}"


@api.get("/devices")
def devices():
    return jsonify(devices=device_list(_rt()))


@api.post("/devices")
def add_device():
    rt = _rt()
    try:
        body = _body()
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise ConfigError(_("name: required"), key="name")
        changes.save_device(rt, name, changes.from_json(body, None), create=True)
    except ConfigError as e:
        return _error(e, 409 if isinstance(e, changes.Exists) else 400)
    return jsonify(device=_one(rt, name)), 201


@api.put("/devices/<name>")
def change_device(name: str):
    rt = _rt()
    try:
        values = changes.from_json(_body(), changes.device_explicit(rt, name))
        changes.save_device(rt, name, values, create=False)
    except changes.NotFound:
        return _not_found(name)
    except ConfigError as e:
        return _error(e)
    return jsonify(device=_one(rt, name))


@api.delete("/devices/<name>")
def delete_device(name: str):
    try:
        changes.remove_device(_rt(), name)
    except changes.NotFound:
        return _not_found(name)
    except ConfigError as e:
        return _error(e)
    return jsonify(deleted=name)


def _one(rt: Any, name: str) -> dict[str, Any]:
    return next(d for d in device_list(rt) if d["name"] == name)


@api.post("/devices/<name>/action")
def device_action(name: str):
    """{"action": "charge_now" | "pause" | "resume" | "stop" | "unlock", "minutes": N (charge_now, optional)}"""
    from appliance.webapp.system import who

    try:
        body = _body()
        if not isinstance(body, dict):
            raise ConfigError(_("body: expected a JSON object"), key="body")
        message = boxactions.run(_rt(), name, str(body.get("action", "")), who(), body.get("minutes"))
    except ConfigError as e:
        return _error(e)
    except boxactions.ActionError as e:
        status = 404 if name not in _rt().config.devices() else 409
        return jsonify(error=str(e), field="action"), status
    return jsonify(done=True, message=message)


@api.post("/restart")
def restart():
    """The console's `restart` where no service manager is at hand: the process starts itself again."""
    from appliance.webapp.system import who

    rt = _rt()
    try:
        _body()   # JSON only: a cross-site form (with cached Basic credentials) cannot restart us
    except ConfigError as e:
        return _error(e)
    if getattr(rt, "restart", None) is None:
        return jsonify(error=_("this process cannot restart itself (started without `ampgate run`)")), 409
    rt.events.info(f"restart asked (by {who()})")
    rt.restart()
    return jsonify(restarting=True)


@api.post("/modbus")
def modbus_tool():
    """Read or write one register: {"port", "unit", "address", "bits": 16|32, "signed", "scale",
    "kind": "holding"|"input", "value": to write (absent: read), "confirm_flash"}."""
    from appliance.modbus import tool
    from appliance.webapp.system import who

    rt = _rt()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error=_("body: send a JSON object (Content-Type: application/json)"), field="body"), 400
    try:
        answer = tool.run(body, rt.config.devices(), rt.config.section("modbus"))
    except tool.ToolError as e:
        return jsonify(error=str(e)), 400
    if answer["done"] == "write":
        rt.events.info(f"Modbus tool: {body.get('port')} unit {body.get('unit')} register {body.get('address')} "
                       f"written {answer['hex']} (by {who()})")
    return jsonify(answer)


@api.get("/transactions")
def transactions():
    args = request.args
    try:
        limit = int(args.get("limit", 1000))
    except ValueError:
        return jsonify(error=_("limit: must be a whole number"), field="limit"), 400
    rows = _rt().store.transactions(device=args.get("device") or None, since=args.get("since") or None,
                                    until=args.get("until") or None, limit=limit)
    # interfaces.md names the tag "idTag" (as OCPP does); id_tag stays for the page and older scripts
    return jsonify(transactions=[{**r, "idTag": r["id_tag"]} for r in rows])


@api.get("/history")
def history():
    """Load-management history for the dashboard plot: the last `hours` (default 3)."""
    try:
        hours = float(request.args.get("hours", 3))
    except ValueError:
        return jsonify(error=_("hours: must be a number"), field="hours"), 400
    since = time.time() - min(max(hours, 0.01) * 3600, HISTORY_MAX_S)
    return jsonify(now=time.time(), points=_rt().store.history(since))


def _grid_limit_answer(rt: Any) -> Any:
    from appliance.lm.grid_limit import GRID_LIMIT
    ctl = rt.lm_controller
    state = ctl.grid_limit.status() if ctl is not None else {"active": False}
    cfg = rt.config.section("load_management")
    log = [{"ts": e["ts"], "message": e["message"]} for e in rt.store.events(limit=500, device=GRID_LIMIT)]
    api_signal = ctl.grid_limit.api_on if ctl is not None else False
    return jsonify(**state, api_signal=api_signal, source=cfg["grid_limit_source"], kw_per_device=cfg["grid_limit_kw_per_device"],
                   log=log)


@api.get("/grid-limit")
def grid_limit():
    """The grid operator's limit (§14a EnWG): whether it is on, and every activation (start, end)."""
    return _grid_limit_answer(_rt())


@api.post("/grid-limit")
def set_grid_limit():
    """{"active": true|false}: the operator's signal, when `grid_limit_source = api`. Stored first."""
    rt = _rt()
    try:
        body = _body()
        active = body.get("active") if isinstance(body, dict) else None
        if not isinstance(active, bool):
            raise ConfigError(_("active: true or false"), key="active")
        if rt.config.section("load_management")["grid_limit_source"] != "api":
            raise ConfigError(_("grid_limit_source: set it to api to switch the limit over the API"),
                              key="grid_limit_source")
    except ConfigError as e:
        return _error(e, 409 if e.key == "grid_limit_source" else 400)
    if rt.lm_controller is None:
        return jsonify(error=_("load management is not running")), 503
    rt.lm_controller.grid_limit.set_api(active)
    rt.lm_controller.trigger()
    return _grid_limit_answer(rt)
