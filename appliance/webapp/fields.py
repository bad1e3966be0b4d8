"""Form fields built from the configspec, so the page checks exactly what the file allows.

The spec (etc/ampgate.spec) gives each key's kind, range, options and default; this module adds what
the spec cannot say: a label, a line of help, and which device types use which key.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from configobj.validate import Validator

from appliance.config import DEVICE_TYPES_EVSE, _spec

GENERAL = ("label", "active")
MODBUS_LINK = ("port", "unit", "keep_connection")
CHARGING = ("min_current", "max_current", "phases", "phase_rotation", "priority", "offset", "fcfs", "fixed_rfid")
POWERBRAIN = ("phase_switching", "whole_amps", "failsafe_current", "failsafe_timeout")
BACKEND = ("signed_data", "gateway_url", "gateway_id", "gateway_password", "gateway_connector")
METER = GENERAL + MODBUS_LINK + ("role", "factor", "phases", "phase_rotation")

# which keys a device of each type has, in form order (groups: see GROUPS)
DEVICE_KEYS: dict[str, tuple[str, ...]] = {
    "ocpp16": GENERAL + ("address", "connector", "ocpp_password") + CHARGING + BACKEND,
    "powerbrain": GENERAL + MODBUS_LINK + CHARGING + POWERBRAIN + BACKEND,
    "sdm630": METER,
    "powerbrain_s0": METER,
}
TYPE_LABELS = {
    "ocpp16": "Wallbox with OCPP 1.6J",
    "powerbrain": "Power Brain wallbox (Modbus)",
    "sdm630": "SDM630 meter (Modbus)",
    "powerbrain_s0": "Power Brain S0 meter input",
}
# keys whose value is never sent back to a browser
SECRETS = {"password", "gateway_password", "ocpp_password", "key_password", "client_key_password", "password_hash"}

# label, help; keys not listed get their key as label
TEXT: dict[str, tuple[str, str]] = {
    "label": ("Label", "shown on the page only"),
    "active": ("Enabled", "off: kept in the configuration, not polled or controlled"),
    "address": ("chargeBoxId", "as configured in the wallbox (last part of its OCPP URL)"),
    "connector": ("Connector ID", "1 for a single connector"),
    "ocpp_password": ("Station password", "optional; only this wallbox's own, instead of the shared OCPP password"),
    "port": ("Port", "tcp://HOST:PORT or a serial device, e.g. /dev/ttyUSB0,9600,8,n,1"),
    "unit": ("Modbus unit ID", "distinct for boxes on one bus"),
    "keep_connection": ("Keep TCP connection", ""),
    "min_current": ("Min current (A)", "below it charging pauses; some cars need 8-9 A"),
    "max_current": ("Max current (A)", "per phase, what box, cable and circuit allow"),
    "phases": ("Phases", "0 = determine while charging"),
    "phase_rotation": ("Phase rotation (°)", "box L1 on building L1 (0), L2 (120) or L3 (240)"),
    "priority": ("Priority", "higher gets current first"),
    "offset": ("Current offset (A)", "added for a car that always draws less than offered"),
    "fcfs": ("First come, first served", "within a priority, earlier plug-in ranks higher"),
    "phase_switching": ("1p/3p switching", "needs the phase relay"),
    "whole_amps": ("Whole amps only", ""),
    "fixed_rfid": ("Fixed RFID", "idTag used when none was presented"),
    "failsafe_current": ("Failsafe current (A)", "used by the box on its own after losing us; 0 = stop"),
    "failsafe_timeout": ("Failsafe timeout (s)", "seconds without Modbus access before falling back"),
    "role": ("Meter role", "grid: at the connection point; consumption/generation: subtracted/added"),
    "factor": ("Factor", "current transformer ratio; negative inverts a reversed meter"),
    "signed_data": ("Signed meter data", "store the box's signed readings with the transaction"),
    "gateway_url": ("Backend URL", "optional ws:// or wss:// URL where this wallbox appears"),
    "gateway_id": ("Backend charge point ID", ""),
    "gateway_password": ("Backend password", ""),
    "gateway_connector": ("Backend connector ID", "0 = automatic"),
    # [load_management]
    "mode": ("Mode", "monitor: measure and show, command nothing"),
    "max_current_per_phase": ("Max total current per phase (A)", "what the grid connection supplies"),
    "reserve": ("Reserve (A)", "kept free so peaks do not trip fuses"),
    "max_wallbox_current": ("Max total wallbox current (A)", "separate wallbox line; 0 = none"),
    "voltage": ("System voltage (V)", ""),
    "max_imbalance": ("Max phase imbalance (A)", "usually 20 A (4.6 kW)"),
    "imbalance_incl_consumption": ("Imbalance incl. consumption", "off: charging cars only"),
    "pause_s": ("Charging pause (s)", "minimum length of a pause"),
    "rotation_s": ("Rotation interval (s)", ""),
    "delay_3p_s": ("Delay before 3-phase (s)", ""),
    "settle_s": ("Settle time (s)", ""),
    "cycle_s": ("Cycle time (s)", ""),
    "overdraft_penalty_s": ("Overdraft penalty (s)", ""),
    "comm_error_reduce": ("Reduce on communication error", ""),
    "on_deactivate": ("On deactivation", "how a box is left when control ends"),
    "tx_start": ("Transaction starts on", ""),
    # [ocpp_server] / [web]: "section.key" overrides a device key of the same name
    "ocpp_server.port": ("Port", "the wallboxes connect to ws://THIS-BOX:PORT/chargeBoxId"),
    "web.port": ("Port", "of this page"),
    "modbus.timeout": ("Timeout (s)", "per request"),
    "modbus.retries": ("Retries", ""),
    "offline_auth": ("Offline authorization", "while a backend is unreachable: cached idTags, all, or none"),
    "bind": ("Bind address", "0.0.0.0 = all interfaces"),
    "tls": ("TLS", "off: ws only; detect: ws and wss on one port; on: wss only"),
    "password": ("Password", "optional; wallboxes send it with HTTP Basic auth (user = chargeBoxId)"),
    "client_certs": ("Client certificates", "required: Security Profile 3"),
    "heartbeat_interval": ("Heartbeat interval (s)", ""),
    "handshake_timeout": ("Handshake timeout (s)", ""),
    "idle_timeout": ("Idle timeout (s)", ""),
    "ping_interval": ("Ping interval (s)", "0 = off"),
    "call_timeout": ("Call timeout (s)", ""),
    "max_message_bytes": ("Max message size (bytes)", ""),
    "max_connections_per_address": ("Connections per address", "at most, from one IP address; 0 = no limit"),
    "data_transfer_accept": ("Accept DataTransfer from", "vendorIds separated by spaces (e.g. a card terminal's)"),
}
# headings of the device form: the first key of each group
GROUPS = {"address": "Connection", "port": "Connection", "role": "Meter", "min_current": "Charging",
          "signed_data": "Billing and backend", "label": "General"}
# settings that only a restart of the process applies; None = the whole section
# The OCPP server copies its section when it starts (appliance/ocpp/server.py), so every key of it
# needs a restart for now; load management reads its section every cycle.
# Keys that take effect only after a restart (None: the whole section). The OCPP server reads its
# password, timeouts and ping interval live; its sockets and TLS set-up are made once at start.
RESTART_KEYS: dict[str, set[str] | None] = {
    "web": {"port", "bind"},
    "ocpp_server": {"port", "bind", "tls", "client_certs", "handshake_timeout", "max_message_bytes",
                    "max_connections_per_address"},
    "modbus": None,
    "gateway": None,
}
SECTION_KEYS: dict[str, tuple[str, ...] | None] = {   # None: every key of the section
    "load_management": None,
    "ocpp_server": None,
    "modbus": None,
    "gateway": None,
    "web": ("port", "bind"),
}


@dataclass
class Field:
    key: str
    kind: str                       # integer | float | boolean | option | string
    default: Any
    label: str
    help: str = ""
    options: list[str] = field(default_factory=list)
    min: str | None = None
    max: str | None = None
    secret: bool = False


def group_of(key: str) -> str | None:
    return GROUPS.get(key)


@functools.lru_cache(maxsize=1)
def _spec_once() -> Any:
    """The configspec does not change while the process runs; parse it once."""
    return _spec()


def _field(key: str, check: str, section: str = "devices") -> Field:
    kind, args, kwargs, default = Validator()._parse_with_caching(check)
    label, help_ = TEXT.get(f"{section}.{key}") or TEXT.get(key, (key, ""))
    f = Field(key=key, kind=kind, default=default, label=label, help=help_, secret=key in SECRETS)
    if kind == "option":
        f.options = list(args)
    elif kind in ("integer", "float"):
        f.min, f.max = (args + [None, None])[:2]
    elif kind == "string":
        f.max = kwargs.get("max")
    if kind == "boolean":
        f.default = str(default).lower() in ("true", "1", "on", "yes")
    return f


def section_fields(section: str) -> list[Field]:
    spec = _spec_once()[section]
    keys = SECTION_KEYS.get(section) or [k for k in spec.scalars if k not in SECRETS or k == "password"]
    return [_field(k, spec[k], section) for k in keys]


def device_fields(kind: str) -> list[Field]:
    spec = _spec_once()["devices"]["__many__"]
    return [_field(k, spec[k]) for k in DEVICE_KEYS[kind]]


def all_device_fields() -> dict[str, list[Field]]:
    return {kind: device_fields(kind) for kind in DEVICE_KEYS}


def is_evse(kind: str) -> bool:
    return kind in DEVICE_TYPES_EVSE


def public_values(values: dict[str, Any]) -> dict[str, Any]:
    """A device or section as it may be shown: secrets replaced by whether they are set."""
    out = {}
    for k, v in values.items():
        if k in SECRETS:
            out[k + "_set"] = bool(v)
        else:
            out[k] = v
    return out
