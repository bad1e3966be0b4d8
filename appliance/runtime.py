"""The appliance's live state, shared by the servers, load management, the page and the console.

Nothing here starts sockets: `appliance.app` does the wiring. Tests build a Runtime directly.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gevent.lock import RLock

from appliance.config import Config
from appliance.devices import registry
from appliance.devices.base import Device
from appliance.domain import EventBus
from appliance.events import EventLog
from appliance.ocpp import unmanaged
from appliance.ocpp.stations import Listings, Stations
from appliance.recorder import Recorder
from appliance.store import Store

if TYPE_CHECKING:
    from appliance.gateway.service import Gateway
    from appliance.lm.controller import Controller
    from appliance.ocpp.server import OcppServer

log = logging.getLogger("ampgate.runtime")


class Runtime:
    def __init__(self, config: Config, data_dir: str | Path):
        self.config = config
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.data_dir / "ampgate.db")
        self.events = EventLog(self.store)
        self.devices: dict[str, Device] = {}
        self.bus = EventBus()                                # devices' domain events, once recorded
        self.recorder = Recorder(self.store, self.bus)
        self.stations = Stations(self.store, self.devices,
                                 voltage=lambda: float(self.config.section("load_management")["voltage"]),
                                 limits_changed=lambda: self.lm_trigger())
        self.lm_status: dict[str, Any] = {}                  # filled by the load-management controller
        self.started = time.time()
        self.setup_errors: dict[str, str] = {}               # device name -> why it could not be set up
        self.offline_at: dict[str, float | None] = {}        # device name -> since when offline (status())
        self.overrides: dict[str, Any] = {}                  # device name -> boxactions.Override (charge now, pause)
        self.restart: Callable[[], None] | None = None       # set by `ampgate run`: restart the process
        self.listeners: list[str] = []                       # "ocpp ws://0.0.0.0:19520", ...
        self.on_reload: list[Callable[[], None]] = []        # run after the device list changed
        self.ocpp: OcppServer | None = None                  # the parts, once started
        self.lm_controller: Controller | None = None
        self.gateway: Gateway | None = None
        # set by the load-management controller: ask for an extra cycle (plug-in, stop, device loss)
        self.lm_trigger: Callable[[], None] = lambda: None
        self._reloading = RLock()   # a page save and the file watcher may reload at the same time

    @property
    def unconfigured(self) -> Listings:
        """chargeBoxId -> what we know of a station nobody configured (the adoption list)."""
        return self.stations.unconfigured

    # -- devices --------------------------------------------------------------------------------------
    def load_devices(self) -> None:
        """(Re)build the device objects from the configuration, keeping those whose settings did
        not change so their connections and state survive an edit of another device. One reload at
        a time: stopping a device yields, and a second reload meanwhile would remove it twice."""
        with self._reloading:
            self._load_devices()

    def _load_devices(self) -> None:
        wanted = self.config.devices()
        lm = self.config.section("load_management")
        for name in [n for n in self.devices if n not in wanted or self.devices[n].settings != wanted[n]]:
            if name not in wanted and self._retire(self.devices[name], lm["mode"]):
                continue
            self.devices.pop(name).stop()
        for name, settings in wanted.items():
            if name not in self.devices:
                try:
                    dev = registry.build(name, settings, self)
                except Exception as e:
                    self.events.error(f"cannot set up device: {e}", name)
                    self.setup_errors[name] = str(e)
                    continue
                self.setup_errors.pop(name, None)
                self.devices[name] = dev
                dev.start()
        for cb in self.on_reload:
            cb()

    def _offline_since(self, name: str, online: bool) -> float | None:
        """When the device was last seen going offline (Unix time; the start when it never came)."""
        since = self.offline_at.get(name)
        if online:
            self.offline_at[name] = None      # None: seen online, the next loss is timed from then
            return None
        if since is None:
            since = self.offline_at[name] = time.time() if name in self.offline_at else self.started
        return since

    def _retire(self, dev: Device, mode: str) -> bool:
        """A wallbox removed from the configuration may still let its car draw: it stays, inactive
        (load management leaves it as on_deactivate says and counts it), until `drop_retired`.
        True when it stays. In monitor mode nothing is counted or commanded: it goes at once."""
        if getattr(dev, "retired", False):
            return True
        if not dev.is_evse or mode != "active":
            return False
        dev.retired = True   # type: ignore[attr-defined]
        dev.settings = {**dev.settings, "active": False}
        self.events.info("removed from the configuration; left as on_deactivate says and counted until "
                         "its car stops or it disconnects", dev.name)
        return True

    def drop_retired(self, name: str) -> None:
        """A removed wallbox whose car stopped (or that disconnected) leaves the budget."""
        dev = self.devices.get(name)
        if dev is not None and getattr(dev, "retired", False):
            del self.devices[name]
            dev.stop()
            self.events.info("removed wallbox no longer counted: its car stopped or it disconnected", name)

    def find_ocpp(self, charge_box_id: str, connector: int) -> Device | None:
        return self.stations.device(charge_box_id, connector)

    # -- status for the API and the page ------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        lm = self.config.section("load_management")
        devices = []
        for dev in self.devices.values():
            st = dev.status()
            devices.append({
                "name": st.name, "type": st.type, "online": st.online, "state": st.state,
                "offline_since": self._offline_since(st.name, st.online),
                "override": self.overrides[st.name].public() if st.name in self.overrides else None,
                "limit_a": st.limit_a, "currents_a": list(st.currents_a), "power_w": st.power_w,
                "energy_wh": st.energy_wh, "transaction": st.transaction, "id_tag": st.id_tag,
                "reason": st.reason, "error": st.error, "active": bool(dev.settings.get("active", True)),
                "removed": bool(getattr(dev, "retired", False)),
                "gateway": self.gateway.device_status(dev.name) if self.gateway is not None else None,
                **st.extra,
            })
        currents = [round(sum(d["currents_a"][i] for d in devices if d["type"] in ("ocpp16", "powerbrain")), 1)
                    for i in range(3)]
        return {
            "mode": lm["mode"],
            "uptime_s": round(time.time() - self.started),
            "limit_a": lm["max_current_per_phase"],
            "devices": devices,
            "unconfigured": [{"charge_box_id": k, **v, "state": unmanaged.shown(v)}
                             for k, v in sorted(self.unconfigured.items())],
            "totals": {
                "currents_a": currents,
                "limits_a": sum(d["limit_a"] or 0 for d in devices),
                "power_w": sum(d["power_w"] or 0 for d in devices if d["type"] in ("ocpp16", "powerbrain")),
                "charging": sum(1 for d in devices if d["state"] == "charging"),
            },
            "load_management": dict(self.lm_status),
        }

    def close(self) -> None:
        for dev in list(self.devices.values()):
            dev.stop()
        self.events.store = None   # greenlets still finishing log to the process log only
        self.store.close()
