"""System page: version and uptime, restart, backup and restore, log download."""
from __future__ import annotations

import platform
import sys
import time
from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for

from appliance import __version__, backup
from appliance.i18n import _, fmt_duration, fmt_time
from appliance.webapp.records import stamp

bp = Blueprint("system", __name__, url_prefix="/system")
LOG_ROWS = 100000


def _rt() -> Any:
    return current_app.config["RUNTIME"]


def who() -> str:
    """Who did it, for the event log: the page's user or a script, and from where."""
    from flask import g

    return f"{'API' if getattr(g, 'auth', None) == 'basic' else 'web page'} from {request.remote_addr}"


@bp.get("/")
def index():
    return _page()


def _page(modbus: dict[str, Any] | None = None, status: int = 200):
    from appliance.modbus.tool import configured_ports

    rt = _rt()
    up = time.time() - rt.started
    facts = [(_("Version"), f"Ampgate {__version__}"), (_("Running since"), fmt_time(rt.started)),
             (_("Uptime"), fmt_duration(up)), (_("Configuration file"), str(rt.config.path or "")),
             (_("Data directory"), str(rt.data_dir)),
             ("Python", f"{platform.python_version()} ({sys.platform})")]
    return render_template("system.html", facts=facts, can_restart=getattr(rt, "restart", None) is not None,
                           ports=configured_ports(rt.config.devices()), modbus=modbus or {"form": {}}), status


@bp.post("/modbus")
def modbus():
    """The Modbus tool's form: read (no value) or write one register; the answer is shown below it."""
    from appliance.modbus import tool

    rt = _rt()
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    try:
        answer = tool.run(form, rt.config.devices(), rt.config.section("modbus"))
    except tool.ToolError as e:
        return _page({"form": form, "error": str(e)}, 400)
    if answer["done"] == "write":
        rt.events.info(f"Modbus tool: {form.get('port')} unit {form.get('unit')} register {form.get('address')} "
                       f"written {answer['hex']} (by {who()})")
    return _page({"form": form, "answer": answer})


@bp.post("/restart")
def restart():
    rt = _rt()
    if getattr(rt, "restart", None) is None:
        flash(_("this process cannot restart itself (started without `ampgate run`)"), "error")
        return redirect(url_for("system.index"))
    rt.events.info(f"restart asked on the web page (by {who()})")
    rt.restart()
    return render_template("restarting.html")


@bp.post("/backup")
def make_backup():
    rt = _rt()
    password = request.form.get("password", "")
    blob = backup.make(rt.config.path, rt.data_dir, password)
    rt.events.info(f"backup downloaded{' (encrypted)' if password else ''} (by {who()})")
    name = f"ampgate-backup-{stamp()}.{'agb' if password else 'tar.gz'}"
    return Response(blob, mimetype="application/octet-stream",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


@bp.post("/restore")
def restore():
    rt = _rt()
    f = request.files.get("backup")
    blob = f.read(backup.MAX_BYTES + 1) if f and f.filename else b""
    if not blob:
        flash(_("restore: choose the backup file"), "error")
        return redirect(url_for("system.index"))
    try:
        files = backup.restore(blob, rt.config.path, rt.data_dir, request.form.get("password", ""))
    except backup.BackupError as e:
        flash(_("not restored, nothing was changed: %(why)s", why=e), "error")
        return redirect(url_for("system.index"))
    rt.events.info(f"backup restored: {', '.join(files)} (by {who()})")
    flash(_("restored: %(files)s. Restart the appliance to use all of it.", files=", ".join(files)), "ok")
    return redirect(url_for("system.index"))


@bp.get("/log.txt")
def log_download():
    """The whole event log as text, oldest first, in local time (for a support request)."""
    rows = reversed(_rt().store.events(limit=LOG_ROWS))
    lines = [f"{fmt_time(e['ts'])}  {e['level']:<7} {e.get('device') or '-':<14} {e['message']}" for e in rows]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; charset=utf-8",
                    headers={"Content-Disposition": f"attachment; filename=ampgate-log-{stamp()}.txt"})
