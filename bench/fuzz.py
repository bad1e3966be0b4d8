"""`make fuzz`: at least FUZZ_FRAMES (100,000) fuzzed frames against the running appliance process
(the strategies of tests/fuzzing.py: every 1.6 action, valid and broken), while a well-behaved
station in its own process sends a Heartbeat every 50 ms. Prints frames sent, crashes, frames the
server never answered, tracebacks in its log, RSS before and after, and the good station's
Heartbeat p99 while idle beside its p99 under fuzzing. Exit status 1 when anything went wrong."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from appliance_proc import ApplianceProcess  # noqa: E402
from fuzzing import Fuzzer, heartbeat_latencies, p99, sends  # noqa: E402

FRAMES = int(os.environ.get("FUZZ_FRAMES", 100_000))
IDLE_S = 5.0


def good_station(url: str) -> None:
    """Child process: Heartbeats until SIGTERM, one round trip (s) per line on stdout."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        for rtt in heartbeat_latencies(url, 1.0):
            print(rtt, flush=True)


def fuzz(fuzzer: Fuzzer, app: ApplianceProcess) -> int:
    """Until FRAMES were sent; returns how often the appliance died (and was started again)."""
    crashes = 0
    batch = 0
    while fuzzer.frames < FRAMES:
        batch += 1

        @settings(max_examples=2000, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def run(data: st.DataObject) -> None:
            item = data.draw(sends())     # always drawn: hypothesis wants the same draws on a replay
            if fuzzer.frames < FRAMES:
                fuzzer.send(item)

        run()
        if not app.alive():
            crashes += 1
            print(f"appliance exited with {app.proc.returncode} after {fuzzer.frames} frames", flush=True)
            return crashes
        print(f"  {fuzzer.frames:>7} frames, {fuzzer.reconnects} connections", flush=True)
    fuzzer.close()
    return crashes


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        app = ApplianceProcess(Path(tmp))
        try:
            idle = heartbeat_latencies(app.url("GOOD"), IDLE_S)
            rss_before = app.rss_kb()
            station = subprocess.Popen([sys.executable, __file__, "--good-station", app.url("GOOD")],
                                       stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            fuzzer = Fuzzer(f"ws://127.0.0.1:{app.ocpp_port}/")
            t0 = time.monotonic()
            crashes = fuzz(fuzzer, app)
            seconds = time.monotonic() - t0
            rss_after = app.rss_kb() if app.alive() else 0
            station.send_signal(signal.SIGTERM)
            busy = [float(x) for x in station.communicate(timeout=30)[0].split()]
        finally:
            status = app.stop() if app.alive() else app.proc.returncode
        log = (Path(tmp) / "appliance.log").read_text(encoding="utf-8", errors="replace")
    tracebacks = log.count("Traceback")
    for i, part in enumerate(log.split("Traceback")[1:4]):   # the first few, to fix them
        before = log.split("Traceback")[i].splitlines()[-1:]
        print("traceback after:", *before, "\nTraceback" + "\n".join(part.splitlines()[:40]))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(fuzzer.kinds.items(), key=lambda kv: -kv[1]))
    print(f"frames sent            {fuzzer.frames:,} in {seconds:.0f} s over {fuzzer.reconnects} connections")
    print(f"  messages by kind     {kinds}")
    print(f"crashes                {crashes}")
    print(f"frames never answered  {len(fuzzer.hangs)}{' ' + str(fuzzer.hangs[:5]) if fuzzer.hangs else ''}")
    print(f"tracebacks in the log  {tracebacks}")
    print(f"clean stop (SIGTERM)   {'yes' if status == 0 else f'no, exit {status}'}")
    print(f"RSS before / after     {rss_before / 1024:.1f} MiB / {rss_after / 1024:.1f} MiB")
    print(f"good station Heartbeat p99: idle {p99(idle) * 1000:.1f} ms ({len(idle)} samples), "
          f"under fuzzing {p99(busy) * 1000:.1f} ms ({len(busy)} samples)")
    return 1 if crashes or fuzzer.hangs or tracebacks or status != 0 else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--good-station":
        good_station(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
