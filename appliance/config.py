"""The configuration file: load, validate against the configspec, change and save atomically.

One schema (etc/ampgate.spec) feeds the file, the web forms and the console, so every writer goes
through `Config.update_section` / `Config.set_device`, which validate before anything is written.
"""
from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path
from typing import Any

from configobj import ConfigObj, ConfigObjError, flatten_errors, get_extra_values
from configobj.validate import Validator

from appliance.fsutil import atomic_write

SPEC_NAME = "ampgate.spec"
DEVICE_TYPES_EVSE = ("ocpp16", "powerbrain")
DEVICE_TYPES_METER = ("sdm630", "powerbrain_s0")
# settings that had no code behind them and were removed: dropped from files that still carry them
OBSOLETE_KEYS = {"comm_error_reduce", "signed_data"}
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")


class ConfigError(Exception):
    """A configuration problem, phrased for the user: file, line, key and what is wrong."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def spec_path() -> Path:
    """The configspec: next to a checkout, or where the package installed it."""
    candidates = [
        os.environ.get("AMPGATE_SPEC"),
        Path(__file__).resolve().parents[1] / "etc" / SPEC_NAME,
        Path(sys.prefix) / "share" / "ampgate" / "etc" / SPEC_NAME,
        Path("/etc/ampgate") / SPEC_NAME,
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise ConfigError(f"configspec {SPEC_NAME} not found (looked in {', '.join(map(str, filter(None, candidates)))})")


def _spec() -> ConfigObj:
    return ConfigObj(str(spec_path()), list_values=False, _inspec=True, encoding="utf-8")


def _find_line(path: Path | None, section: tuple[str, ...], key: str | None) -> int | None:
    """Validation errors carry no line numbers; find `key =` inside the section ourselves."""
    if path is None or not path.is_file():
        return None
    depth_names: list[str] = []
    for no, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        m = re.match(r"^(\[+)\s*([^\]]+?)\s*\]+", line)
        if m:
            depth = len(m.group(1))
            depth_names = depth_names[: depth - 1] + [m.group(2).strip("\"'")]
            if key is None and tuple(depth_names) == section:
                return no
            continue
        if key and tuple(depth_names) == section and re.match(rf"^{re.escape(key)}\s*=", line):
            return no
    return None


def _where(path: Path | None, section: tuple[str, ...], key: str | None) -> str:
    line = _find_line(path, section, key)
    loc = f"{path}" if path else "configuration"
    if line:
        loc += f":{line}"
    sect = "".join(f"[{s}]" for s in section)
    return f"{loc}: {sect} {key}" if key else f"{loc}: {sect}"


class Config:
    """A validated configuration. `data` is the configobj (typed values after validation)."""

    def __init__(self, data: ConfigObj, path: Path | None):
        self.data = data
        self.path = path
        self._stamp = _stamp(path)

    def refresh(self) -> bool:
        """Re-read the file if someone else (a hand edit, the console) changed it since we read or
        wrote it. True when it was reloaded; raises ConfigError (keeping the current values) when
        the new file is invalid."""
        stamp = _stamp(self.path)
        if stamp == self._stamp or self.path is None:
            return False
        self._stamp = stamp   # an invalid file is reported once, not on every look
        if not self.path.exists():
            raise ConfigError(f"{self.path}: the file is gone")
        fresh = load(self.path).data
        _check_not_shrunk(self.path, self.data, fresh)
        self.data = fresh
        return True

    # -- reading ---------------------------------------------------------------------------------
    def section(self, name: str) -> dict[str, Any]:
        return dict(self.data[name])

    def devices(self) -> dict[str, dict[str, Any]]:
        return {name: _device_view(sec) for name, sec in self.data["devices"].items()}

    # -- changing (validate first, then write atomically) -----------------------------------------
    def update_section(self, name: str, values: dict[str, Any]) -> None:
        """Set keys of a top-level section; raises ConfigError naming the key, changes nothing then."""
        self.refresh()   # never write back an older copy over someone else's change
        if name not in self.data or name == "devices":
            raise ConfigError(f"unknown section [{name}]")
        candidate = _explicit(self.data)
        for k, v in values.items():
            if k not in self.data[name]:
                raise ConfigError(f"[{name}] {k}: unknown setting", key=k)
            candidate.setdefault(name, {})[k] = v
        self._replace(candidate)

    def set_device(self, name: str, values: dict[str, Any]) -> None:
        """Add or replace a device section after validating it (name, keys, cross-key rules)."""
        if not _NAME_RE.match(name or ""):
            raise ConfigError("name: use 1-32 letters, digits, '_', '-' or '.'", key="name")
        self.refresh()
        candidate = _explicit(self.data)
        # devices() hands phase_rotation out as a number; the file keeps the option's text
        candidate.setdefault("devices", {})[name] = {
            k: (str(v) if k == "phase_rotation" else v) for k, v in values.items() if k != "name"}
        self._replace(candidate)

    def remove_device(self, name: str) -> None:
        self.refresh()
        if name not in self.data["devices"]:
            raise ConfigError(f"no device named {name!r}", key="name")
        candidate = _explicit(self.data)
        del candidate["devices"][name]
        self._replace(candidate)

    def _replace(self, plain: dict) -> None:
        """Validate the whole candidate, then copy it into the live object (which keeps the file's
        comments), write atomically and re-read, so defaults stay out of the file."""
        _check_storable(plain, ())
        fresh = ConfigObj(copy.deepcopy(plain), configspec=_spec(), encoding="utf-8", default_encoding="utf-8")
        _validate(fresh, None)
        if self.path is None:
            self.data = fresh
            return
        _merge_into(self.data, plain)
        try:
            self.save()
        except Exception as e:
            # nothing changes, in memory or on disk: the save is atomic, so the file holds the old state
            self.data = load(self.path).data
            if isinstance(e, ConfigObjError):
                raise ConfigError(f"not saved: {e}") from None
            raise
        self.data = load(self.path).data
        self._stamp = _stamp(self.path)

    def save(self) -> None:
        """Atomic: write a temporary file in the same directory, fsync, rename over the old one."""
        if self.path is None:
            return
        self.data.encoding = self.data.default_encoding = "utf-8"
        filename, self.data.filename = self.data.filename, None  # None: write() returns the lines
        try:
            lines = self.data.write()
        finally:
            self.data.filename = filename
        text = "\n".join(ln.decode("utf-8") if isinstance(ln, bytes) else ln for ln in lines) + "\n"
        atomic_write(self.path, text.encode("utf-8"), 0o600)  # 0600 as before: it holds password hashes


SECRETS = (("web", "password_hash"), ("ocpp_server", "password"))


def _check_not_shrunk(path: Path, running: ConfigObj, fresh: ConfigObj) -> None:
    """A file edited by hand must not take the protection away by accident: a file that is empty now,
    lost sections it had (cut off), or lost a password is refused; the page and the console change
    those through `update_section`, which does not come here."""
    before, after = _explicit(running), _explicit(fresh)
    if not any(after.values()):
        raise ConfigError(f"{path}: the file is empty now (cut off?)")
    for section, key in SECRETS:
        if running[section][key] and not fresh[section][key]:
            raise ConfigError(f"{path}: [{section}] {key} was removed; change passwords on the web page "
                              "or the console", key=key)
    lost = [name for name, values in before.items() if values and not after.get(name)]
    if lost:
        raise ConfigError(f"{path}: the file lost its {', '.join(f'[{n}]' for n in lost)} section"
                          f"{'s' if len(lost) > 1 else ''} (cut off?)")


_QUOTER = ConfigObj()


def _check_storable(plain: dict[str, Any], where: tuple[str, ...]) -> None:
    """Every text must survive the file: configobj cannot quote a value holding both kinds of triple
    quotes (a station may send such a chargeBoxId). Refused with the key, before anything changes."""
    for key, value in plain.items():
        if isinstance(value, dict):
            _check_storable(value, where + (key,))
            continue
        for text in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(text, str):
                continue
            try:
                _QUOTER._quote(text)
            except ConfigObjError:
                sect = "".join(f"[{s}]" for s in where)
                raise ConfigError(f"{sect} {key}: cannot be stored: it holds both \'\'\' and \"\"\" (use one kind)",
                                  key=key) from None


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st else None


def _explicit(sec: Any) -> dict[str, Any]:
    """The values written in the file (or set by us), without the spec's filled-in defaults."""
    out: dict[str, Any] = {}
    for k in sec.scalars:
        if k not in sec.defaults:
            out[k] = sec[k]
    for k in sec.sections:
        out[k] = _explicit(sec[k])
    return out


def _merge_into(live: Any, plain: dict[str, Any]) -> None:
    for k in [k for k in live.scalars if k not in plain]:
        del live[k]
    for k in [k for k in live.sections if k not in plain]:
        del live[k]
    for k, v in plain.items():
        if isinstance(v, dict):
            if k not in live.sections:
                live[k] = {}
            _merge_into(live[k], v)
        elif k not in live.scalars or live[k] != v or k in live.defaults:
            live[k] = v
            if k in live.defaults:
                live.defaults.remove(k)


def _device_view(sec: Any) -> dict[str, Any]:
    d = dict(sec)
    d["phase_rotation"] = int(d["phase_rotation"])
    return d


def _validate(cfg: ConfigObj, path: Path | None) -> None:
    result = cfg.validate(Validator(), preserve_errors=True, copy=False)
    cfg.encoding = cfg.default_encoding = "utf-8"  # validate() may reset it (stack-pitfalls §7)
    if result is not True:
        for section, key, err in flatten_errors(cfg, result):
            what = "missing" if err is False else str(err)
            raise ConfigError(f"{_where(path, tuple(section), key)}: {what}", key=key)
    for section, key in get_extra_values(cfg):
        if section == ("devices",) and isinstance(cfg["devices"].get(key), dict):
            continue
        if key in OBSOLETE_KEYS:
            sec = cfg
            for name in section:
                sec = sec[name]
            del sec[key]
            continue
        raise ConfigError(f"{_where(path, tuple(section), key)}: unknown setting", key=key)
    for name, dev in cfg["devices"].items():
        _check_device(path, name, dev)


def _check_device(path: Path | None, name: str, dev: Any) -> None:
    where = lambda key: _where(path, ("devices", name), key)  # noqa: E731
    if not _NAME_RE.match(name):
        raise ConfigError(f"{_where(path, ('devices', name), None)}: device name must be 1-32 letters, digits, '_', '-' or '.'", key="name")
    kind = dev["type"]
    if kind == "ocpp16":
        if not dev["address"]:
            raise ConfigError(f"{where('address')}: the wallbox's chargeBoxId is required", key="address")
        if ":" in dev["address"] or "/" in dev["address"]:
            raise ConfigError(f"{where('address')}: a chargeBoxId cannot contain ':' or '/'", key="address")
    elif not dev["port"]:
        raise ConfigError(f"{where('port')}: tcp://HOST:PORT or a serial device is required", key="port")
    else:
        problem = port_problem(dev["port"])
        if problem:
            raise ConfigError(f"{where('port')}: {problem}", key="port")
    if dev["min_current"] > dev["max_current"]:
        raise ConfigError(f"{where('min_current')}: {dev['min_current']} is above max_current {dev['max_current']}", key="min_current")
    url = dev["gateway_url"]
    if url and not re.match(r"^wss?://[^/\s]+\S*$", url):
        raise ConfigError(f"{where('gateway_url')}: must start with ws:// or wss:// (no spaces)", key="gateway_url")
    if url and not dev["gateway_id"]:
        raise ConfigError(f"{where('gateway_id')}: the charge point id at the backend is required with gateway_url",
                          key="gateway_id")
    if dev["gateway_id"] and not re.match(r"^[A-Za-z0-9._~*:@+=$!'(),-]+$", dev["gateway_id"]):
        raise ConfigError(f"{where('gateway_id')}: letters, digits and . _ - ~ * : @ + = $ ! ' ( ) , only "
                          "(it becomes the last segment of the URL)", key="gateway_id")


_NUMERIC_CHECK = re.compile(r"^\s*(integer|float)\b")
_DECIMAL_PARTS = re.compile(r"^[+-]?\d+$"), re.compile(r"^\d+$")


def _decimal_commas(cfg: Any, spec: Any, path: Path | None, at: tuple[str, ...]) -> None:
    """`32,5` in the file: configobj reads a comma as a list ['32', '5']; for a number key it is a
    decimal comma, so it becomes 32.5. Other lists under a number key are refused with how to write it."""
    for key in list(cfg.scalars):
        check = spec.get(key) if key in spec.scalars else spec.get("__many__") if "__many__" in spec.scalars else None
        value = cfg[key]
        if key == "port" and isinstance(value, list):   # /dev/ttyUSB0,9600,8,n,1 written without quotes
            cfg[key] = ",".join(value)
            continue
        if not isinstance(check, str) or not _NUMERIC_CHECK.match(check) or not isinstance(value, list):
            continue
        if len(value) == 2 and _DECIMAL_PARTS[0].match(value[0]) and _DECIMAL_PARTS[1].match(value[1]):
            cfg[key] = f"{value[0]}.{value[1]}"
        else:
            raise ConfigError(f"{_where(path, at, key)}: {','.join(value)!r} is not a number: write it like 16 or "
                              "25.5 (a decimal comma as in 25,5 is read too)", key=key)
    for name in cfg.sections:
        sub_spec = spec[name] if name in spec.sections else spec.get("__many__")
        if sub_spec is not None and hasattr(sub_spec, "scalars"):
            _decimal_commas(cfg[name], sub_spec, path, at + (name,))


PORT_FORMS = "tcp://HOST:PORT, or a serial device as /dev/ttyUSB0 or /dev/ttyUSB0,9600,8,n,1"


def port_problem(spec: Any) -> str:
    """Why a Modbus `port` setting cannot work, naming the forms that do ('' when it is fine)."""
    from appliance.modbus.bus import parse_port

    text = ",".join(spec) if isinstance(spec, list) else str(spec)
    try:
        link = parse_port(text)
    except ValueError as e:
        return f"{e}; expected {PORT_FORMS}"
    if link.kind == "rtu" and not link.address.startswith("/"):
        if re.match(r"^[\w.-]+:\d+$", link.address):
            return f"{text!r} looks like a network address: write tcp://{link.address}"
        return f"{text!r} is not a serial device of this appliance; expected {PORT_FORMS}"
    return ""


def load(path: str | os.PathLike | None) -> Config:
    """Read and validate a configuration file; a missing file means the embedded defaults."""
    p = Path(path) if path else None
    spec = _spec()
    if p is not None and p.exists():
        try:
            cfg = ConfigObj(str(p), configspec=spec, encoding="utf-8", default_encoding="utf-8", file_error=True)
        except ConfigObjError as e:
            line = getattr(e, "line_number", None)
            msg = str(e).split(" at line ")[0]
            raise ConfigError(f"{p}{':' + str(line) if line else ''}: {msg}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not UTF-8 text") from None
    else:
        cfg = ConfigObj(configspec=spec, encoding="utf-8", default_encoding="utf-8")
        if p is not None:
            cfg.filename = str(p)
    _decimal_commas(cfg, spec, p, ())
    _validate(cfg, p)
    return Config(cfg, p)


def load_for_run(path: str | os.PathLike) -> Config:
    """The appliance's own configuration: it must exist and say something. Running on the defaults
    because a file is missing or empty would drop every password and device without a word."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such configuration file (start from the etc/ampgate.conf shipped with Ampgate)")
    cfg = load(p)
    if not any(_explicit(cfg.data).values()):
        raise ConfigError(f"{p}: the file is empty (cut off?); start from the etc/ampgate.conf shipped with Ampgate")
    return cfg
