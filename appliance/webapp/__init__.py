"""The Flask app: the local web page and the JSON API, one blueprint per area."""
from __future__ import annotations

import datetime
import logging
import sys
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("ampgate.web")

def _web_dir() -> Path:
    """Templates and static files: next to a checkout, else where an installed package put them."""
    for d in (Path(__file__).resolve().parents[2] / "web", Path(sys.prefix) / "share" / "ampgate" / "web"):
        if (d / "templates").is_dir():
            return d
    return Path(__file__).resolve().parents[2] / "web"


WEB_DIR = _web_dir()
MAX_UPLOAD = 1024 * 1024


def create_app(runtime: Any) -> Flask:
    """App factory; `runtime` is an appliance.runtime.Runtime (no globals tests must patch)."""
    from appliance.webapp import api, auth, certs, dashboard, devices, records, settings

    app = Flask("ampgate", template_folder=str(WEB_DIR / "templates"), static_folder=str(WEB_DIR / "static"))
    app.config.update(
        RUNTIME=runtime,
        SECRET_KEY=auth.load_secret(runtime.data_dir),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="ampgate_session",
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(days=30),
        MAX_CONTENT_LENGTH=MAX_UPLOAD,
        JSON_SORT_KEYS=False,
    )
    auth.install(app)
    for bp in (api.api, dashboard.bp, devices.bp, settings.bp, certs.bp, records.bp):
        app.register_blueprint(bp)
    app.jinja_env.filters["datetime"] = _fmt_ts
    app.jinja_env.filters["num"] = _fmt_num
    app.after_request(_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _crash)
    return app


def _answer(status: int, message: str):
    if request.path.startswith("/api/"):
        return jsonify(error=message), status
    return render_template("error.html", message=message), status


def _http_error(e: HTTPException):
    if e.code and e.code < 400:
        return e
    return _answer(e.code or 500, e.description or e.name)


def _crash(e: Exception):
    """A bug must not show a traceback to the user; it is logged once with the request it broke."""
    if isinstance(e, OSError):   # e.g. a read-only or full disk: say what could not be done
        log.error("web: %s %s: %s", request.method, request.path, e)
        return _answer(500, f"not saved: {e.strerror or e} ({e.filename or 'file'})")
    log.exception("web: %s %s failed", request.method, request.path)
    return _answer(500, f"internal error ({type(e).__name__}); the appliance log has the details")


def _fmt_ts(ts: float | None) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _fmt_num(v: Any) -> Any:
    """16.0 -> 16 in form fields; anything else (including what a user typed) unchanged."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _headers(resp):
    """Nothing from elsewhere: no framing, no foreign scripts (the box has no internet anyway)."""
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                            "frame-ancestors 'none'; form-action 'self'")
    return resp
