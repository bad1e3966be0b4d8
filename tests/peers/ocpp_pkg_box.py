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


# what the box answers to each call from a central system (the package's answer classes)
ANSWERS = {
    "RemoteStartTransaction": lambda: call_result.RemoteStartTransaction(status="Accepted"),
    "RemoteStopTransaction": lambda: call_result.RemoteStopTransaction(status="Accepted"),
    "Reset": lambda: call_result.Reset(status="Accepted"),
    "UnlockConnector": lambda: call_result.UnlockConnector(status="Unlocked"),
    "ChangeAvailability": lambda: call_result.ChangeAvailability(status="Accepted"),
    "GetConfiguration": lambda: call_result.GetConfiguration(configuration_key=[
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
        {"key": "LightIntensity", "readonly": False, "value": "70"}]),
    "ChangeConfiguration": lambda: call_result.ChangeConfiguration(status="Accepted"),
    "TriggerMessage": lambda: call_result.TriggerMessage(status="Accepted"),
    "DataTransfer": lambda: call_result.DataTransfer(status="Accepted", data="box saw it"),
    "GetDiagnostics": lambda: call_result.GetDiagnostics(file_name="diag.log"),
    "UpdateFirmware": lambda: call_result.UpdateFirmware(),
    "ReserveNow": lambda: call_result.ReserveNow(status="Accepted"),
    "CancelReservation": lambda: call_result.CancelReservation(status="Accepted"),
    "GetLocalListVersion": lambda: call_result.GetLocalListVersion(list_version=3),
    "SendLocalList": lambda: call_result.SendLocalList(status="Accepted"),
    "ClearCache": lambda: call_result.ClearCache(status="Accepted"),
    "SetChargingProfile": lambda: call_result.SetChargingProfile(status="Accepted"),
    "ClearChargingProfile": lambda: call_result.ClearChargingProfile(status="Accepted"),
}


def _handler(action):
    def handle(self, **payload):
        emit(event="rx", action=action, payload=payload)
        return ANSWERS[action]()
    handle.__name__ = f"on_{action}"        # the package finds handlers by the attribute's name
    return on(Action(action))(handle)


Box = type("Box", (ChargePoint,), {f"on_{action}": _handler(action) for action in ANSWERS})


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
