"""Nothing acknowledged is lost: kill -9 the appliance during a transaction, restart, and find the
transaction, its meter values and the id counter intact. Also: a StartTransaction repeated after
a reconnect gets the same transaction id back."""
import json
import signal
import sqlite3
import urllib.request

from gevent.subprocess import Popen

from appliance.timefmt import utc_now
from appliance.sim.ocpp_wallbox import SimWallbox
from conftest import PYTHON, free_port, subprocess_env, wait_for


def start_appliance(conf, data):
    proc = Popen([PYTHON, "-m", "appliance", "run", "--config", str(conf), "--data", str(data)], env=subprocess_env())
    return proc


def api(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def up(port):
    try:
        return api(port, "/api/status")
    except OSError:
        return None


def test_sigkill_during_transaction_loses_nothing(tmp_path):
    ocpp_port, web_port = free_port(), free_port()
    conf = tmp_path / "ampgate.conf"
    conf.write_text(f"[web]\nport = {web_port}\nbind = 127.0.0.1\n[ocpp_server]\nport = {ocpp_port}\nbind = 127.0.0.1\n"
                    "[devices]\n[[garage]]\ntype = ocpp16\naddress = CP1\n", encoding="utf-8")
    data = tmp_path / "var"
    proc = start_appliance(conf, data)
    try:
        wait_for(lambda: up(web_port), timeout=30, what="appliance up")
        box = SimWallbox(f"ws://127.0.0.1:{ocpp_port}/CP1", meter_interval=3600)
        box.connect()
        start_payload = {"connectorId": 1, "idTag": "KILLME", "meterStart": 500, "timestamp": utc_now()}
        tx_id = box.client.call("StartTransaction", start_payload)["transactionId"]
        box.connectors[1].tx_id = tx_id
        box.connectors[1].energy_wh = 500
        box.send_meter_values(1)
        box.send_meter_values(1)
        proc.send_signal(signal.SIGKILL)   # every answer above was acknowledged: it must be on disk
        proc.wait(timeout=10)
        box.drop()

        db = sqlite3.connect(str(data / "ampgate.db"))
        row = db.execute("SELECT id, id_tag, meter_start, state FROM transactions").fetchall()
        assert row == [(tx_id, "KILLME", 500, "active")]
        assert db.execute("SELECT COUNT(*) FROM meter_values WHERE tx_id=?", (tx_id,)).fetchone()[0] == 12
        db.close()

        proc = start_appliance(conf, data)
        wait_for(lambda: up(web_port), timeout=30, what="appliance up again")
        assert [t["id"] for t in api(web_port, "/api/transactions")["transactions"]] == [tx_id]
        box = SimWallbox(f"ws://127.0.0.1:{ocpp_port}/CP1", meter_interval=3600)
        box.connect(boot=False)   # a reconnect, not a reboot
        # the station never saw our answer: it repeats the same StartTransaction
        assert box.client.call("StartTransaction", start_payload)["transactionId"] == tx_id
        box.client.call("StopTransaction", {"transactionId": tx_id, "meterStop": 900, "timestamp": utc_now()})
        assert box.start(1, "NEXT") == tx_id + 1   # the counter went on, no id reused
        txs = {t["id"]: t for t in api(web_port, "/api/transactions")["transactions"]}
        assert txs[tx_id]["state"] == "stopped" and txs[tx_id]["meter_stop"] == 900
        box.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0   # a clean stop on SIGTERM
