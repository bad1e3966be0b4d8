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
    wait_for(lambda: cs.runtime.unconfigured["CP1"].get("held"), what="held at 0 A until adopted")
    assert [(p["connector"], p["purpose"], p["limit_a"]) for p in box.profiles.describe()] == [
        (0, "TxDefaultProfile", 0.0)]
    cs.runtime.config.set_device("garage", {"type": "ocpp16", "address": "CP1"})
    cs.runtime.load_devices()
    dev = cs.runtime.devices["garage"]
    wait_for(lambda: dev.configured, what="adopted and configured")
    wait_for(lambda: dev.ocpp_status == "Available", what="status via TriggerMessage")
    assert "CP1" not in cs.runtime.unconfigured or not cs.runtime.status()["unconfigured"]
    box.close()


def test_removing_a_device_leaves_the_box_as_on_deactivate_says(central):
    from appliance.lm import controller

    cs = central("[load_management]\ncycle_s = 0.3\non_deactivate = stop\n" + DEV)
    ctl = controller.start(cs.runtime)
    try:
        box, dev = connected(cs)
        box.start(1)
        wait_for(lambda: box.limit(1) == 16.0, what="charging at 16 A")
        cs.runtime.config.remove_device("garage")
        cs.runtime.load_devices()
        wait_for(lambda: box.limit(1) == 0.0, what="box told to stop before it is forgotten")
        assert "garage" in cs.runtime.devices            # counted while its car may still draw
        box.stop(1)
        wait_for(lambda: "CP1" in cs.runtime.unconfigured, what="listed for adoption again")
        wait_for(lambda: cs.runtime.unconfigured["CP1"].get("held"), what="and held at 0 A")
        box.close()
    finally:
        ctl.stop()


def test_monitor_and_back_reinstalls_our_profile(central):
    from appliance.lm import controller

    cs = central("[load_management]\ncycle_s = 0.3\non_deactivate = clear_limits\n" + DEV)
    ctl = controller.start(cs.runtime)
    try:
        box, dev = connected(cs)
        cs.runtime.config.update_section("load_management", {"mode": "monitor"})
        wait_for(lambda: box.profiles.describe() == [], what="limits cleared in monitor mode")
        cs.runtime.config.update_section("load_management", {"mode": "active"})
        wait_for(lambda: dev.configured and box.profiles.describe() != [], what="our profile back")
        box.close()
    finally:
        ctl.stop()


def test_implausible_readings_are_ignored(central):
    cs = central(DEV)
    box, dev = connected(cs)
    box.start(1)
    for bad in ("NaN", "Infinity", "-1e9", "500"):
        box.client.call("MeterValues", {"connectorId": 1, "transactionId": box.connectors[1].tx_id, "meterValue": [
            {"timestamp": "2030-01-01T00:00:00Z",
             "sampledValue": [{"value": bad, "measurand": "Current.Import", "phase": "L1", "unit": "A"}]}]})
    assert dev.currents is None or all(0 <= c <= 32 for c in dev.currents)
    import json
    json.dumps(cs.runtime.status(), allow_nan=False)   # the API stays valid JSON
    box.close()


def test_a_station_offering_more_than_our_limit_is_counted_at_its_maximum(central, monkeypatch):
    """Firmware that applies a changed TxDefaultProfile only to the next transaction keeps
    offering the old current: it says so in Current.Offered."""
    import gevent

    from appliance.devices import ocpp_evse

    monkeypatch.setattr(ocpp_evse, "OVERDRAW_AFTER_S", 0.3)
    cs = central(DEV)
    box, dev = connected(cs)
    box.start(1)
    assert dev.apply(6, 3)

    def offer(amps: str) -> None:
        box.client.call("MeterValues", {"connectorId": 1, "transactionId": box.connectors[1].tx_id, "meterValue": [
            {"timestamp": "2030-01-01T00:00:00Z",
             "sampledValue": [{"value": amps, "measurand": "Current.Offered", "unit": "A"}]}]})
    offer("16.0")
    gevent.sleep(0.4)
    offer("16.0")
    inp = dev.lm_input()
    assert not inp.controllable and inp.max_possible_draw == 16.0 and "offers" in dev.status().error
    offer("6.0")
    assert dev.lm_input().controllable
    box.close()
