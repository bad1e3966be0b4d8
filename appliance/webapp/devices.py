"""Devices page: list, add, edit, enable/disable, remove, adopt unknown OCPP stations."""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from appliance.config import ConfigError
from appliance.i18n import N_, _
from appliance.webapp import changes
from appliance.webapp.api import device_list, where
from appliance.webapp.fields import DEVICE_KEYS, GROUPS, SECRETS, TYPE_LABELS, all_device_fields, public_values

bp = Blueprint("devices", __name__, url_prefix="/devices")


def _rt() -> Any:
    return current_app.config["RUNTIME"]


@bp.get("/")
def index():
    rt = _rt()
    devices = [{**d, "where": where(d)} for d in device_list(rt)]
    unconfigured = [{**u, "conns": changes.station_connectors(u)} for u in rt.status()["unconfigured"]]
    return render_template("devices.html", devices=devices, unconfigured=unconfigured, type_labels=TYPE_LABELS,
                           ocpp_urls=ocpp_addresses(request.host))


def _form(name: str | None, kind: str, values: dict[str, Any], errors: dict[str, str], status: int = 200):
    return render_template("device_form.html", name=name, kind=kind, values=public_values(values),
                           errors=errors, fields=all_device_fields(), type_labels=TYPE_LABELS,
                           groups=GROUPS), status


@bp.route("/new", methods=["GET", "POST"])
def new():
    kind = request.values.get("type", "ocpp16")
    if kind not in DEVICE_KEYS:
        kind = "ocpp16"
    if request.method == "GET":
        return _form(None, kind, {}, {})
    name = (request.form.get("name") or "").strip()
    return _save(name, kind, {}, create=True)


@bp.route("/<name>", methods=["GET", "POST"])
def edit(name: str):
    rt = _rt()
    if name not in rt.config.data["devices"]:
        abort(404)
    old = changes.device_explicit(rt, name)
    if request.method == "GET":
        return _form(name, rt.config.devices()[name]["type"], rt.config.devices()[name], {})
    return _save(name, request.form.get("type", old.get("type", "ocpp16")), old, create=False)


def _save(name: str, kind: str, old: dict[str, Any], create: bool):
    rt = _rt()
    try:
        if not name:
            raise ConfigError(_("name: required"), key="name")
        values = changes.from_form(kind, request.form, old)
        changes.save_device(rt, name, values, create=create)
    except ConfigError as e:
        shown = {k: v for k, v in request.form.items() if k != "csrf_token"}
        for k in [k for k in shown if k.removesuffix("_clear") in SECRETS]:
            shown.pop(k)   # a typed secret is not echoed back either
        shown.update({k: v for k, v in old.items() if k in SECRETS})
        fields = all_device_fields()[kind if kind in DEVICE_KEYS else "ocpp16"]
        for f in fields:
            if f.kind == "boolean":
                shown[f.key] = f.key in request.form
        at = e.key if e.key in {f.key for f in fields} | {"name", "type"} else "_"
        return _form(None if create else name, kind, shown, {at: changes.field_message(e, fields)}, 400)
    flash(_("%(name)s: saved", name=name), "ok")
    return redirect(url_for("devices.index"))


def _act(name: str, action: Callable[[], None], done: str, failed: str):
    """Run one change from the device list and come back to it with a message either way
    (`done`/`failed`: N_-marked "%(name)s: ..." texts)."""
    try:
        action()
    except changes.NotFound:
        flash(_("%(name)s: no such device", name=name), "error")
    except ConfigError as e:
        flash(_(failed, name=name, why=_(str(e))), "error")
    else:
        flash(_(done, name=name), "ok")
    return redirect(url_for("devices.index"))


@bp.post("/<name>/delete")
def delete(name: str):
    return _act(name, lambda: changes.remove_device(_rt(), name), N_("%(name)s: removed"),
                N_("%(name)s: not removed: %(why)s"))


@bp.post("/<name>/active")
def set_active(name: str):
    active = request.form.get("active") == "true"
    if active:
        return _act(name, lambda: changes.set_active(_rt(), name, True), N_("%(name)s: enabled"),
                    N_("%(name)s: not enabled: %(why)s"))
    return _act(name, lambda: changes.set_active(_rt(), name, False), N_("%(name)s: disabled"),
                N_("%(name)s: not disabled: %(why)s"))


@bp.post("/adopt")
def adopt():
    """One station with all its connectors (or the one named)."""
    cbid = request.form.get("charge_box_id", "")
    try:
        connector = request.form.get("connector")
        names = changes.adopt(_rt(), cbid, [int(connector)] if connector else None)
    except (ValueError, ConfigError) as e:
        flash(_("%(id)s: not adopted: %(why)s", id=cbid, why=e), "error")
        return redirect(url_for("devices.index"))
    flash(_("%(id)s: adopted as %(name)s; check its settings", id=cbid, name=", ".join(names)), "ok")
    return redirect(url_for("devices.edit", name=names[0]) if len(names) == 1 else url_for("devices.index"))


@bp.post("/adopt-all")
def adopt_all():
    """Every listed station with all its connectors: a large site in one click."""
    adopted, failed = [], []
    for cbid in sorted(_rt().unconfigured):
        try:
            adopted += changes.adopt(_rt(), cbid)
        except ConfigError as e:
            failed.append(f"{cbid}: {e}")
    if adopted:
        flash(_("adopted: %(names)s; maximum current and phases are the defaults, check them", names=", ".join(adopted)),
              "ok")
    for line in failed:
        flash(_("not adopted: %(why)s", why=line), "error")
    return redirect(url_for("devices.index"))


def ocpp_addresses(host: str) -> list[str]:
    """What to type into a wallbox as its central system, with this box's name or address as the
    browser reached it, the OCPP port, and ws:// or wss:// as TLS is set."""
    server = _rt().config.section("ocpp_server")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    schemes = {"off": ["ws"], "on": ["wss"], "detect": ["ws", "wss"]}.get(server["tls"], ["ws"])
    return [f"{s}://{name}:{server['port']}/" for s in schemes]
