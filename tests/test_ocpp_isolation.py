"""One station cannot harm another station's data (issue 16, items 1-5): hostile or buggy stop
messages, reused message ids, quick restarts of a session and text that is not text, each against
the real server and SQLite, with the harmed station's view checked afterwards."""
import json
import sqlite3


from ocpp_raw import call, ocpp_reply, raw_ws

from appliance import config
from appliance.runtime import Runtime
from appliance.store import Store
from appliance.webapp import create_app
from test_web_api import set_password

CONF = ""   # raw clients only: nothing configured, so the central system sends them no calls
TS = "2026-12-01T10:00:00Z"




def start(ws, msg_id="s1", tag="CARD", meter=1000, ts=TS, connector=1):
    answer = call(ws, msg_id, "StartTransaction", {"connectorId": connector, "idTag": tag, "meterStart": meter,
                                                    "timestamp": ts})
    assert answer[0] == 3, answer
    return answer[2]["transactionId"]


def stop(ws, tx_id, msg_id="t1", meter=2000, ts=TS, **extra):
    answer = call(ws, msg_id, "StopTransaction", {"transactionId": tx_id, "meterStop": meter, "timestamp": ts, **extra})
    assert answer[0] == 3, answer
    return answer


def test_stop_with_huge_unknown_id_never_touches_the_id_sequence(central, tmp_path):
    cs = central(CONF)
    hostile = raw_ws(cs.url("NOBODY"))          # no password, not configured
    stop(hostile, 2**63 - 1, msg_id="h1")
    stop(hostile, 2**31 + 5, msg_id="h2")
    stop(hostile, 10**30, msg_id="h3")          # beyond SQLite's integers too
    a = raw_ws(cs.url("A"))
    first = start(a)
    assert first == 1
    second = start(a, msg_id="s2", tag="OTHER")
    assert second == 2
    kept = cs.runtime.store.orphan_stops()
    assert sorted(o["given_id"] for o in kept) == sorted([str(2**63 - 1), str(2**31 + 5), str(10**30)])
    assert all(o["charge_box_id"] == "NOBODY" and o["why"] == "unknown transaction" for o in kept)
    a.close()
    hostile.close()
    # ... and the sequence survives a restart unharmed
    cs.stop()
    store = Store(tmp_path / "var" / "ampgate.db")
    assert store.start_transaction(connector=1, id_tag="X", meter_start=0, start_time=TS, device=None,
                                   charge_box_id="A")[0] == 3
    store.close()


def test_version_1_database_poisoned_by_an_orphan_is_repaired(tmp_path):
    """A database written before the fix holds the orphan under the station's id: moved apart at
    start, and the sequence continues from our own highest id."""
    path = tmp_path / "ampgate.db"
    store = Store(path)
    store.start_transaction(connector=1, id_tag="T", meter_start=0, start_time=TS, device=None, charge_box_id="A")
    store.close()
    db = sqlite3.connect(path)   # what version 1 wrote for an unknown Stop
    db.execute("DROP INDEX IF EXISTS mv_once")
    db.execute("ALTER TABLE meter_values DROP COLUMN orphan_id")
    db.execute("DROP TABLE orphan_stops")
    db.execute("INSERT INTO transactions (id, charge_box_id, connector, id_tag, start_time, meter_start, stop_time,"
               " meter_stop, state) VALUES (?, 'EVIL', 0, '', ?, 5, ?, 5, 'orphan')", (2**63 - 1, TS, TS))
    for _ in range(2):   # version 2 and older stored a resent sample twice
        db.execute("INSERT INTO meter_values (tx_id, timestamp, measurand, value) VALUES (?, ?, 'Energy', '5')",
                   (2**63 - 1, TS))
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = Store(path)
    assert store.start_transaction(connector=1, id_tag="T2", meter_start=0, start_time=TS, device=None,
                                   charge_box_id="A")[0] == 2
    [orphan] = store.orphan_stops()
    assert orphan["given_id"] == str(2**63 - 1) and orphan["charge_box_id"] == "EVIL"
    rows = store.db.execute("SELECT tx_id, orphan_id FROM meter_values").fetchall()
    assert [tuple(r) for r in rows] == [(None, orphan["id"])]
    store.close()


def test_a_station_cannot_stop_another_stations_transaction(central):
    cs = central(CONF)
    a, b = raw_ws(cs.url("A")), raw_ws(cs.url("B"))
    tx = start(a)
    stop(b, tx, meter=1001)                      # answered (the station must not retry forever) ...
    assert cs.runtime.store.get_transaction(tx)["state"] == "active"   # ... but kept apart
    [orphan] = cs.runtime.store.orphan_stops()
    assert orphan["charge_box_id"] == "B" and orphan["why"] == "started by another station"
    stop(a, tx, meter=25000, msg_id="real")      # the real stop still counts: 24 kWh kept
    row = cs.runtime.store.get_transaction(tx)
    assert row["state"] == "stopped" and row["meter_stop"] == 25000
    a.close()
    b.close()


def test_a_reused_message_id_with_another_action_is_a_new_request(central):
    cs = central(CONF)
    a = raw_ws(cs.url("A"))
    hb = call(a, "1", "Heartbeat", {})
    assert "currentTime" in hb[2]
    answer = call(a, "1", "StartTransaction", {"connectorId": 1, "idTag": "CARD", "meterStart": 0, "timestamp": TS})
    assert answer[0] == 3 and "transactionId" in answer[2], answer
    again = call(a, "1", "StartTransaction", {"connectorId": 1, "idTag": "CARD", "meterStart": 0, "timestamp": TS})
    assert again == answer                       # a true retransmission still gets the first answer
    a.close()


def test_start_stop_start_in_the_same_second_is_a_new_transaction(central):
    cs = central(CONF)
    a = raw_ws(cs.url("A"))
    first = start(a, msg_id="s1")
    stop(a, first, meter=1000)
    second = start(a, msg_id="s2")              # same card, same second, same meter reading
    assert second != first
    stop(a, second, msg_id="t2", meter=3000)
    assert cs.runtime.store.get_transaction(second)["meter_stop"] == 3000
    assert cs.runtime.store.get_transaction(first)["meter_stop"] == 1000
    a.close()


def test_lone_surrogate_from_a_station_keeps_the_pages_working(central, tmp_path):
    cs = central(CONF)
    ws = raw_ws(cs.url("ODD"))
    ws.send('[2,"b","BootNotification",{"chargePointVendor":"X\\ud800Y","chargePointModel":"M\\udfff"}]')
    assert json.loads(ocpp_reply(ws))[0] == 3
    tx = start(ws, tag="\\udc00".encode().decode("unicode_escape"))
    assert cs.runtime.store.get_transaction(tx)["id_tag"] == "\ufffd"
    assert cs.runtime.unconfigured["ODD"]["vendor"] == "X\ufffdY"
    ws.close()
    rt = Runtime(config.load(tmp_path / "ampgate.conf"), tmp_path / "web-var")
    rt.unconfigured.update(cs.runtime.unconfigured)
    client = create_app(rt).test_client()
    set_password(client)
    for page in ("/devices/", "/api/status", "/"):
        r = client.get(page)
        assert r.status_code == 200, (page, r.status_code)
    rt.close()
