"""A short, deterministic fuzz run against the real appliance process (issue 16): every kind of
broken input from tests/fuzzing.py, then the process is alive, answered every re-sync Heartbeat,
logged no traceback, serves a well-behaved station and stops cleanly. `make fuzz` runs the long one."""
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from fuzzing import Fuzzer, heartbeat_latencies, sends

sys.path.insert(0, str(ROOT / "bench"))
from appliance_proc import ApplianceProcess  # noqa: E402

EXAMPLES = 400


def test_fuzzed_frames_never_hurt_the_appliance(tmp_path):
    app = ApplianceProcess(tmp_path, "[devices]\n[[good]]\ntype = ocpp16\naddress = GOOD\n")
    fuzzer = Fuzzer(f"ws://127.0.0.1:{app.ocpp_port}/")

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data):
        fuzzer.send(data.draw(sends()))

    try:
        fuzz()
        fuzzer.close()
        assert app.alive()
        assert fuzzer.hangs == []
        assert {"valid", "mutated", "wrong type", "fragments", "ping flood", "deep", "surrogate", "binary",
                "invalid utf-8"} <= set(fuzzer.kinds), fuzzer.kinds   # every kind of input was sent
        assert heartbeat_latencies(app.url("GOOD"), seconds=0.3)
    finally:
        assert app.stop() == 0
    log = (tmp_path / "appliance.log").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 500:][:3000]
