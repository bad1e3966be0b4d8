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
from appliance.i18n import N_, _

GENERAL = ("label", "active")
MODBUS_LINK = ("port", "unit", "keep_connection")
CHARGING = ("min_current", "max_current", "phases", "phase_rotation", "priority", "offset", "fcfs", "fixed_rfid")
POWERBRAIN = ("phase_switching", "whole_amps", "failsafe_current", "failsafe_timeout")
BACKEND = ("gateway_url", "gateway_id", "gateway_password", "gateway_connector")
METER = GENERAL + MODBUS_LINK + ("role", "factor", "phases", "phase_rotation")

# which keys a device of each type has, in form order (groups: see GROUPS)
DEVICE_KEYS: dict[str, tuple[str, ...]] = {
    "ocpp16": GENERAL + ("address", "connector", "ocpp_password") + CHARGING + BACKEND,
    "powerbrain": GENERAL + MODBUS_LINK + CHARGING + POWERBRAIN + BACKEND,
    "sdm630": METER,
    "powerbrain_s0": METER,
    "control_box": GENERAL + MODBUS_LINK + ("register",),
}
TYPE_LABELS = {
    "ocpp16": N_("Wallbox with OCPP 1.6J"),
    "powerbrain": N_("Power Brain wallbox (Modbus)"),
    "sdm630": N_("SDM630 meter (Modbus)"),
    "powerbrain_s0": N_("Power Brain S0 meter input"),
    "control_box": N_("Grid operator's control box (Modbus)"),
}
# keys whose value is never sent back to a browser
SECRETS = {"password", "gateway_password", "ocpp_password", "key_password", "client_key_password", "password_hash"}

# label, help; keys not listed get their key as label
TEXT: dict[str, tuple[str, str]] = {
    "label": (N_("Label"), N_("shown on the page only")),
    "active": (N_("Enabled"), N_("off: kept in the configuration, not polled or controlled")),
    "address": (N_("chargeBoxId"), N_("as configured in the wallbox (last part of its OCPP URL)")),
    "connector": (N_("Connector ID"), N_("1 for a single connector")),
    "ocpp_password": (N_("Station password"), N_("optional; only this wallbox's own, instead of the shared OCPP password")),
    "port": (N_("Port"), N_("tcp://HOST:PORT or a serial device, e.g. /dev/ttyUSB0,9600,8,n,1")),
    "unit": (N_("Modbus unit ID"), N_("distinct for boxes on one bus")),
    "keep_connection": (N_("Keep TCP connection"), ""),
    "min_current": (N_("Min current (A)"), N_("below it charging pauses; some cars need 8-9 A")),
    "max_current": (N_("Max current (A)"), N_("per phase, what box, cable and circuit allow")),
    "phases": (N_("Phases"), N_("0 = determine while charging")),
    "phase_rotation": (N_("Phase rotation (°)"), N_("box L1 on building L1 (0), L2 (120) or L3 (240)")),
    "priority": (N_("Priority"), N_("higher gets current first")),
    "offset": (N_("Current offset (A)"), N_("added for a car that always draws less than offered")),
    "fcfs": (N_("First come, first served"), N_("within a priority, earlier plug-in ranks higher")),
    "phase_switching": (N_("1p/3p switching"), N_("needs the phase relay")),
    "whole_amps": (N_("Whole amps only"), ""),
    "fixed_rfid": (N_("Fixed RFID"), N_("idTag used when none was presented")),
    "failsafe_current": (N_("Failsafe current (A)"), N_("used by the box on its own after losing us; 0 = stop")),
    "failsafe_timeout": (N_("Failsafe timeout (s)"), N_("seconds without Modbus access before falling back")),
    "role": (N_("Meter role"), N_("grid: at the connection point; consumption/generation: subtracted/added")),
    "factor": (N_("Factor"), N_("current transformer ratio; negative inverts a reversed meter")),
    "register": (N_("Holding register"), N_("non-zero: the grid operator limits the wallboxes (§14a EnWG)")),
    "gateway_url": (N_("Backend URL"), N_("optional ws:// or wss:// URL where this wallbox appears")),
    "gateway_id": (N_("Backend charge point ID"), ""),
    "gateway_password": (N_("Backend password"), ""),
    "gateway_connector": (N_("Backend connector ID"), N_("0 = automatic")),
    # [load_management]
    "mode": (N_("Mode"), N_("monitor: measure and show, command nothing")),
    "max_current_per_phase": (N_("Max total current per phase (A)"), N_("what the grid connection supplies")),
    "reserve": (N_("Reserve (A)"), N_("kept free so peaks do not trip fuses")),
    "max_wallbox_current": (N_("Max total wallbox current (A)"), N_("separate wallbox line; 0 = none")),
    "voltage": (N_("System voltage (V)"), ""),
    "max_imbalance": (N_("Max phase imbalance (A)"), N_("usually 20 A (4.6 kW)")),
    "imbalance_incl_consumption": (N_("Imbalance incl. consumption"), N_("off: charging cars only")),
    "pause_s": (N_("Charging pause (s)"), N_("minimum length of a pause")),
    "rotation_s": (N_("Rotation interval (s)"), ""),
    "delay_3p_s": (N_("Delay before 3-phase (s)"), ""),
    "settle_s": (N_("Settle time (s)"), ""),
    "cycle_s": (N_("Cycle time (s)"), ""),
    "overdraft_penalty_s": (N_("Overdraft penalty (s)"), ""),
    "grid_limit_source": (N_("Grid operator limit (§14a EnWG)"),
                          N_("signal from the HTTP API or a device (Power Brain S0 input, control box)")),
    "grid_limit_device": (N_("Grid operator signal device"), N_("name of the Power Brain or control box")),
    "grid_limit_input": (N_("Power Brain S0 input"), N_("1 or 2")),
    "grid_limit_kw_per_device": (N_("Dimmed power per device (kW)"), N_("4.2 kW by law")),
    "grid_limit_devices": (N_("Controllable devices"), N_("as registered with the grid operator; 0 = every wallbox")),
    "on_deactivate": (N_("On deactivation"), N_("how a box is left when control ends")),
    "tx_start": (N_("Transaction starts on"), ""),
    # [ocpp_server] / [web]: "section.key" overrides a device key of the same name
    "ocpp_server.port": (N_("Port"), N_("the wallboxes connect to ws://THIS-BOX:PORT/chargeBoxId")),
    "web.port": (N_("Port"), N_("of this page")),
    "modbus.timeout": (N_("Timeout (s)"), N_("per request")),
    "modbus.retries": (N_("Retries"), ""),
    "offline_auth": (N_("Offline authorization"), N_("while a backend is unreachable: cached idTags, all, or none")),
    "bind": (N_("Bind address"), N_("0.0.0.0 = all interfaces")),
    "tls": (N_("TLS"), N_("off: ws only; detect: ws and wss on one port; on: wss only")),
    "password": (N_("Password"), N_("optional; wallboxes send it with HTTP Basic auth (user = chargeBoxId)")),
    "client_certs": (N_("Client certificates"), N_("required: Security Profile 3")),
    "heartbeat_interval": (N_("Heartbeat interval (s)"), ""),
    "handshake_timeout": (N_("Handshake timeout (s)"), ""),
    "idle_timeout": (N_("Idle timeout (s)"), ""),
    "ping_interval": (N_("Ping interval (s)"), N_("0 = off")),
    "call_timeout": (N_("Call timeout (s)"), ""),
    "max_message_bytes": (N_("Max message size (bytes)"), ""),
    "max_connections_per_address": (N_("Connections per address"), N_("at most, from one IP address; 0 = no limit")),
    "storage_reserve_mb": (N_("Storage reserve (MiB)"), N_("below this much free space, meter values are no longer stored")),
    "data_transfer_accept": (N_("Accept DataTransfer from"), N_("vendorIds separated by spaces (e.g. a card terminal's)")),
}
# headings of the device form: the first key of each group
GROUPS = {"address": N_("Connection"), "port": N_("Connection"), "role": N_("Meter"), "min_current": N_("Charging"),
          "gateway_url": N_("Billing and backend"), "register": N_("Control signal"), "label": N_("General")}
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
    f = Field(key=key, kind=kind, default=default, label=_(label), help=_(help_) if help_ else "",
              secret=key in SECRETS)
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
