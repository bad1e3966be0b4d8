"""Settings page: load management, OCPP server, web server, admin password."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, render_template, request

from appliance.config import ConfigError
from appliance.i18n import N_, _
from appliance.webapp import changes
from appliance.webapp.fields import SECRETS, public_values, section_fields

bp = Blueprint("settings", __name__, url_prefix="/settings")

SECTIONS = {
    "load_management": N_("Load management"),
    "ocpp_server": N_("OCPP server"),
    "modbus": N_("Modbus"),
    "gateway": N_("OCPP gateway"),
    "web": N_("Web page"),
}
LIVE_NOTE = {
    "load_management": N_("Applied from the next control cycle."),
    "ocpp_server": N_("The OCPP server reads these when it starts: a change applies after a restart of the "
                   "appliance."),
    "modbus": N_("Read when the Modbus buses start: a change applies after a restart of the appliance."),
    "gateway": N_("A change applies after a restart of the appliance."),
    "web": N_("Port and bind address need a restart of the appliance."),
}


def _rt() -> Any:
    return current_app.config["RUNTIME"]


def _page(errors: dict[str, dict[str, str]] | None = None, shown: dict[str, dict] | None = None,
          notes: dict[str, str] | None = None, status: int = 200):
    rt = _rt()
    sections = []
    for key, title in SECTIONS.items():
        values = public_values((shown or {}).get(key) or rt.config.section(key))
        sections.append({"key": key, "title": title, "fields": section_fields(key), "vals": values,
                         "errors": (errors or {}).get(key, {}), "note": LIVE_NOTE[key],
                         "result": (notes or {}).get(key)})
    return render_template("settings.html", sections=sections), status


@bp.get("/")
def index():
    return _page()


@bp.post("/<section>")
def save(section: str):
    if section not in SECTIONS:
        abort(404)
    fields = section_fields(section)
    try:
        restart = changes.save_section(_rt(), section, request.form, fields)
    except ConfigError as e:
        shown = {f.key: request.form.get(f.key, "") for f in fields if f.key not in SECRETS}
        for f in fields:
            if f.kind == "boolean":
                shown[f.key] = f.key in request.form
        shown.update({k: v for k, v in _rt().config.section(section).items() if k in SECRETS})
        at = e.key if e.key in {f.key for f in fields} else "_"
        return _page({section: {at: changes.field_message(e, fields)}}, {section: shown}, status=400)
    note = _("Saved.") + (" " + _("Restart the appliance to apply: %(keys)s.", keys=", ".join(restart))
                          if restart else "")
    return _page(notes={section: note})
