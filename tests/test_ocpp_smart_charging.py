"""Smart charging as seen on the wallbox: the profiles it holds after connect, allocation and each
deactivation mode; power units; a device added while its station is connected."""
import pytest

from appliance.sim.ocpp_wallbox import SimWallbox
from conftest import wait_for

DEV = "[devices]\n[[garage]]\ntype = ocpp16\naddress = CP1\nmin_current = 6\nmax_current = 16\n"


def connected(cs, **kw):
    box = SimWallbox(cs.url("CP1"), meter_interval=3600, **kw)
    box.connect()
    dev = cs.runtime.devices["garage"]
    wait_for(lambda: dev.configured, what="baseline profile confirmed")
    return box, dev


def test_stale_profiles_cleared_and_baseline_zero(central):
    cs = central(DEV)
    box = SimWallbox(cs.url("CP1"), meter_interval=3600)
    # a previous controller left a ChargePointMaxProfile at 0 A and a TxDefaultProfile of its own
    stale = {"chargingProfileId": 77, "stackLevel": 3, "chargingProfilePurpose": "ChargePointMaxProfile",
             "chargingProfileKind": "Relative",
             "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0}]}}
    box.profiles.set(0, stale, False)
    box.profiles.set(1, {**stale, "chargingProfileId": 78, "chargingProfilePurpose": "TxDefaultProfile"}, False)
    box.connect()
    dev = cs.runtime.devices["garage"]
    wait_for(lambda: dev.configured)
    assert box.profiles.describe() == [{"connector": 1, "purpose": "TxDefaultProfile", "stack": 1, "id": 9101, "limit_a": 0.0}]
    assert not dev.lm_input().demand
    box.start(1)
    wait_for(lambda: dev.lm_input().demand, what="demand after StartTransaction")
    assert box.connectors[1].draw == 0.0     # not charging until load management allows it
    assert dev.apply(10.07, 3) and box.limit(1) == 10.0   # rounded down to 0.1 A
    box.close()


@pytest.mark.parametrize("mode, held", [
    ("stop", [0.0]),
    ("min_current", [6.0]),
    ("clear_limits", []),
])
def test_deactivation_modes_observed_on_the_wallbox(central, mode, held):
    cs = central(f"[load_management]\non_deactivate = {mode}\n" + DEV)
    box, dev = connected(cs)
    assert dev.apply(12, 3)
    # the user switches the device off: the config changes, the device is rebuilt on the live session
    cs.runtime.config.set_device("garage", {**{k: v for k, v in cs.runtime.config.devices()["garage"].items()},
                                            "active": False})
    cs.runtime.load_devices()
    new = cs.runtime.devices["garage"]
    assert new is not dev
    wait_for(lambda: new.problem == "deactivated", what="deactivated")
    assert [p["limit_a"] for p in box.profiles.describe()] == held
    box.close()


def test_power_unit_profile_for_a_box_that_only_takes_watts(central):
    cs = central(DEV.replace("max_current = 16", "max_current = 16\nphases = 1"))
    box, dev = connected(cs, rate_unit="Power", phases=1)
    assert dev.apply(10, 1)
    held = box.profiles.held[0].profile["chargingSchedule"]
    assert held["chargingRateUnit"] == "W" and held["chargingSchedulePeriod"][0] == {
        "startPeriod": 0, "limit": 2300.0, "numberPhases": 1}
    box.close()


def test_rejected_profile_makes_the_box_uncontrollable_at_its_maximum(central):
    cs = central(DEV)
    box = SimWallbox(cs.url("CP1"), meter_interval=3600, reject_profiles=True)
    box.connect()
    dev = cs.runtime.devices["garage"]
    wait_for(lambda: "Rejected" in dev.problem, what="rejection noticed")
    inp = dev.lm_input()
    assert not inp.controllable and inp.max_possible_draw == 16.0
    assert "Rejected" in dev.status().error
    box.close()


def test_adopting_a_connected_station(central):
    cs = central("")
    box = SimWallbox(cs.url("CP1"), meter_interval=3600)
    box.connect()
    wait_for(lambda: "CP1" in cs.runtime.unconfigured)
    assert box.profiles.describe() == []   # an unconfigured station is never controlled
    cs.runtime.config.set_device("garage", {"type": "ocpp16", "address": "CP1"})
    cs.runtime.load_devices()
    dev = cs.runtime.devices["garage"]
    wait_for(lambda: dev.configured, what="adopted and configured")
    wait_for(lambda: dev.ocpp_status == "Available", what="status via TriggerMessage")
    assert "CP1" not in cs.runtime.unconfigured or not cs.runtime.status()["unconfigured"]
    box.close()
