"""Load-management reaction time: from a car's StartTransaction to the SetChargingProfile that
lets it charge, with N simulated OCPP wallboxes connected to a real `ampgate run` process.

Printed beside the floor measured in the same run: the round trip of a plain Heartbeat from the
same wallboxes (what the websocket + RPC path costs without any decision). The reaction includes
any wait for the controller's event budget (three back-to-back cycles, then one per 0.2 s).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from appliance.sim.ocpp_wallbox import SimWallbox  # noqa: E402
from common import free_port, wait_port  # noqa: E402

BOXES = int(os.environ.get("BENCH_BOXES", 100))
STARTS = int(os.environ.get("BENCH_STARTS", 60))
SPACING_S = 1.2   # cars arriving this far apart never exhaust the controller's event budget


class TimedBox(SimWallbox):
    """Notes when a profile that lets its car charge arrives."""

    granted_at: float | None = None

    def on_SetChargingProfile(self, p):  # noqa: N802 (OCPP action name)
        answer = super().on_SetChargingProfile(p)
        limit = p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
        if answer["status"] == "Accepted" and float(limit) >= 6 and self.granted_at is None:
            self.granted_at = time.perf_counter()
        return answer


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ampgate-lmbench-"))
    port = free_port()
    devices = "".join(f"[[box{i}]]\ntype = ocpp16\naddress = BOX{i}\n" for i in range(BOXES))
    conf = work / "ampgate.conf"
    conf.write_text(f"[ocpp_server]\nport = {port}\nbind = 127.0.0.1\nping_interval = 0\n"
                    f"[load_management]\nmax_current_per_phase = {16 * BOXES + 10}\nmax_imbalance = 5000\n"
                    f"[devices]\n{devices}", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--no-web", "--log-level", "warning",
                             "--config", str(conf), "--data", str(work / "var")], env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        wait_port(port)
        boxes = [TimedBox(f"ws://127.0.0.1:{port}/BOX{i}", meter_interval=3600) for i in range(BOXES)]
        gevent.joinall([gevent.spawn(b.connect) for b in boxes], raise_error=True)
        time.sleep(4)   # every box configured (baseline at 0 A)
        floor = []
        for b in boxes[:STARTS]:
            t0 = time.perf_counter()
            b.client.call("Heartbeat", {})
            floor.append(time.perf_counter() - t0)
        reactions = []
        random.seed(1)
        for b in random.sample(boxes, STARTS):
            t0 = time.perf_counter()
            b.start(1)
            while b.granted_at is None and time.perf_counter() - t0 < 10:
                gevent.sleep(0.001)
            if b.granted_at is not None:
                reactions.append(b.granted_at - t0)
            gevent.sleep(SPACING_S)
        print(f"Load-management reaction: {BOXES} OCPP wallboxes connected, {len(reactions)} car starts "
              f"{SPACING_S:g} s apart (appliance in its own process)")
        print(f"  StartTransaction -> SetChargingProfile >= 6 A: p50 {pct(reactions, .5):.1f} ms, "
              f"p99 {pct(reactions, .99):.1f} ms, mean {statistics.mean(reactions) * 1000:.1f} ms")
        print(f"  floor, Heartbeat round trip on the same links: p50 {pct(floor, .5):.2f} ms, p99 {pct(floor, .99):.2f} ms")
        for b in boxes:
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
