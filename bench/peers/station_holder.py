"""Many idle stations for bench/scale.py (its own process, asyncio + websockets).

Connects N stations (spread over source addresses 127.0.0.2... so that no address passes the
server's per-address cap), boots each, then stays idle answering pings. Prints "held N SECONDS"
once all are booted. Commands on stdin:
  storm K     K stations drop their connection and reconnect at once (a power cut ends);
              prints "storm SECONDS" once all K are booted again
  quit
"""
import argparse
import asyncio
import json
import resource
import ssl
import sys
import time

import websockets

BOOT = json.dumps([2, "b", "BootNotification", {"chargePointVendor": "bench", "chargePointModel": "idle"}])
PER_ADDRESS = 200


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Station:
    def __init__(self, base: str, n: int, ctx):
        self.url = f"{base}/IDLE{n}"
        self.source = f"127.0.{2 + n // PER_ADDRESS // 250}.{2 + n // PER_ADDRESS % 250}"
        self.ctx = ctx
        self.ws = None

    async def connect(self) -> None:
        for attempt in range(50):
            try:
                self.ws = await websockets.connect(self.url, subprotocols=["ocpp1.6"], ssl=self.ctx, ping_interval=None,
                                                   open_timeout=120, local_addr=(self.source, 0), max_queue=4)
                await self.ws.send(BOOT)
                await self.ws.recv()
                return
            except (OSError, websockets.exceptions.WebSocketException, asyncio.TimeoutError):
                await asyncio.sleep(0.2 + attempt * 0.1)   # refused or reset in a storm: retry as stations do
        raise RuntimeError(f"{self.url}: could not connect")

    async def reconnect(self) -> None:
        self.ws.transport.abort()   # no close handshake: the power went
        await self.connect()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--stations", type=int, default=10000)
    args = ap.parse_args()
    raise_open_files()
    ctx = None
    if args.base.startswith("wss"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    stations = [Station(args.base, n, ctx) for n in range(args.stations)]
    t0 = time.monotonic()
    for i in range(0, len(stations), 100):   # in steps, as a site's stations come up
        await asyncio.gather(*(s.connect() for s in stations[i:i + 100]))
    print(f"held {len(stations)} {time.monotonic() - t0:.1f}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().split()
        if not line or line[0] == "quit":
            return
        if line[0] == "storm":
            t0 = time.monotonic()
            await asyncio.gather(*(s.reconnect() for s in stations[:int(line[1])]))
            print(f"storm {time.monotonic() - t0:.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
