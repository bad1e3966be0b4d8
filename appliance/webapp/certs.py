"""Certificates page: show, upload server cert + key, CA list, client cert, regenerate onboard.

The work is done by appliance.certs.manage (shared with `ampgate cert`); this page only moves files
between the browser and those functions and shows their CertError messages.
"""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from appliance.i18n import N_, _

bp = Blueprint("certs", __name__, url_prefix="/certs")

MAX_PEM = 256 * 1024


def _manage() -> Any:
    try:
        from appliance.certs import manage
    except ImportError:
        return None
    return manage


def _rt() -> Any:
    return current_app.config["RUNTIME"]


@bp.get("/")
def index():
    manage = _manage()
    info, error = None, None
    if manage is None:
        error = _("certificate management is not available in this build")
    else:
        try:
            info = manage.show(_rt().data_dir)
        except manage.CertError as e:
            error = str(e)
    return render_template("certs.html", info=info, error=error)


def _file(field: str, required: bool = True) -> bytes | None:
    f = request.files.get(field)
    data = f.read(MAX_PEM + 1) if f and f.filename else b""
    if not data:
        data = (request.form.get(field + "_text") or "").encode()
    if len(data) > MAX_PEM:
        raise ValueError(_("%(field)s: file too large (max %(kib)d KiB)", field=field, kib=MAX_PEM // 1024))
    if required and not data.strip():
        raise ValueError(_("%(field)s: choose a PEM file or paste its text", field=field))
    return data or None


# what each action says: done (and logged, in English), or not done with the reason
ACTIONS = {
    "server": (N_("server certificate imported"), N_("server certificate not imported: %(why)s")),
    "client": (N_("client certificate imported"), N_("client certificate not imported: %(why)s")),
    "remove_client": (N_("client certificate removed"), N_("client certificate not removed: %(why)s")),
    "add_ca": (N_("CA certificate added"), N_("CA certificate not added: %(why)s")),
    "remove_ca": (N_("CA certificate removed"), N_("CA certificate not removed: %(why)s")),
    "regenerate": (N_("onboard certificate regenerated"), N_("onboard certificate not regenerated: %(why)s")),
}


def _do(what: str, action: Callable[[Any], Any]):
    """Run one certificate action; report its CertError as a message, never a traceback."""
    done, failed = ACTIONS[what]
    manage = _manage()
    if manage is None:
        flash(_("certificate management is not available in this build"), "error")
        return redirect(url_for("certs.index"))
    try:
        action(manage)
    except (ValueError, manage.CertError) as e:
        flash(_(failed, why=e), "error")
    else:
        _rt().events.info(f"certificates: {done} on the web page")
        flash(_(done), "ok")
    return redirect(url_for("certs.index"))


@bp.post("/server")
def server():
    return _do("server", lambda m: m.import_server(
        _rt().data_dir, _file("cert"), _file("key"), request.form.get("key_password") or None))


@bp.post("/client")
def client():
    return _do("client", lambda m: m.import_client(
        _rt().data_dir, _file("cert"), _file("key"), request.form.get("key_password") or None))


@bp.post("/client/delete")
def remove_client():
    return _do("remove_client", lambda m: m.remove_client(_rt().data_dir))


@bp.post("/ca")
def add_ca():
    return _do("add_ca", lambda m: m.add_ca(_rt().data_dir, _file("cert")))


@bp.post("/ca/<fingerprint>/delete")
def remove_ca(fingerprint: str):
    return _do("remove_ca", lambda m: m.remove_ca(_rt().data_dir, fingerprint))


@bp.post("/regenerate")
def regenerate():
    return _do("regenerate", lambda m: m.regenerate(_rt().data_dir))
