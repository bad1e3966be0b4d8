"""Load generator for bench/ocpp_server.py (its own process, asyncio + websockets, the same for
every server): N stations each send Heartbeat and MeterValues (or Heartbeat only) back to back for
D seconds.
Prints "go" when every station has booted, then one JSON line: messages, seconds, and
round-trip percentiles."""
import argparse
import asyncio
import json
import ssl
import time
from datetime import datetime, timezone

import websockets


def meter_frame(i: int) -> str:
    ts = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    sampled = [{"value": "10.0", "measurand": "Current.Import", "phase": f"L{p}", "unit": "A"} for p in (1, 2, 3)]
    sampled += [{"value": "6900", "measurand": "Power.Active.Import", "unit": "W"},
                {"value": str(1000 + i), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
    return json.dumps([2, f"m{i}", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": ts, "sampledValue": sampled}]}])


async def station(url: str, ctx, rtts: list, ready: asyncio.Event, gate: asyncio.Event) -> None:
    async with websockets.connect(url, subprotocols=["ocpp1.6"], ssl=ctx, ping_interval=None, open_timeout=60) as ws:
        await ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "bench", "chargePointModel": "load"}]))
        await ws.recv()
        ready.set()
        await gate.wait()
        if HOLD[0]:
            await asyncio.sleep(HOLD[0])
            return
        i = 0
        while time.monotonic() < STOP_AT[0]:
            i += 1
            heartbeat = KIND[0] == "heartbeat" or (KIND[0] == "both" and i % 2)
            frame = json.dumps([2, f"h{i}", "Heartbeat", {}]) if heartbeat else meter_frame(i)
            t0 = time.perf_counter()
            await ws.send(frame)
            while True:   # skip CALLs the server may send us (ours configures smart charging)
                answer = await ws.recv()
                if answer.startswith("[3") or answer.startswith("[4"):
                    break
                msg = json.loads(answer)
                await ws.send(json.dumps([3, msg[1], {"status": "Accepted"} if msg[2] != "GetConfiguration" else {}]))
            rtts.append(time.perf_counter() - t0)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--stations", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--kind", default="both", choices=["both", "heartbeat", "meter"],
                    help="what each station sends (default: Heartbeat and MeterValues in turn)")
    ap.add_argument("--hold", type=float, default=0, help="connect and boot, print 'held', stay idle this long")
    args = ap.parse_args()
    KIND[0] = args.kind
    ctx = None
    if args.base.startswith("wss"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    rtts: list[float] = []
    gate = asyncio.Event()
    readies = [asyncio.Event() for _ in range(args.stations)]
    tasks = []
    for n in range(args.stations):
        tasks.append(asyncio.create_task(station(f"{args.base}/BENCH{n}", ctx, rtts, readies[n], gate)))
        await asyncio.sleep(0.002)
    await asyncio.gather(*(r.wait() for r in readies))
    if args.hold:
        HOLD[0] = args.hold
        print("held", flush=True)
        gate.set()
        await asyncio.gather(*tasks)
        return
    print("go", flush=True)   # every station booted: the measured window opens
    start = time.monotonic()
    STOP_AT[0] = start + args.seconds
    gate.set()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    rtts.sort()
    pick = lambda q: rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1000  # noqa: E731
    print(json.dumps({"messages": len(rtts), "seconds": elapsed, "p50_ms": pick(0.5), "p99_ms": pick(0.99)}))


HOLD = [0.0]
KIND = ["both"]
STOP_AT = [float("inf")]   # set once every station is connected and booted

if __name__ == "__main__":
    asyncio.run(main())
