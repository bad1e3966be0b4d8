"""The peer for bench/ocpp_server.py: a central system written with the `ocpp` package (its asyncio
ChargePoint on `websockets`), answering the same messages our server answers in the benchmark.
It stores nothing; ours persists every MeterValues before answering."""
import argparse
import asyncio
import ssl
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, RegistrationStatus


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Station(ChargePoint):
    @on(Action.boot_notification)
    def on_boot(self, **_):
        return call_result.BootNotification(current_time=now(), interval=300, status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self):
        return call_result.Heartbeat(current_time=now())

    @on(Action.meter_values)
    def on_meter_values(self, **_):
        return call_result.MeterValues()


async def handle(ws):
    await Station(ws.request.path.rsplit("/", 1)[-1], ws).start()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", help="PEM with key and certificate: serve wss")
    args = ap.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert)
    async with websockets.serve(handle, "127.0.0.1", args.port, subprotocols=["ocpp1.6"], ssl=ctx,
                                ping_interval=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
