"""The Flask app: the local web page and the JSON API, one blueprint per area."""
from __future__ import annotations

import datetime
import functools
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from appliance import i18n
from appliance.i18n import _

log = logging.getLogger("ampgate.web")

def _web_dir() -> Path:
    """Templates and static files: next to a checkout, else where an installed package put them."""
    for d in (Path(__file__).resolve().parents[2] / "web", Path(sys.prefix) / "share" / "ampgate" / "web"):
        if (d / "templates").is_dir():
            return d
    return Path(__file__).resolve().parents[2] / "web"


WEB_DIR = _web_dir()
MAX_UPLOAD = 1024 * 1024
LANG_COOKIE = "ampgate_lang"
LANG_COOKIE_AGE = 5 * 365 * 86400


def create_app(runtime: Any) -> Flask:
    """App factory; `runtime` is an appliance.runtime.Runtime (no globals tests must patch)."""
    from appliance.webapp import api, auth, certs, dashboard, devices, records, settings, system

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
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(   # type: ignore[attr-defined]
        lambda m: i18n.translations(i18n.language()).gettext(m),
        lambda s, p, n: i18n.translations(i18n.language()).ngettext(s, p, n), newstyle=True)
    app.jinja_env.globals.update(languages=i18n.LANGUAGES, lang=i18n.language)
    app.before_request(_choose_language)   # before auth: its refusals are in the user's language too
    auth.install(app)
    for bp in (api.api, dashboard.bp, devices.bp, settings.bp, certs.bp, records.bp, system.bp):
        app.register_blueprint(bp)
    app.jinja_env.filters["datetime"] = i18n.fmt_time
    app.jinja_env.filters["date"] = lambda v: i18n.fmt_time(v, date_only=True)
    app.jinja_env.filters["num"] = _fmt_num
    app.jinja_env.filters["decimal"] = i18n.fmt_number
    app.add_url_rule("/i18n.js", "i18n_js", _i18n_js)
    app.after_request(_headers)
    app.after_request(_remember_language)
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
        return _answer(500, _("not saved: %(why)s (%(file)s)", why=e.strerror or e, file=e.filename or _("file")))
    log.exception("web: %s %s failed", request.method, request.path)
    return _answer(500, _("internal error (%(kind)s); the appliance log has the details", kind=type(e).__name__))


def _fmt_num(v: Any) -> Any:
    """16.0 -> 16 and 25.5 -> "25,5" (German) in form fields; what a user typed stays as typed."""
    if isinstance(v, float):
        return int(v) if v.is_integer() else i18n.fmt_number(v)
    return v


def _choose_language() -> None:
    """?lang= (the switch on every page, remembered in a cookie), else the cookie, else the
    browser's Accept-Language, else English."""
    asked = request.args.get("lang")
    g.lang_asked = asked if asked in i18n.LANGUAGES else None
    wanted = (g.lang_asked or request.cookies.get(LANG_COOKIE)
              or request.accept_languages.best_match(list(i18n.LANGUAGES)))
    i18n.set_language(wanted)


def _remember_language(resp: Response) -> Response:
    if getattr(g, "lang_asked", None):
        resp.set_cookie(LANG_COOKIE, g.lang_asked, max_age=LANG_COOKIE_AGE, samesite="Lax", httponly=True)
    return resp


_JS_MSG = re.compile(r"""\b_\("((?:[^"\\]|\\.)*)"[,)]""")


@functools.lru_cache(maxsize=1)
def _js_messages() -> tuple[str, ...]:
    """The strings the page's scripts mark with _("..."), read once from the files themselves."""
    found: list[str] = []
    for path in sorted((WEB_DIR / "static").glob("*.js")):
        found += [json.loads(f'"{m}"') for m in _JS_MSG.findall(path.read_text(encoding="utf-8"))]
    return tuple(dict.fromkeys(found))


def _i18n_js() -> Response:
    """The scripts' strings in the page's language, and how it writes numbers (dashboard.js)."""
    table = {m: _(m) for m in _js_messages()}
    body = (f"window.I18N = {json.dumps(table, ensure_ascii=False, sort_keys=True)};\n"
            f"window.LANG = {json.dumps(i18n.language())};\n")
    return Response(body, mimetype="text/javascript", headers={"Cache-Control": "no-cache", "Vary": "Cookie"})


def _headers(resp):
    """Nothing from elsewhere: no framing, no foreign scripts (the box has no internet anyway)."""
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                            "frame-ancestors 'none'; form-action 'self'")
    return resp
