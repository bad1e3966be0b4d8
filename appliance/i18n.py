"""German and English: the message catalogues, the language of the current request or console, and
numbers and times the way the user writes and reads them.

Strings are marked with `_()` (translated where they are used) or `N_()` (module-level tables,
translated when shown). The catalogue is gettext's: appliance/locale/de/LC_MESSAGES/ampgate.po, with its
compiled .mo beside it (`make translations` extracts, updates and compiles; tests/test_i18n.py fails when
a marked string has no German translation or the .mo is older than the .po). At run time only the
standard library's gettext reads the .mo: Babel and its locale data stay a developer's tool, which
keeps them off the appliance's flash.

The language lives in a context variable: gevent gives every greenlet (each web request, the console)
its own value.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import functools
import gettext as _gettext
import re
import time
from pathlib import Path
from typing import Any

DOMAIN = "ampgate"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = {"en": "English", "de": "Deutsch"}
DEFAULT = "en"

_lang: contextvars.ContextVar[str] = contextvars.ContextVar("ampgate_lang", default=DEFAULT)


@functools.lru_cache(maxsize=None)
def translations(lang: str) -> _gettext.NullTranslations:
    """The catalogue of a language (English is the source text: no catalogue)."""
    if lang == DEFAULT:
        return _gettext.NullTranslations()
    return _gettext.translation(DOMAIN, str(LOCALE_DIR), languages=[lang], fallback=True)


def set_language(lang: str | None) -> str:
    chosen = lang if lang in LANGUAGES else DEFAULT
    _lang.set(chosen)
    return chosen


def language() -> str:
    return _lang.get()


def gettext(message: str, **params: Any) -> str:
    """The message in the current language, with %(name)s parameters filled in."""
    text = translations(_lang.get()).gettext(message)
    return text % params if params else text


def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
    text = translations(_lang.get()).ngettext(singular, plural, n)
    return text % {"num": n, **params}


_ = gettext


def N_(message: str) -> str:
    """Mark a string for the catalogue without translating it yet (module-level tables)."""
    return message


def from_env(environ: dict[str, str]) -> str:
    """The console's language from the POSIX locale variables (LANGUAGE, LC_ALL, LC_MESSAGES, LANG)."""
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(var, "")
        for part in value.split(":"):
            code = part[:2].lower()
            if code in LANGUAGES:
                return code
            if value and part not in ("C", "POSIX", "C.UTF-8"):
                return DEFAULT
    return DEFAULT


# -- numbers ------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")


class NumberError(ValueError):
    """A typed number we cannot read; the message says how to write it."""


def normalise_number(text: str) -> str:
    """What a user typed as a number, in the form the configuration file keeps: a decimal comma
    becomes a point ("25,5" -> "25.5"). Thousands separators are refused rather than guessed, since
    "1.500" means 1500 to a German reader and 1.5 to an English one."""
    t = text.strip().replace("\u2009", "").replace(" ", "")
    if not _NUMBER.match(t):
        raise NumberError(gettext("%(value)r is not a number: write it like 16 or 25.5 (or 25,5)", value=text))
    return t.replace(",", ".")


def parse_number(text: str, integer: bool = False) -> float | int:
    value = normalise_number(text)
    if integer:
        f = float(value)
        if not f.is_integer():
            raise NumberError(gettext("%(value)r is not a whole number: write it like 16", value=text))
        return int(f)
    return float(value)


def decimal_sep(lang: str | None = None) -> str:
    return "," if (lang or _lang.get()) == "de" else "."


def fmt_number(value: Any, digits: int | None = None) -> str:
    """A number for reading: 16 stays 16, 16.5 is "16,5" in German; `digits` fixes the decimals."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if digits is None:
        text = str(int(value)) if float(value).is_integer() else f"{value:g}"
    else:
        text = f"{value:.{digits}f}"
    return text.replace(".", decimal_sep())


# -- times --------------------------------------------------------------------------------------------
_FORMATS = {"en": ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"), "de": ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y")}


def _local(value: Any) -> dt.datetime | None:
    """A stored time (Unix seconds, or an ISO text in UTC as the database keeps it) in the
    appliance's local time zone (TZ / /etc/localtime; OpenWrt sets TZ)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value).astimezone()
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone()


def fmt_time(value: Any, date_only: bool = False) -> str:
    """A stored time as local date and time in the current language's format ("" for none; text we
    cannot read is shown as it is)."""
    local = _local(value)
    if local is None:
        return "" if value in (None, "") else str(value)
    return local.strftime(_FORMATS[_lang.get()][1 if date_only else 0])


def fmt_duration(seconds: float) -> str:
    """4:12 for minutes and seconds, 1:05 h above an hour, 2 d 3 h above a day."""
    s = max(0, int(seconds))
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    if s < 86400:
        return gettext("%(h)d:%(m)02d h", h=s // 3600, m=s % 3600 // 60)
    return gettext("%(d)d d %(h)d h", d=s // 86400, h=s % 86400 // 3600)


def utc_offset_name() -> str:
    """The local time zone's abbreviation, e.g. CET, for headings of time columns."""
    return time.strftime("%Z")
