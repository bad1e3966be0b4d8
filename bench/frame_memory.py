"""What a large OCPP message costs the appliance: peak RSS growth while it takes one StopTransaction
of a given size (a day of 15-minute signed samples is ~130 KB), within the frame limit (parsed,
validated, stored) and over it (read shallow: the Stop without its transactionData). Beside it, the
RSS an idle connection costs, for scale. Run: python bench/frame_memory.py"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import websocket  # noqa: E402

from appliance_proc import ApplianceProcess  # noqa: E402

TS = "2026-12-01T10:00:00Z"
IDLE = 100


def stop_of(tx_id: int, size: int) -> str:
    sample = {"timestamp": TS, "sampledValue": [{"value": "A" * 1200, "format": "SignedData"}]}
    n = max(1, size // len(json.dumps(sample)))
    return json.dumps([2, "t", "StopTransaction", {"transactionId": tx_id, "meterStop": 2, "timestamp": TS,
                                                    "transactionData": [sample] * n}])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = ApplianceProcess(Path(tmp))
        try:
            base = app.rss_kb()
            idle = [websocket.create_connection(app.url(f"IDLE{i}"), subprotocols=["ocpp1.6"]) for i in range(IDLE)]
            per_conn = (app.rss_kb() - base) / IDLE
            ws = websocket.create_connection(app.url("BIG"), subprotocols=["ocpp1.6"], timeout=60)
            print(f"idle connection: {per_conn:.0f} KiB RSS each ({IDLE} connected)")
            print(f"{'StopTransaction':>16} {'peak RSS growth':>16}  handled as")
            for i, size in enumerate((10_000_000, 50_000_000, 130_000, 1_000_000)):   # peaks only rise: small last
                ws.send(json.dumps([2, f"s{i}", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 1,
                                                                    "timestamp": TS}]))
                tx = json.loads(ws.recv())[2]["transactionId"]
                before = app.peak_kb()
                ws.send(stop_of(tx, size))
                answer = json.loads(ws.recv())
                grew = (app.peak_kb() - before) / 1024
                print(f"{size / 1e6:>13.2f} MB {grew:>13.1f} MiB  "
                      f"{'answered' if answer[0] == 3 else answer}, {'whole' if size < 1 << 20 else 'shallow'}")
            for c in idle + [ws]:
                c.close()
        finally:
            app.stop()


if __name__ == "__main__":
    main()
