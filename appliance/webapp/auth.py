"""Who may use the page and the API, and CSRF protection for everything that changes state.

- No password set yet (first start): the page offers only "set password"; GET requests of the API
  are open (interfaces.md), nothing can be changed until the password exists.
- Password set: the page needs a login session, the API the session or HTTP Basic auth (user `admin`).
- Every state-changing request from a session (form or fetch) must carry the session's CSRF token.
  Basic-auth requests to the API need none: a browser that cached Basic credentials could still be
  made to send a cross-site form, but the API takes only JSON bodies (which a cross-site page cannot
  send without a CORS preflight we never answer) and DELETE/PUT are never simple requests. Page
  routes want the token even with Basic auth. A foreign Origin header is refused outright.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

from flask import (Blueprint, Flask, current_app, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)
from werkzeug.security import check_password_hash

from appliance.config import ConfigError
from appliance.i18n import _
from appliance.passwords import MIN_PASSWORD, USER, make_hash

bp = Blueprint("auth", __name__)

SECRET_FILE = "web_secret"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
OPEN_ENDPOINTS = {"auth.setup", "auth.login", "static", "i18n_js"}
_FAIL_DELAY_S = 1.0


def load_secret(data_dir: Path) -> bytes:
    """The session signing key: made once, kept in the data dir readable by us only."""
    path = Path(data_dir) / SECRET_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.chmod(path, 0o600)
    return key


def _rt() -> Any:
    return current_app.config["RUNTIME"]


def password_hash() -> str:
    return _rt().config.section("web")["password_hash"]


def _hash_epoch(h: str) -> str:
    """A short tag of the current hash: a password change ends every older session."""
    return hashlib.sha256(h.encode()).hexdigest()[:16]


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _basic_ok(h: str) -> bool | None:
    """True/False for Basic credentials present, None when the request has none."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return None
    if auth.username != USER or not auth.password:
        return False
    cache = current_app.config.setdefault("BASIC_CACHE", {})
    tag = hmac.new(current_app.secret_key, f"{h}\0{auth.password}".encode(), "sha256").digest()
    if tag in cache.get(h, ()):
        return True
    ok = check_password_hash(h, auth.password)
    if ok:
        cache.clear()
        cache[h] = {tag}
    return ok


def _session_ok(h: str) -> bool:
    return session.get("user") == USER and session.get("epoch") == _hash_epoch(h)


def _csrf_ok() -> bool:
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    want = session.get("csrf")
    return bool(want) and hmac.compare_digest(sent.encode(), want.encode())


def _refuse(status: int, message: str, api: bool):
    if api:
        resp = jsonify(error=message)
        resp.status_code = status
        if status == 401 and not request.headers.get("X-Requested-With"):
            # scripts get the Basic challenge; the page's own fetches do not (no browser password prompt)
            resp.headers["WWW-Authenticate"] = 'Basic realm="ampgate"'
        return resp
    return render_template("error.html", message=message), status


def check_request():
    """before_request: authenticate, then demand the CSRF token for state changes by the page."""
    api = request.path.startswith("/api/")
    h = password_hash()
    g.auth = None
    if request.method not in SAFE_METHODS and not _same_origin():
        return _refuse(403, _("request from another site refused"), api)
    if not h:
        g.auth = "open"
        if request.endpoint in OPEN_ENDPOINTS and request.endpoint != "auth.login":
            return _csrf_check(api)
        if api and request.method in SAFE_METHODS:
            return None
        if api:
            return _refuse(403, _("set the web password first (open the page)"), api)
        return redirect(url_for("auth.setup"))
    basic = _basic_ok(h)
    if basic is False:
        time.sleep(_FAIL_DELAY_S)   # gevent-patched: slows guessing without blocking others
        return _refuse(401, _("wrong user or password"), api)
    if basic:
        g.auth = "basic"
        return None if api else _csrf_check(api)
    if _session_ok(h):
        g.auth = "session"
        return _csrf_check(api)
    if request.endpoint in OPEN_ENDPOINTS:
        return _csrf_check(api)
    if api:
        return _refuse(401, _("log in or use HTTP Basic auth (user admin)"), api)
    return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))


def _same_origin() -> bool:
    """An Origin header, when a browser sent one, must name this very host and port."""
    origin = request.headers.get("Origin")
    if not origin:
        return True
    return origin in (f"http://{request.host}", f"https://{request.host}")


def _csrf_check(api: bool):
    if request.method in SAFE_METHODS or _csrf_ok():
        return None
    return _refuse(403, _("missing or wrong CSRF token: reload the page and try again"), api)


def set_password(new: str) -> None:
    if len(new) < MIN_PASSWORD:
        raise ConfigError(_("use at least %(n)d characters", n=MIN_PASSWORD), key="password")
    h = make_hash(new)
    _rt().config.update_section("web", {"password_hash": h})
    _start_session(h)


def _start_session(h: str) -> None:
    session.clear()
    session["user"] = USER
    session["epoch"] = _hash_epoch(h)
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = True


def _safe_next(target: str | None) -> str:
    # only a path on this site: "//host" would leave it, and browsers read a backslash as "/"
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return url_for("dashboard.index")


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    if password_hash():
        return redirect(url_for("auth.login"))
    error = None
    if request.method == "POST":
        pw, again = request.form.get("password", ""), request.form.get("password2", "")
        try:
            if pw != again:
                raise ConfigError(_("the two passwords differ"), key="password2")
            set_password(pw)
        except ConfigError as e:
            error = {e.key or "password": str(e)}
        else:
            _rt().events.info("web password set (first visit)")
            return redirect(url_for("dashboard.index"))
    return render_template("setup.html", errors=error or {}), (400 if error else 200)


@bp.route("/login", methods=["GET", "POST"])
def login():
    h = password_hash()
    if not h:
        return redirect(url_for("auth.setup"))
    error = None
    if request.method == "POST":
        if check_password_hash(h, request.form.get("password", "")):
            _start_session(h)
            return redirect(_safe_next(request.args.get("next")))
        time.sleep(_FAIL_DELAY_S)
        _rt().events.warning(f"failed web login from {request.remote_addr}")
        error = _("wrong password")
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/password")
def change_password():
    if not check_password_hash(password_hash(), request.form.get("current", "")):
        flash(_("current password is wrong"), "error")
        return redirect(url_for("settings.index") + "#password")
    try:
        set_password(request.form.get("password", ""))
    except ConfigError as e:
        flash(_("new password: %(why)s", why=e), "error")
    else:
        _rt().events.info("web password changed")
        flash(_("password changed; other sessions are logged out"), "ok")
    return redirect(url_for("settings.index") + "#password")


def install(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(check_request)
    app.jinja_env.globals["csrf_token"] = csrf_token
