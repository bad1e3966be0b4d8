"""A billing backend built with the `ocpp` package (its ChargePoint on `websockets`, asyncio): code we
did not write, at the far end of the gateway. Runs in its own process.

Prints one JSON line per event on stdout:
  {"event": "ready"} | {"event": "connected", "cp", "auth"} | {"event": "rx", "cp", "raw"} (every frame
  it receives, byte for byte) | {"event": "result", "n", "action", "payload"} | {"event": "error", "n", ...}
Reads commands from stdin, one per line:
  call N CPID Action {json payload in the package's snake_case}   -> a "result"/"error" line with N
--mode callerror|garbage|silent makes it answer every CALL with a CALLERROR, a broken frame, or nothing.
Authorize answers Invalid for tags starting with "BAD". Transaction ids start at 5000.
"""
import argparse
import asyncio
import base64
import dataclasses
import json
import ssl
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, RegistrationStatus

STATIONS = {}
NEXT_TX = [5000]


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def emit(**event) -> None:
    print(json.dumps(event, default=float), flush=True)   # the package reads numbers as Decimal


class Backend(ChargePoint):
    mode = ""

    async def route_message(self, raw_msg):
        emit(event="rx", cp=self.id, raw=raw_msg)
        if raw_msg.lstrip("[ ").startswith("2") and self.mode:
            msg_id = json.loads(raw_msg)[1]
            if self.mode == "callerror":
                await self._send(json.dumps([4, msg_id, "InternalError", "backend broken", {}]))
            elif self.mode == "garbage":
                await self._send('[3, "' + msg_id + '", {not json')
            return   # silent: nothing
        await super().route_message(raw_msg)

    @on(Action.boot_notification)
    def on_boot(self, **_):
        return call_result.BootNotification(current_time=now(), interval=300, status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self):
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    def on_status(self, **_):
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag, **_):
        return call_result.Authorize(id_tag_info={"status": "Invalid" if id_tag.startswith("BAD") else "Accepted"})

    @on(Action.start_transaction)
    def on_start(self, id_tag, **_):
        NEXT_TX[0] += 1
        return call_result.StartTransaction(transaction_id=NEXT_TX[0], id_tag_info={"status": "Accepted"})

    @on(Action.stop_transaction)
    def on_stop(self, **_):
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter_values(self, **_):
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, **_):
        return call_result.DataTransfer(status="Accepted", data="backend saw " + vendor_id)

    @on(Action.diagnostics_status_notification)
    def on_diag(self, **_):
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_fw(self, **_):
        return call_result.FirmwareStatusNotification()


async def handle(ws):
    cp_id = ws.request.path.rsplit("/", 1)[-1]
    auth = ws.request.headers.get("Authorization")
    if auth:
        auth = base64.b64decode(auth.split()[1]).decode()
    cert = ws.transport.get_extra_info("peercert") if ws.transport else None
    client_cn = dict(x[0] for x in cert["subject"]).get("commonName") if cert else None
    emit(event="connected", cp=cp_id, auth=auth, client_cn=client_cn)
    box = Backend(cp_id, ws)
    STATIONS[cp_id] = box
    try:
        await box.start()
    except websockets.ConnectionClosed:
        pass
    finally:
        if STATIONS.get(cp_id) is box:
            del STATIONS[cp_id]
        emit(event="disconnected", cp=cp_id)


async def run_call(n, cp_id, action, payload):
    try:
        result = await STATIONS[cp_id].call(getattr(call, action)(**payload), suppress=False)
        emit(event="result", n=n, action=action, payload=dataclasses.asdict(result))
    except Exception as e:   # noqa: BLE001 - reported to the test
        emit(event="error", n=n, action=action, error=f"{type(e).__name__}: {e}")


async def commands():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode()
        if not line:
            return
        parts = line.split(" ", 4)
        if parts[0] == "call":
            asyncio.create_task(run_call(int(parts[1]), parts[2], parts[3], json.loads(parts[4])))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", help="PEM with key and certificate: serve wss")
    ap.add_argument("--client-ca", help="require a client certificate signed by this CA (Security Profile 3)")
    ap.add_argument("--mode", default="", choices=["", "callerror", "garbage", "silent"])
    args = ap.parse_args()
    Backend.mode = args.mode
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
    async with websockets.serve(handle, "127.0.0.1", args.port, subprotocols=["ocpp1.6"], ssl=ctx,
                                ping_interval=None):
        emit(event="ready")
        await commands()


if __name__ == "__main__":
    asyncio.run(main())
