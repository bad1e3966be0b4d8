"""A wallbox built with the `ocpp` package (asyncio, `websockets`) that sends whatever the test says
and answers whatever a central system asks. Runs in its own process.

stdin:  send N Action {json payload in the package's snake_case}  -> {"event": "result"|"error", "n", ...}
stdout: {"event": "connected"} | {"event": "rx", "action", "payload"} for each CALL it got (answered
        Accepted, or as the action's answer needs) | results.
"""
import argparse
import asyncio
import dataclasses
import json
import sys

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action


def emit(**event) -> None:
    print(json.dumps(event, default=str), flush=True)


class Box(ChargePoint):
    def _got(self, action, **payload):
        emit(event="rx", action=action, payload=payload)

    @on(Action.remote_start_transaction)
    def on_remote_start(self, **kw):
        self._got("RemoteStartTransaction", **kw)
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, **kw):
        self._got("RemoteStopTransaction", **kw)
        return call_result.RemoteStopTransaction(status="Accepted")

    @on(Action.reset)
    def on_reset(self, **kw):
        self._got("Reset", **kw)
        return call_result.Reset(status="Accepted")

    @on(Action.unlock_connector)
    def on_unlock(self, **kw):
        self._got("UnlockConnector", **kw)
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.change_availability)
    def on_availability(self, **kw):
        self._got("ChangeAvailability", **kw)
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.get_configuration)
    def on_get_configuration(self, **kw):
        self._got("GetConfiguration", **kw)
        return call_result.GetConfiguration(configuration_key=[
            {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
            {"key": "LightIntensity", "readonly": False, "value": "70"}])

    @on(Action.change_configuration)
    def on_change_configuration(self, **kw):
        self._got("ChangeConfiguration", **kw)
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.trigger_message)
    def on_trigger(self, **kw):
        self._got("TriggerMessage", **kw)
        return call_result.TriggerMessage(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, **kw):
        self._got("DataTransfer", **kw)
        return call_result.DataTransfer(status="Accepted", data="box saw it")

    @on(Action.get_diagnostics)
    def on_diagnostics(self, **kw):
        self._got("GetDiagnostics", **kw)
        return call_result.GetDiagnostics(file_name="diag.log")

    @on(Action.update_firmware)
    def on_firmware(self, **kw):
        self._got("UpdateFirmware", **kw)
        return call_result.UpdateFirmware()

    @on(Action.reserve_now)
    def on_reserve(self, **kw):
        self._got("ReserveNow", **kw)
        return call_result.ReserveNow(status="Accepted")

    @on(Action.cancel_reservation)
    def on_cancel(self, **kw):
        self._got("CancelReservation", **kw)
        return call_result.CancelReservation(status="Accepted")

    @on(Action.get_local_list_version)
    def on_list_version(self, **kw):
        self._got("GetLocalListVersion", **kw)
        return call_result.GetLocalListVersion(list_version=3)

    @on(Action.send_local_list)
    def on_send_list(self, **kw):
        self._got("SendLocalList", **kw)
        return call_result.SendLocalList(status="Accepted")

    @on(Action.clear_cache)
    def on_clear_cache(self, **kw):
        self._got("ClearCache", **kw)
        return call_result.ClearCache(status="Accepted")

    @on(Action.set_charging_profile)
    def on_set_profile(self, **kw):
        self._got("SetChargingProfile", **kw)
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear_profile(self, **kw):
        self._got("ClearChargingProfile", **kw)
        return call_result.ClearChargingProfile(status="Accepted")


async def send(box, n, action, payload):
    try:
        result = await box.call(getattr(call, action)(**payload), suppress=False)
        emit(event="result", n=n, action=action, payload=dataclasses.asdict(result))
    except Exception as e:   # noqa: BLE001 - reported to the test
        emit(event="error", n=n, action=action, error=f"{type(e).__name__}: {e}")


async def commands(box):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode()
        if not line or line.strip() == "quit":
            return
        parts = line.split(" ", 3)
        if parts[0] == "send":
            await send(box, int(parts[1]), parts[2], json.loads(parts[3]))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    args = ap.parse_args()
    async with websockets.connect(args.url, subprotocols=["ocpp1.6"], ping_interval=None) as ws:
        box = Box(args.url.rsplit("/", 1)[-1], ws)
        emit(event="connected")
        runner = asyncio.create_task(box.start())
        try:
            await commands(box)
        finally:
            runner.cancel()


if __name__ == "__main__":
    asyncio.run(main())
