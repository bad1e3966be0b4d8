"""A station cannot fill the disk for all, and a full disk loses no connection (issue 16 item 7):
per-station storage budget, a reserve kept for transactions, answers when storing fails and
recovery when space returns. "Disk full" is SQLite's own: a page limit on the real database."""
import logging


from ocpp_raw import call, raw_ws

from appliance.ocpp import meter_budget

TS = "2026-12-01T10:00:00Z"




def meter_values(n, size, tx=None, stamp="10"):
    return {"connectorId": 1, **({"transactionId": tx} if tx else {}), "meterValue": [
        {"timestamp": f"2026-12-01T{stamp}:00:{i % 60:02d}Z",
         "sampledValue": [{"value": f"{i}-" + "S" * size, "format": "SignedData"}]} for i in range(n)]}


def stored_bytes(store, cpid):
    return store.db.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM meter_values WHERE charge_box_id=?",
                            (cpid,)).fetchone()[0]


def test_one_station_cannot_fill_the_disk(central, caplog):
    cs = central()
    flood, good = raw_ws(cs.url("FLOOD")), raw_ws(cs.url("GOOD"))
    for k in range(40):                                  # 40 x 200 KB in a moment: 8 MB
        assert call(flood, f"f{k}", "MeterValues", meter_values(50, 4000, stamp=f"{k % 24:02d}"))[0] == 3
    assert stored_bytes(cs.runtime.store, "FLOOD") < meter_budget.BURST + 200_000
    assert caplog.text.count("meter samples not stored") == 1          # said once, not per message
    assert call(good, "g", "MeterValues", meter_values(2, 100))[0] == 3
    assert stored_bytes(cs.runtime.store, "GOOD") > 0                  # the others still store theirs
    flood.close()
    good.close()


def test_below_the_reserve_only_transactions_are_stored(central):
    cs = central(server="storage_reserve_mb = 100000")  # more than any disk here has free
    ws = raw_ws(cs.url("LOW"))
    tx = call(ws, "s", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": TS})[2]
    assert call(ws, "m", "MeterValues", meter_values(3, 10, tx["transactionId"]))[0] == 3
    stop = {"transactionId": tx["transactionId"], "meterStop": 500, "timestamp": TS,
            "transactionData": meter_values(2, 10)["meterValue"]}
    assert call(ws, "t", "StopTransaction", stop)[0] == 3
    row = cs.runtime.store.get_transaction(tx["transactionId"])
    assert row["state"] == "stopped" and row["meter_stop"] == 500
    assert cs.runtime.store.meter_values(tx["transactionId"]) == []
    ws.close()


def test_a_full_disk_is_answered_and_recovers(central, caplog):
    caplog.set_level(logging.INFO)
    cs = central()
    store = cs.runtime.store
    ws = raw_ws(cs.url("FULL"))
    tx = call(ws, "s", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": TS})[2]
    tx = tx["transactionId"]
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count={pages}")   # the disk is full now
    answer = call(ws, "m1", "MeterValues", meter_values(200, 2000, tx))
    assert answer[0] == 4 and answer[2] == "InternalError", answer
    stop = {"transactionId": tx, "meterStop": 700, "timestamp": TS}
    answer = call(ws, "t1", "StopTransaction", {**stop, "transactionData": meter_values(200, 2000)["meterValue"]})
    assert answer[0] == 4 and answer[2] == "InternalError", answer
    assert call(ws, "h", "Heartbeat", {})[0] == 3        # the connection still answers
    assert "could not be stored" in caplog.text and "Traceback" not in caplog.text
    store.db.execute("PRAGMA max_page_count=1073741823")  # space is back
    assert call(ws, "m2", "MeterValues", meter_values(3, 10, tx))[0] == 3
    assert call(ws, "t2", "StopTransaction", stop)[0] == 3   # the station sends its Stop again
    assert store.get_transaction(tx)["meter_stop"] == 700
    assert len(store.meter_values(tx)) == 3
    ws.close()
