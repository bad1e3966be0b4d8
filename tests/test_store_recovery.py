"""The database file at start (issue 16 item 7): a file damaged in the middle is said so, kept as a
copy and carried over as far as it can be read; an emptied or lost file never restarts the
transaction ids at 1. Real SQLite files, damaged with real bytes."""
import logging

from appliance.store import MeterSample, Store

TS = "2026-12-01T10:00:00Z"


def filled(path, n=60):
    store = Store(path)
    for i in range(n):
        tx, _ = store.start_transaction(connector=1, id_tag=f"T{i}", meter_start=i, start_time=TS, device=None,
                                        charge_box_id="CP1")
        store.add_meter_values([MeterSample(f"2026-12-01T10:{i % 60:02d}:{k:02d}Z", "Energy.Active.Import.Register",
                                            f"{i * 100 + k}-" + "x" * 200) for k in range(20)],
                               tx_id=tx, device=None, charge_box_id="CP1", connector=1)
    store.close()
    return n


def new_id(store):
    return store.start_transaction(connector=1, id_tag="NEW", meter_start=0, start_time=TS, device=None,
                                   charge_box_id="CP1")[0]


def test_a_database_damaged_in_the_middle_is_kept_and_carried_over(tmp_path, caplog):
    path = tmp_path / "ampgate.db"
    n = filled(path)
    data = bytearray(path.read_bytes())
    middle = (len(data) // 4096 // 2) * 4096
    data[middle:middle + 4096] = b"\xde\xad" * 2048          # one page in the middle is garbage now
    path.write_bytes(bytes(data))
    store = Store(path)
    assert "is damaged" in caplog.text and "kept as ampgate.db.damaged-" in caplog.text
    assert list(tmp_path.glob("ampgate.db.damaged-*"))
    assert new_id(store) == n + 1                            # transactions work, and no id is reused
    assert len(store.transactions(limit=10000)) > n // 2      # most of what was there is still there
    store.close()
    store = Store(path)                                      # and the new file is healthy
    assert new_id(store) == n + 2
    store.close()


def test_a_database_emptied_or_lost_never_restarts_ids_at_1(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    path = tmp_path / "ampgate.db"
    n = filled(path, 5)
    path.write_bytes(b"")                                   # truncated to 0 bytes
    store = Store(path)
    assert "the file is empty" in caplog.text
    assert new_id(store) == n + 1
    store.close()
    path.unlink()                                           # lost altogether
    store = Store(path)
    assert new_id(store) == n + 2
    store.close()


def test_a_healthy_database_says_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    path = tmp_path / "ampgate.db"
    filled(path, 3)
    store = Store(path)
    assert new_id(store) == 4
    store.close()
    assert caplog.text == ""
