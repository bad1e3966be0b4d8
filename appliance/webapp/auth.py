"""Who may use the page and the API, and CSRF protection for everything that changes state.

- Only names of this box are served (hosts.py, against DNS rebinding).
- No password set yet (first start): the page offers only "set password", which needs the one-time
  claim code from the log or the serial console (appliance.claim); GET requests of the API are open
  (interfaces.md), nothing can be changed until the password exists.
- Password set: the page needs a login session, the API the session or HTTP Basic auth (user `admin`).
- Sessions are also recorded on the server (sessions.py): logging out ends one for good.
- Password checks run off the gevent hub (passwords.verify), and an address that keeps sending wrong
  passwords waits before each further try (appliance.throttle): the page says how long, the API
  answers 429 with Retry-After. A verified Basic-auth password is remembered for a few minutes per
  address, so a script polling the API does not pay for the key derivation every time.
- Every state-changing request from a session (form or fetch) must carry the session's CSRF token.
  Basic-auth requests to the API need none: a browser that cached Basic credentials could still be
  made to send a cross-site form, but the API takes only JSON bodies (which a cross-site page cannot
  send without a CORS preflight we never answer) and DELETE/PUT are never simple requests. Page
  routes want the token even with Basic auth. A foreign Origin header is refused outright.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Callable

import gevent.lock
from flask import (Blueprint, Flask, current_app, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)

from appliance.claim import ClaimCode
from appliance.config import ConfigError
from appliance.i18n import _
from appliance.passwords import MIN_PASSWORD, USER, make_hash, off_hub, verify
from appliance.throttle import FailureThrottle, OneAtATime
from appliance.webapp import hosts
from appliance.webapp.sessions import SessionBook


bp = Blueprint("auth", __name__)

SECRET_FILE = "web_secret"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
OPEN_ENDPOINTS = {"auth.setup", "auth.login", "static", "i18n_js"}
_SETUP_LOCK = gevent.lock.Semaphore()   # one first-visit claim at a time
BASIC_REMEMBER_S = 300.0     # a verified Basic-auth password is not hashed again for this long
BASIC_REMEMBER_MAX = 64
# a path of this site: "/" then no second "/" or "\\" (both leave the site), no control characters or
# spaces (browsers drop tabs and newlines, so "/\t/evil" becomes "//evil")
_SAFE_NEXT = re.compile(r"/(?![/\\])[\x21-\x5b\x5d-\x7e]*")


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


def _client() -> str:
    return request.remote_addr or "?"


def attempt(check: Callable[[], bool]) -> tuple[bool, float]:
    """(right, wait) of a secret check (password, claim code) counted per client address. wait > 0
    means this address failed too often and must wait that many seconds: `check` was not even run."""
    throttle: FailureThrottle = current_app.config["THROTTLE"]
    addr = _client()
    with current_app.config["CHECKING"].hold(addr):
        wait = throttle.wait_s(addr)
        if wait > 0:
            return False, wait
        if check():
            throttle.succeeded(addr)
            return True, 0.0
        throttle.failed(addr)
    if throttle.failures(addr) == throttle.free + 1:   # one log line when an address starts to wait
        _rt().events.warning(f"web: {throttle.failures(addr)} wrong passwords from {addr}; "
                             "it now waits before each further try")
    return False, 0.0


def check_password(h: str, password: str) -> tuple[bool, float]:
    """attempt() with the password against hash `h`, computed off the hub."""
    return attempt(lambda: bool(password) and verify(h, password))


def _basic_ok(h: str) -> bool | float | None:
    """True for right Basic credentials, None when the request has none, False when wrong, or the
    seconds a guessing address must still wait."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return None
    remembered: dict[bytes, float] = current_app.config["BASIC_REMEMBERED"]
    # keyed by address too: a remembered password is no shortcut for a guesser elsewhere
    tag = hmac.new(current_app.secret_key, f"{_client()}\0{h}\0{auth.username}\0{auth.password}".encode(),
                   "sha256").digest()
    now = time.monotonic()
    if remembered.get(tag, 0.0) > now:
        return True
    ok, wait = check_password(h, (auth.password or "") if auth.username == USER else "")
    if wait:
        return wait
    if not ok:
        return False
    for expired in [k for k, t in remembered.items() if t <= now]:
        del remembered[expired]
    if len(remembered) < BASIC_REMEMBER_MAX:   # bounded: more scripts than this just hash again
        remembered[tag] = now + BASIC_REMEMBER_S
    return True


def _session_ok(h: str) -> bool:
    return (session.get("user") == USER and session.get("epoch") == _hash_epoch(h)
            and current_app.config["SESSIONS"].valid(session.get("sid")))


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


def wait_message(wait: float) -> str:
    return _("too many wrong passwords from %(addr)s: try again in %(s)d s", addr=_client(), s=math.ceil(wait))


def _too_many(wait: float, api: bool):
    resp = _refuse(429, wait_message(wait), api)
    if isinstance(resp, tuple):
        resp = current_app.make_response(resp)
    resp.headers["Retry-After"] = str(math.ceil(wait))
    return resp


def check_request():
    """before_request: authenticate, then demand the CSRF token for state changes by the page."""
    api = request.path.startswith("/api/")
    if not hosts.allowed(request.host, hosts.own_names(_rt().config.section("web")["hostnames"])):
        return _refuse(421, _("this box does not answer to the name %(name)r: use its IP address, or add the name "
                              "to [web] hostnames", name=hosts.split_host(request.host)), api)
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
        return _refuse(401, _("wrong user or password"), api)
    if isinstance(basic, float):
        return _too_many(basic, api)
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
    h = off_hub(make_hash, new)
    _rt().config.update_section("web", {"password_hash": h})
    current_app.config["SESSIONS"].end_all()
    _start_session(h)


def _start_session(h: str) -> None:
    session.clear()
    session["user"] = USER
    session["epoch"] = _hash_epoch(h)
    session["sid"] = current_app.config["SESSIONS"].start()
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = True


def _safe_next(target: str | None) -> str:
    if target and _SAFE_NEXT.fullmatch(target):
        return target
    return url_for("dashboard.index")


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    if password_hash():
        return redirect(url_for("auth.login"))
    claim: ClaimCode = current_app.config["CLAIM"]
    if claim.pending() is None:       # the password was cleared while we ran: a new code
        claim.announce()
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        with _SETUP_LOCK:
            if password_hash():       # someone else was quicker
                return redirect(url_for("auth.login"))
            errors, status = _claim()
            if not errors:
                return redirect(url_for("dashboard.index"))
    return render_template("setup.html", errors=errors), status


def _claim() -> tuple[dict[str, str], int]:
    """First visit: the claim code, then the new password twice. ({}, 302) when done."""
    claim: ClaimCode = current_app.config["CLAIM"]
    ok, wait = attempt(lambda: claim.matches(request.form.get("claim_code", "")))
    if not ok:
        return {"claim_code": wait_message(wait) if wait else _("wrong claim code: it is in the appliance log "
                "and shown by the serial console (ampgate console)")}, (429 if wait else 403)
    pw, again = request.form.get("password", ""), request.form.get("password2", "")
    try:
        if pw != again:
            raise ConfigError(_("the two passwords differ"), key="password2")
        set_password(pw)
    except ConfigError as e:
        return {e.key or "password": str(e)}, 400
    claim.spend()
    _rt().events.info(f"web password set (first visit, from {_client()})")
    return {}, 302


@bp.route("/login", methods=["GET", "POST"])
def login():
    h = password_hash()
    if not h:
        return redirect(url_for("auth.setup"))
    error, status = None, 200
    if request.method == "POST":
        ok, wait = check_password(h, request.form.get("password", ""))
        if ok:
            _start_session(h)
            return redirect(_safe_next(request.args.get("next")))
        error, status = (wait_message(wait), 429) if wait else (_("wrong password"), 401)
    return render_template("login.html", error=error), status


@bp.post("/logout")
def logout():
    current_app.config["SESSIONS"].end(session.get("sid"))
    session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/password")
def change_password():
    ok, wait = check_password(password_hash(), request.form.get("current", ""))
    if not ok:
        flash(wait_message(wait) if wait else _("current password is wrong"), "error")
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
    runtime = app.config["RUNTIME"]
    app.config.update(SESSIONS=SessionBook(runtime.data_dir, app.permanent_session_lifetime.total_seconds()),
                      THROTTLE=FailureThrottle(), CHECKING=OneAtATime(), BASIC_REMEMBERED={}, CLAIM=ClaimCode(runtime.data_dir))
    if not runtime.config.section("web")["password_hash"]:
        app.config["CLAIM"].announce()
    app.register_blueprint(bp)
    app.before_request(check_request)
    app.jinja_env.globals["csrf_token"] = csrf_token
