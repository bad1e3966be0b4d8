"""Which class drives which configured device type. Imported lazily so a process that has no
Modbus devices never imports pymodbus."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from appliance.devices.base import Device

if TYPE_CHECKING:
    from appliance.runtime import Runtime

FACTORIES = {
    "ocpp16": "appliance.devices.ocpp_evse:OcppEvse",
    "powerbrain": "appliance.devices.powerbrain:PowerBrainEvse",
    "sdm630": "appliance.devices.meters:Sdm630Meter",
    "powerbrain_s0": "appliance.devices.meters:PowerBrainS0Meter",
    "control_box": "appliance.devices.meters:ControlBox",
}


def device_class(kind: str) -> type[Device]:
    module_name, _, cls = FACTORIES[kind].partition(":")
    return getattr(importlib.import_module(module_name), cls)


def build(name: str, settings: dict[str, Any], runtime: "Runtime") -> Device:
    return device_class(settings["type"])(name, settings, runtime)
