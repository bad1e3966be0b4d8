"""A wallbox built with the `ocpp` package from PyPI (its ChargePoint on `websockets`): code we did
not write, talking to our central system. Runs in its own process (asyncio).

Prints one JSON line per event on stdout; reads commands from stdin, one per line:
  boot | start TAG | meter AMPS | stop | quit
It handles the smart-charging calls a central system sends and prints the limit in effect
({"event": "limit", "limit": A or null, "t": monotonic}) whenever it changes.
"""
import argparse
import asyncio
import json
import ssl
import sys
import time
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

NOMINAL_V = 230.0


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def emit(**event) -> None:
    print(json.dumps(event), flush=True)


class Box(ChargePoint):
    def __init__(self, *a, reject=False, **kw):
        super().__init__(*a, **kw)
        self.reject = reject
        self.profiles = {}      # chargingProfileId -> (connector, profile)
        self.tx_id = None
        self.energy = 1000
        self.limit = None

    def _effective(self):
        limits = []
        for _connector, p in self.profiles.values():
            sched = p["charging_schedule"]
            period = sched["charging_schedule_period"][0]
            value = float(period["limit"])
            if sched["charging_rate_unit"] == "W":
                value /= NOMINAL_V * period.get("number_phases", 3)
            limits.append(value)
        return min(limits) if limits else None

    def _changed(self):
        limit = self._effective()
        if limit != self.limit:
            self.limit = limit
            emit(event="limit", limit=limit, t=time.monotonic())

    @on(Action.set_charging_profile)
    def on_set(self, connector_id, cs_charging_profiles, **_):
        if self.reject:
            return call_result.SetChargingProfile(status="Rejected")
        pid = cs_charging_profiles["charging_profile_id"]
        self.profiles[pid] = (connector_id, cs_charging_profiles)
        self._changed()
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear(self, id=None, connector_id=None, charging_profile_purpose=None, stack_level=None, **_):
        gone = [pid for pid, (c, p) in self.profiles.items()
                if (id is None or pid == id) and (connector_id is None or c == connector_id)
                and (charging_profile_purpose is None or p["charging_profile_purpose"] == charging_profile_purpose)]
        for pid in gone:
            del self.profiles[pid]
        self._changed()
        return call_result.ClearChargingProfile(status="Accepted" if gone else "Unknown")

    @on(Action.get_configuration)
    def on_get_configuration(self, key=None, **_):
        return call_result.GetConfiguration(configuration_key=[
            {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"}])

    async def boot(self):
        r = await self.call(call.BootNotification(charge_point_model="PyPI-ocpp", charge_point_vendor="mobilityhouse"))
        emit(event="boot", status=r.status, interval=r.interval)
        await self.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))

    async def start_tx(self, tag):   # ChargePoint.start is the package's receive loop
        await self.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        a = await self.call(call.Authorize(id_tag=tag))
        r = await self.call(call.StartTransaction(connector_id=1, id_tag=tag, meter_start=self.energy, timestamp=now()))
        self.tx_id = r.transaction_id
        await self.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        emit(event="started", transaction_id=r.transaction_id, authorize=a.id_tag_info["status"],
             status=r.id_tag_info["status"], t=time.monotonic())

    async def meter(self, amps):
        self.energy += 500
        sampled = [{"value": f"{amps:.1f}", "measurand": "Current.Import", "phase": f"L{i}", "unit": "A"}
                   for i in (1, 2, 3)]
        sampled.append({"value": str(self.energy), "measurand": "Energy.Active.Import.Register", "unit": "Wh"})
        await self.call(call.MeterValues(connector_id=1, transaction_id=self.tx_id,
                                         meter_value=[{"timestamp": now(), "sampled_value": sampled}]))
        emit(event="meter", energy=self.energy)

    async def stop(self):
        emit(event="stopping", t=time.monotonic())
        r = await self.call(call.StopTransaction(meter_stop=self.energy + 500, timestamp=now(),
                                                 transaction_id=self.tx_id, reason="Local", id_tag="TAG"))
        await self.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
        emit(event="stopped", id_tag_info=r.id_tag_info)


async def commands(box: Box):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().split()
        if not line or line[0] == "quit":
            return
        if line[0] == "boot":
            await box.boot()
        elif line[0] == "start":
            await box.start_tx(line[1] if len(line) > 1 else "TAG")
        elif line[0] == "meter":
            await box.meter(float(line[1]))
        elif line[0] == "stop":
            await box.stop()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--ca", help="verify the server with this CA file")
    ap.add_argument("--reject", action="store_true", help="reject every charging profile")
    args = ap.parse_args()
    ctx = None
    if args.url.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.check_hostname = False if not args.ca else ctx.check_hostname
    async with websockets.connect(args.url, subprotocols=["ocpp1.6"], ssl=ctx) as ws:
        box = Box(args.url.rsplit("/", 1)[-1], ws, reject=args.reject)
        emit(event="connected", subprotocol=ws.subprotocol)
        runner = asyncio.create_task(box.start())  # the package's receive loop
        try:
            await commands(box)
        finally:
            runner.cancel()


if __name__ == "__main__":
    asyncio.run(main())
