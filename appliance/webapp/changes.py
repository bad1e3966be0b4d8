"""Every configuration change the page and the API make, in one place.

Each change goes through Config (validates the whole file, writes atomically, changes nothing on
error) and is then applied to the running process where that is possible.
"""
from __future__ import annotations

import re
from typing import Any

from appliance.config import ConfigError
from appliance.i18n import NumberError, _, fmt_number, normalise_number, parse_number
from appliance.webapp.fields import DEVICE_KEYS, RESTART_KEYS, SECRETS, Field, device_fields


class NotFound(Exception):
    pass


class Exists(ConfigError):
    """A new device under a name that is taken (the API answers 409)."""


_VDT = re.compile(r'^the value "(.*)" is (too big|too small|of the wrong type|unacceptable|too long)\.$', re.S)


def field_message(e: ConfigError, fields: list[Field] | None = None) -> str:
    """The part of a ConfigError that belongs next to its field (without file/section prefix),
    with the validator's terse wording made specific when the field is known."""
    msg = str(e)
    if e.key:
        for marker in (f" {e.key}: ", f"{e.key}: "):
            if marker in msg:
                msg = msg.split(marker, 1)[1]
                break
    f = next((f for f in fields or () if f.key == e.key), None)
    m = _VDT.match(msg)
    if f is None or m is None:
        return _(msg)
    value, what = m.group(1), m.group(2)
    if what == "too big":
        return _("%(value)s is too big: at most %(max)s", value=value, max=fmt_number(f.max))
    if what == "too small":
        return _("%(value)s is too small: at least %(min)s", value=value, min=fmt_number(f.min))
    if what == "too long":
        return _("too long: at most %(max)s characters", max=f.max)
    if what == "unacceptable":
        return _("%(value)r is not one of: %(allowed)s", value=value, allowed=", ".join(f.options))
    if f.kind == "integer":
        return _("%(value)r is not a whole number", value=value)
    if f.kind == "float":
        return _("%(value)r is not a number: write it like 16 or 25.5 (or 25,5)", value=value)
    if f.kind == "boolean":
        return _("%(value)r is not on/off", value=value)
    return msg


def numbers(values: dict[str, Any], fields: list[Field]) -> dict[str, Any]:
    """Typed numbers as the file keeps them: a decimal comma becomes a point ("25,5" -> "25.5"); what
    cannot be read is refused naming the field and how to write it."""
    out = dict(values)
    for f in fields:
        raw = out.get(f.key)
        if f.kind not in ("integer", "float") or not isinstance(raw, str) or raw.strip() == "":
            continue
        try:
            out[f.key] = str(parse_number(raw, integer=f.kind == "integer")) if f.kind == "integer" \
                else normalise_number(raw)
        except NumberError as e:
            raise ConfigError(f"{f.key}: {e}", key=f.key) from None
    return out


def scalar(key: str, value: Any) -> str | None:
    """A JSON or form value as the config file would hold it (None = back to the default)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ConfigError(f"{key}: must be a single value", key=key)


def explicit(section: Any) -> dict[str, Any]:
    """What the file states for a section (not the defaults filled in by validation)."""
    return {k: section[k] for k in section.scalars if k not in section.defaults}


def device_explicit(rt: Any, name: str) -> dict[str, Any]:
    devices = rt.config.data["devices"]
    if name not in devices:
        raise NotFound(name)
    return explicit(devices[name])


def _is_default(f: Field, raw: str) -> bool:
    if f.kind in ("integer", "float"):
        try:
            return float(raw) == float(f.default)
        except (TypeError, ValueError):
            return False
    if f.kind == "boolean":
        return raw.lower() in ("true", "1", "on", "yes") if f.default else raw.lower() in ("false", "0", "off", "no")
    return raw == str(f.default)


def from_form(kind: str, form: Any, old: dict[str, Any]) -> dict[str, Any]:
    """The device section a submitted form stands for: only the type's keys, defaults left out
    (so the file stays short), secrets kept unless a new value was typed or clearing was asked."""
    if kind not in DEVICE_KEYS:
        raise ConfigError(_("type: unknown device type %(kind)r", kind=kind), key="type")
    values: dict[str, Any] = {"type": kind}
    for f in device_fields(kind):
        if f.kind == "boolean":
            raw = "true" if form.get(f.key) in ("on", "true", "1") else "false"
        else:
            raw = (form.get(f.key) or "").strip()
        if f.secret:
            if form.get(f.key + "_clear"):
                continue
            if not raw:
                if old.get(f.key):
                    values[f.key] = old[f.key]
                continue
        if raw == "" and f.kind != "string":
            continue   # an emptied number means "the default"
        if not _is_default(f, raw):
            values[f.key] = raw
    return values


def from_json(body: Any, old: dict[str, Any] | None) -> dict[str, Any]:
    """API body -> device section: merged over the stored one for PUT; null resets a key."""
    if not isinstance(body, dict):
        raise ConfigError(_("body: expected a JSON object"), key="body")
    values = dict(old or {})
    for k, v in body.items():
        if k == "name":
            continue
        s = scalar(k, v)
        if s is None:
            values.pop(k, None)
        else:
            values[k] = s
    return values


def save_device(rt: Any, name: str, values: dict[str, Any], create: bool) -> None:
    exists = name in rt.config.data["devices"]
    if create and exists:
        raise Exists(_("name: a device named %(name)r exists already", name=name), key="name")
    if not create and not exists:
        raise NotFound(name)
    if values.get("type") in DEVICE_KEYS:
        values = numbers(values, device_fields(values["type"]))
    rt.config.set_device(name, values)
    rt.events.info(("added" if create else "changed") + " on the web page", name)
    rt.load_devices()


def remove_device(rt: Any, name: str) -> None:
    if name not in rt.config.data["devices"]:
        raise NotFound(name)
    rt.config.remove_device(name)
    rt.events.info("removed on the web page", name)
    rt.load_devices()


def set_active(rt: Any, name: str, active: bool) -> None:
    values = device_explicit(rt, name)
    if active:
        values.pop("active", None)
    else:
        values["active"] = "false"
    rt.config.set_device(name, values)
    rt.events.info("enabled on the web page" if active else "disabled on the web page", name)
    rt.load_devices()


def station_connectors(listing: dict[str, Any] | None) -> list[int]:
    """The connectors a station reported (StatusNotification per connector), 1 when none yet."""
    found = sorted(int(c) for c in (listing or {}).get("connectors", {}) if str(c).isdigit() and int(c) > 0)
    return found or [1]


def _free_name(rt: Any, base: str) -> str:
    name, n = base, 2
    while name in rt.config.data["devices"]:
        name, n = f"{base}-{n}", n + 1
    return name


def adopt(rt: Any, charge_box_id: str, connectors: list[int] | None = None, who: str = "the web page") -> list[str]:
    """Configure an OCPP station that connected unannounced, one device per connector (all it reported
    unless `connectors` names some), under names derived from its id; sessions it began before are
    given their device. Connectors not adopted stay listed."""
    base = "".join(c if c.isalnum() or c in "_-." else "_" for c in charge_box_id)[:28] or "wallbox"
    if not base[0].isalnum() and base[0] != "_":
        base = "_" + base[:27]
    listing = rt.unconfigured.get(charge_box_id)
    known = station_connectors(listing)
    wanted = connectors or known
    names = []
    for c in wanted:
        name = _free_name(rt, base if c == wanted[0] else f"{base}-{c}")
        rt.config.set_device(name, {"type": "ocpp16", "address": charge_box_id, "connector": str(c)})
        names.append(name)
        rt.store.assign_device(charge_box_id, c, name)
        rt.events.info(f"adopted OCPP station {charge_box_id} connector {c} on {who}", name)
    rest = [c for c in known if c not in wanted]
    rt.unconfigured.pop(charge_box_id, None)
    rt.load_devices()
    if rest and listing is not None:   # keep the others on the list (the station is known now, so re-add)
        listing = dict(listing, connectors={str(c): v for c, v in listing.get("connectors", {}).items()
                                            if str(c).isdigit() and int(c) in rest})
        rt.unconfigured[charge_box_id] = listing
    return names


def save_section(rt: Any, section: str, form: Any, fields: list[Field]) -> list[str]:
    """Write a settings section from a form; returns the changed keys that need a restart."""
    current = rt.config.section(section)
    values: dict[str, Any] = {}
    for f in fields:
        if f.kind == "boolean":
            raw = "true" if form.get(f.key) in ("on", "true", "1") else "false"
        elif f.key not in form:
            continue
        else:
            raw = form[f.key].strip()
        if f.key in SECRETS:
            if form.get(f.key + "_clear"):
                raw = ""
            elif not raw:
                continue
        elif raw == "" and f.kind != "string":
            continue   # keep the current value
        values[f.key] = raw
    before = dict(current)
    rt.config.update_section(section, numbers(values, fields))
    after = rt.config.section(section)
    changed = [k for k in values if before.get(k) != after.get(k)]
    if changed:
        shown = ", ".join(k if k not in SECRETS else f"{k} (hidden)" for k in changed)
        rt.events.info(f"[{section}] changed on the web page: {shown}")
    needs_restart = RESTART_KEYS.get(section, set())
    return [k for k in changed if needs_restart is None or k in needs_restart]
