"""The seam the gateway stands on: routing as data, the recorder's outbox in the same SQLite
transaction, numbered migrations, raw JSON edits, and the backend-limit rule."""
import json
import sqlite3

import pytest

from appliance.domain import EventBus, MeterSampled, Origin, TransactionStarted, TransactionStopped
from appliance.gateway.profiles import BackendProfiles, effective_limit
from appliance.ocpp import rawjson
from appliance.ocpp.routing import Route, Router, RouteTable
from appliance.ocpp.rpc import CALL, Message, RawPayload
from appliance.recorder import Recorder
from appliance.store import MeterSample, OutboxRow, Store
from appliance.store.db import SCHEMA_VERSION


def test_raw_edit_keeps_every_other_byte():
    text = '{"connectorId" : 1,"data":"\\u00e4 1.10","n":1e3, "transactionId":7 ,"x":{"y":[1.0]}}'
    out = rawjson.replace(text, {"connectorId": 2, "transactionId": 901, "absent": 5})
    assert out == '{"connectorId" : 2,"data":"\\u00e4 1.10","n":1e3, "transactionId":901 ,"x":{"y":[1.0]}}'
    assert rawjson.value(out, "transactionId") == 901 and rawjson.value(out, "absent") is None


def test_backend_limit_is_the_minimum_of_both_and_follows_stack_levels():
    p = BackendProfiles()
    sched = lambda a: {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": a}]}  # noqa: E731
    assert p.limit(1, 230) is None and effective_limit(16, None) == 16
    p.set(1, {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
              "chargingProfileKind": "Absolute", "chargingSchedule": sched(10)})
    p.set(1, {"chargingProfileId": 2, "stackLevel": 3, "chargingProfilePurpose": "TxDefaultProfile",
              "chargingProfileKind": "Absolute", "chargingSchedule": sched(8)})
    assert p.limit(1, 230) == 8 and effective_limit(16, p.limit(1, 230)) == 8 and effective_limit(6, 8) == 6
    p.set(0, {"chargingProfileId": 3, "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile",
              "chargingProfileKind": "Absolute",
              "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 4140}]}})
    assert p.limit(1, 230) == 6       # 4140 W / (230 V x 3)
    assert p.clear({"id": 3}) and p.limit(1, 230) == 8
    assert BackendProfiles.from_json(json.loads(json.dumps(p.to_json()))).limit(1, 230) == 8
    assert not p.clear({"connectorId": 2})


def test_router_answers_locally_relays_or_mirrors_by_table():
    seen = []

    class Station:
        routes = RouteTable({"Authorize": Route.RELAY, "StatusNotification": Route.MIRROR})
        relay = None

    class Backend:
        def relay(self, station, msg):
            return None if msg.id == "down" else RawPayload('{"idTagInfo":{"status":"Blocked"}}')

        def mirror(self, station, msg, answer):
            seen.append((msg.action, answer))

    local = {"Authorize": lambda st, msg, backend: backend or {"idTagInfo": {"status": "Accepted"}},
             "StatusNotification": lambda st, msg, backend: {}}
    router, st = Router(local), Station()
    call = lambda action, msg_id="1": Message(CALL, msg_id, "", action=action, payload={})  # noqa: E731
    assert router.dispatch(st, call("Authorize")) == {"idTagInfo": {"status": "Accepted"}}   # no relay: local
    st.relay = Backend()
    assert router.dispatch(st, call("Authorize")) == '{"idTagInfo":{"status":"Blocked"}}'
    assert router.dispatch(st, call("Authorize", "down")) == {"idTagInfo": {"status": "Accepted"}}
    assert router.dispatch(st, call("StatusNotification")) == {} and seen == [("StatusNotification", {})]


def test_outbox_rows_are_committed_with_the_record_and_only_once(tmp_path):
    store = Store(tmp_path / "a.db")
    bus, heard = EventBus(), []
    rec = Recorder(store, bus)
    bus.subscribe(TransactionStarted, heard.append)
    rec.outbox_rules.append(lambda ev: [OutboxRow("L", type(ev).__name__, "X", "{}", 1, f"m{len(heard)}",
                                                  dedup=None if isinstance(ev, TransactionStarted) else ev.raw)])
    o = Origin("dev", "CP1", 1)
    first = rec.record(TransactionStarted(o, "TAG", 100, "2026-12-01T10:00:00Z", dedup_key="k"))
    again = rec.record(TransactionStarted(o, "TAG", 100, "2026-12-01T10:00:00Z", dedup_key="k"))
    assert first.tx_id == again.tx_id and not first.repeated and again.repeated and len(heard) == 2
    rec.record(MeterSampled(o, first.tx_id, [MeterSample("t", "Energy.Active.Import.Register", "5")], raw="mv1"))
    rec.record(MeterSampled(o, first.tx_id, [MeterSample("t", "Energy.Active.Import.Register", "5")], raw="mv1"))
    stop = rec.record(TransactionStopped(o, first.tx_id, 200, "2026-12-01T11:00:00Z", raw="s"))
    dup = rec.record(TransactionStopped(o, first.tx_id, 200, "2026-12-01T11:00:00Z", raw="s2"))
    assert (stop.outcome, dup.outcome) == ("stopped", "duplicate")
    rows = store.db.execute("SELECT kind, tx_id FROM outbox ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("TransactionStarted", first.tx_id), ("MeterSampled", None),
                                        ("TransactionStopped", None)]
    store.close()


def test_numbered_migrations_upgrade_an_old_database(tmp_path):
    path = tmp_path / "old.db"
    store = Store(path)
    store.close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE outbox; DROP TABLE gateway_tx; DROP TABLE auth_cache; PRAGMA user_version=1;")
    db.close()
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    store.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(path)
