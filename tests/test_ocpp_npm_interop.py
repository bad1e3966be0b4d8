"""Interop with a station we did not write: the npm package ocpp-rpc in strict mode (it validates
every answer of ours against its own copy of the 1.6 schemas), installed by `make test` into
tests/peers. It connects with an identity that needs percent-encoding and a password, sends a
realistic 130 KB StopTransaction and DataTransfers."""
import json
import shutil
import subprocess

from conftest import ROOT

PEERS = ROOT / "tests" / "peers"


def test_ocpp_rpc_strict_station_gets_in_and_its_data_is_kept(central):
    assert shutil.which("node") and (PEERS / "node_modules" / "ocpp-rpc").exists(), \
        "node and tests/peers/node_modules are installed by `make test` (npm ci in tests/peers)"
    cs = central("[devices]\n", server='password = geheim\ndata_transfer_accept = "GiroE"')
    r = subprocess.run(["node", str(PEERS / "ocpp_rpc_station.js"), f"ws://127.0.0.1:{cs.port}/", "Wallbox-ä",
                        "geheim"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["boot"]["status"] == "Accepted"
    assert out["stop"] == {"idTagInfo": {"status": "Accepted"}}
    assert out["accepted"] == {"status": "Accepted"} and out["unknown"] == {"status": "UnknownVendorId"}
    tx = cs.runtime.store.get_transaction(out["start"]["transactionId"])
    assert tx["charge_box_id"] == "Wallbox-ä" and tx["state"] == "stopped" and tx["meter_stop"] == 5000
    assert len(cs.runtime.store.meter_values(tx["id"])) == 2 * 96
