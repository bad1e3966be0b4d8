"""SQLite access in one place: schema, transactions, meter values, device state, event log.

Durability is chosen on purpose: WAL journal with synchronous=FULL, so every committed write is on
disk before we acknowledge it to a wallbox (a kill -9 or a power cut loses nothing acknowledged).
SQLite calls are short local-disk operations; they block the gevent hub briefly, which is cheaper
than handing them to a thread pool on a 2-core box.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import gevent
from gevent.event import AsyncResult

from appliance.store import recovery

log = logging.getLogger("ampgate.store")

MAX_TX_ID = 2**31 - 1   # stations store transaction ids as int32 (ocpp16.md): ours stay below

# Step 1: the first schema (a database without user_version predates the steps).
SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    device        TEXT,               -- configured device name, NULL for unconfigured stations
    charge_box_id TEXT,               -- OCPP identity, or the Modbus port for Power Brain
    connector     INTEGER NOT NULL,
    id_tag        TEXT NOT NULL,
    start_time    TEXT NOT NULL,      -- as the station sent it (ISO 8601)
    meter_start   INTEGER NOT NULL,   -- Wh
    stop_time     TEXT,
    meter_stop    INTEGER,
    stop_reason   TEXT,
    state         TEXT NOT NULL DEFAULT 'active',   -- active | stopped (| orphan before step 2)
    source        TEXT NOT NULL DEFAULT 'ocpp',     -- ocpp | powerbrain
    dedup_key     TEXT UNIQUE         -- same StartTransaction again => same id
);
CREATE INDEX IF NOT EXISTS tx_device ON transactions(device, start_time);
CREATE TABLE IF NOT EXISTS meter_values (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id       INTEGER,
    device      TEXT,
    charge_box_id TEXT,
    connector   INTEGER,
    timestamp   TEXT NOT NULL,
    measurand   TEXT NOT NULL,
    phase       TEXT,
    value       TEXT NOT NULL,        -- kept as sent (signed data passes through unchanged)
    unit        TEXT,
    context     TEXT,
    format      TEXT
);
CREATE INDEX IF NOT EXISTS mv_tx ON meter_values(tx_id);
CREATE TABLE IF NOT EXISTS device_state (
    device TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,             -- JSON
    PRIMARY KEY (device, key)
);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      REAL NOT NULL,
    level   TEXT NOT NULL,
    device  TEXT,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS load_history (
    ts     REAL NOT NULL,
    data   TEXT NOT NULL              -- JSON: per-phase load, limit, allocations
);
"""

# Step 2: a StopTransaction we cannot apply is kept apart from the transactions (orphan_stops).
# (and meter_values gains orphan_id, set instead of tx_id for an orphan stop's data: _move_old_orphans)
ORPHAN_STOPS = """
CREATE TABLE IF NOT EXISTS orphan_stops (           -- StopTransactions we cannot apply: kept apart, never
    id            INTEGER PRIMARY KEY AUTOINCREMENT,   -- touching the transaction id sequence
    charge_box_id TEXT,
    given_id      TEXT NOT NULL,      -- the transactionId as the station sent it
    meter_stop    INTEGER,
    stop_time     TEXT,
    stop_reason   TEXT,
    why           TEXT NOT NULL,      -- unknown transaction | started by another station
    received      REAL NOT NULL,
    UNIQUE (charge_box_id, given_id, stop_time, meter_stop)
);
"""

# The gateway's durable queue (charging-manager.md §4.5): written in the same SQLite transaction as
# the local record it relays, removed only when the backend answered it with a CALLRESULT.
OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,    -- the sending order
    link      TEXT NOT NULL,          -- backend URL with the charge point id
    kind      TEXT NOT NULL,          -- start | stop | meter
    action    TEXT NOT NULL,
    payload   TEXT NOT NULL,          -- the station's payload text, byte for byte
    tx_id     INTEGER,                -- local transaction id (mapped to the backend's when sent)
    connector INTEGER NOT NULL,       -- connectorId at the backend
    msg_id    TEXT NOT NULL,          -- one message id for every attempt
    attempts  INTEGER NOT NULL DEFAULT 0,
    dedup     TEXT UNIQUE             -- a repeated message is queued once
);
CREATE INDEX IF NOT EXISTS outbox_link ON outbox(link, id);
CREATE TABLE IF NOT EXISTS gateway_tx (
    tx_id      INTEGER PRIMARY KEY,   -- ours (what the station knows)
    link       TEXT NOT NULL,
    backend_tx INTEGER                -- the backend's, once its StartTransaction answer came
);
CREATE TABLE IF NOT EXISTS auth_cache (
    link   TEXT NOT NULL,
    id_tag TEXT NOT NULL,
    status TEXT NOT NULL,             -- the backend's last idTagInfo.status for this tag
    PRIMARY KEY (link, id_tag)
);
"""

# Numbered schema steps: PRAGMA user_version says how many ran. Append, never edit a shipped step.
# Numbered schema steps: PRAGMA user_version says how many ran. Append, never edit a shipped step.
# A step is SQL, run with its optional Python follow-up in one SQLite transaction.
# Step 4: one sample is stored once. A station resends MeterValues whose answer it missed (we may
# have been killed after the commit): a resent sample must not count twice. NULLs made comparable.
MV_IDENTITY = ("IFNULL(tx_id, -1), IFNULL(orphan_id, -1), IFNULL(charge_box_id, ''), IFNULL(connector, -1),"
               " timestamp, measurand, IFNULL(phase, ''), IFNULL(context, ''), IFNULL(format, ''), value")


def _samples_once(db: sqlite3.Connection) -> None:
    """Earlier steps stored a resent sample twice: keep the first, then let the index refuse repeats."""
    db.execute(f"DELETE FROM meter_values WHERE id NOT IN (SELECT MIN(id) FROM meter_values GROUP BY {MV_IDENTITY})")
    db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS mv_once ON meter_values({MV_IDENTITY})")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None] | None]] = [
    (SCHEMA, None),
    (ORPHAN_STOPS, lambda db: _move_old_orphans(db)),
    (OUTBOX, None),
    ("-- one sample, one row", _samples_once),
]
SCHEMA_VERSION = len(MIGRATIONS)

TX_COLUMNS = ("id", "device", "charge_box_id", "connector", "id_tag", "start_time", "meter_start",
              "stop_time", "meter_stop", "stop_reason", "state", "source")


@dataclass(frozen=True)
class OutboxRow:
    """One message for a backend, queued with the local record it relays."""

    link: str
    kind: str                  # start | stop | meter
    action: str
    payload: str               # raw payload text
    connector: int
    msg_id: str
    tx_id: int | None = None
    dedup: str | None = None


@dataclass
class MeterSample:
    timestamp: str
    measurand: str
    value: str
    phase: str | None = None
    unit: str | None = None
    context: str | None = None
    format: str | None = None


_INSERT_MV = ("INSERT OR IGNORE INTO meter_values (tx_id, device, charge_box_id, connector, timestamp, measurand, phase,"
              " value, unit, context, format, orphan_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")


def _mv_fields(s: MeterSample) -> tuple:
    return (s.timestamp, s.measurand, s.phase, s.value, s.unit, s.context, s.format)


class Store:
    """One SQLite database in the data directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        wrong = recovery.problem(self.path)
        copy = None
        if wrong:
            copy = recovery.set_aside(self.path)
            log.error("the database %s is damaged (%s)%s; starting a new one with what could be read",
                      self.path, wrong, f"; the damaged file is kept as {copy.name}" if copy else "")
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        if copy is not None:
            self.db.execute("BEGIN")
            carried = recovery.salvage(copy, self.db)
            self.db.execute("COMMIT")
            log.error("carried over from the damaged file: %s",
                      ", ".join(f"{n} {table}" for table, n in carried.items()) or "nothing")
        recovery.continue_ids(self.db, self.path, damaged=bool(wrong))

        self._batch: list[tuple[Callable[[sqlite3.Connection], Any], AsyncResult]] = []
        self._writer: gevent.Greenlet | None = None

    def _migrate(self) -> None:
        """Run the schema steps this database has not seen, each in its own transaction."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this program ({SCHEMA_VERSION})")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            sql, follow_up = MIGRATIONS[number - 1]
            self.db.executescript(f"BEGIN;\n{sql}")    # executescript commits first, then leaves this open
            try:
                if follow_up is not None:
                    follow_up(self.db)
                self.db.execute(f"PRAGMA user_version={number}")
                self.db.execute("COMMIT")
            except Exception:
                self.db.execute("ROLLBACK")
                raise
            log.info("%s: schema step %d applied", self.path.name, number)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.join(timeout=5)
        self.db.close()

    def group_write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `fn(db)` inside a transaction shared with every other writer that arrives while
        the previous commit is on its way to disk, and return once it is committed. Many stations
        sending MeterValues at once then cost one fsync, not one each (group commit)."""
        done = AsyncResult()
        self._batch.append((fn, done))
        if self._writer is None:
            self._writer = gevent.spawn(self._write_batches)
        return done.get()

    def _write_batches(self) -> None:
        try:
            while self._batch:
                gevent.sleep(0)           # let the other greenlets that are ready join this batch
                batch, self._batch = self._batch, []
                try:
                    results = self._commit_batch([fn for fn, _ in batch])
                except sqlite3.Error as e:   # e.g. disk full: every writer of this batch hears of it
                    log.error("storing failed, nothing of this batch is kept: %s", e)
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    results = [(False, e)] * len(batch)
                for (_, done), (ok, value) in zip(batch, results):
                    done.set(value) if ok else done.set_exception(value)
        finally:
            self._writer = None

    def _commit_batch(self, fns: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        self.db.execute("BEGIN")
        for fn in fns:
            self.db.execute("SAVEPOINT one")
            try:
                results.append((True, fn(self.db)))
                self.db.execute("RELEASE one")
            except Exception as e:   # one bad write must not undo the others
                self.db.execute("ROLLBACK TO one")
                self.db.execute("RELEASE one")
                results.append((False, e))
        self.db.execute("COMMIT")
        return results

    # -- transactions -------------------------------------------------------------------------------
    def start_transaction(self, *, connector: int, id_tag: str, meter_start: int, start_time: str,
                          device: str | None, charge_box_id: str | None, source: str = "ocpp",
                          dedup_key: str | None = None, outbox: Sequence[OutboxRow] = ()) -> tuple[int, bool]:
        """Store a new transaction, committed before return. Returns (id, created); a repeated
        dedup_key returns the first id and created=False. `outbox` rows (their tx_id is set to the new
        id) are committed in the same SQLite transaction, and only for a new transaction."""
        def write(db: sqlite3.Connection) -> tuple[int, bool]:
            if dedup_key is not None:
                row = db.execute("SELECT id FROM transactions WHERE dedup_key=?", (dedup_key,)).fetchone()
                if row:
                    return row["id"], False
            cur = db.execute(
                "INSERT INTO transactions (device, charge_box_id, connector, id_tag, start_time, meter_start,"
                " source, dedup_key) VALUES (?,?,?,?,?,?,?,?)",
                (device, charge_box_id, connector, id_tag, start_time, meter_start, source, dedup_key))
            tx_id = int(cur.lastrowid or 0)
            if tx_id > MAX_TX_ID:   # never hand out an id a station cannot store (the savepoint undoes it)
                raise OverflowError(f"transaction ids exhausted ({tx_id} > {MAX_TX_ID})")
            _queue(db, [dataclasses.replace(r, tx_id=tx_id) for r in outbox])
            return tx_id, True
        tx_id, created = self.group_write(write)
        if created:
            recovery.remember_id(self.path, tx_id)   # ids go on above it even if the file is lost
        return tx_id, created

    def stop_transaction(self, tx_id: int, *, meter_stop: int, stop_time: str, reason: str | None,
                         samples: Iterable[MeterSample] = (), device: str | None = None,
                         charge_box_id: str | None = None, connector: int = 0,
                         outbox: Sequence[OutboxRow] = ()) -> str:
        """Mark a known transaction stopped, with its transactionData `samples`, in one SQLite
        transaction. Returns 'stopped', or 'duplicate' when it already was (its `outbox` rows are
        queued with the first stop only). The dedup key goes: a new session with the same card, time
        and meter reading is a new one."""
        samples = list(samples)

        def write(db: sqlite3.Connection) -> str:
            row = db.execute("SELECT state FROM transactions WHERE id=?", (tx_id,)).fetchone()
            if row is None:
                raise KeyError(tx_id)
            if row["state"] != "active":
                return "duplicate"
            db.executemany(_INSERT_MV, [(tx_id, device, charge_box_id, connector, *_mv_fields(s), None)
                                        for s in samples])
            db.execute("UPDATE transactions SET stop_time=?, meter_stop=?, stop_reason=?, state='stopped',"
                       " dedup_key=NULL WHERE id=?", (stop_time, meter_stop, reason, tx_id))
            _queue(db, outbox)
            return "stopped"
        return self.group_write(write)

    def add_orphan_stop(self, given_id: str, *, charge_box_id: str | None, meter_stop: int | None,
                        stop_time: str, reason: str | None, why: str, samples: Iterable[MeterSample]) -> bool:
        """Keep a StopTransaction we cannot apply (unknown id, or another station's transaction)
        apart from the transactions, with its transactionData; committed before return. Returns
        False for a repeat of one already kept."""
        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "INSERT OR IGNORE INTO orphan_stops (charge_box_id, given_id, meter_stop, stop_time, stop_reason,"
                " why, received) VALUES (?,?,?,?,?,?,?)",
                (charge_box_id, given_id, meter_stop, stop_time, reason, why, time.time()))
            if not cur.rowcount:
                return False
            db.executemany(_INSERT_MV, [(None, None, charge_box_id, 0, *_mv_fields(s), cur.lastrowid) for s in samples])
            return True
        return bool(self.group_write(write))

    def orphan_stops(self, limit: int = 1000) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM orphan_stops ORDER BY id DESC LIMIT ?", (limit,))]

    def get_transaction(self, tx_id: int) -> dict[str, Any] | None:
        if not -2**63 <= tx_id < 2**63:
            return None   # SQLite integers are 64-bit: no such row
        row = self.db.execute(f"SELECT {','.join(TX_COLUMNS)} FROM transactions WHERE id=?", (tx_id,)).fetchone()
        return dict(row) if row else None

    def active_transaction(self, charge_box_id: str, connector: int) -> dict[str, Any] | None:
        row = self.db.execute(
            f"SELECT {','.join(TX_COLUMNS)} FROM transactions WHERE charge_box_id=? AND connector=?"
            " AND state='active' ORDER BY id DESC LIMIT 1", (charge_box_id, connector)).fetchone()
        return dict(row) if row else None

    def transactions(self, device: str | None = None, since: str | None = None, until: str | None = None,
                     limit: int = 1000, id_tag: str | None = None) -> list[dict[str, Any]]:
        """Newest first; `since`/`until` compare against start_time (ISO date or date-time)."""
        where, args = [], []
        if id_tag:
            where.append("id_tag=?")
            args.append(id_tag)
        if device:
            where.append("device=?")
            args.append(device)
        if since:
            where.append("start_time>=?")
            args.append(since)
        if until:
            where.append("start_time<?")
            args.append(until)
        sql = f"SELECT {','.join(TX_COLUMNS)} FROM transactions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        return [dict(r) for r in self.db.execute(sql, (*args, limit))]

    def assign_device(self, charge_box_id: str, connector: int, device: str) -> int:
        """Sessions a station began before it was adopted get the device now configured for them."""
        return self.group_write(lambda db: db.execute(
            "UPDATE transactions SET device=? WHERE device IS NULL AND charge_box_id=? AND connector=?",
            (device, charge_box_id, connector)).rowcount)

    def last_energy_wh(self, tx_ids: Sequence[int]) -> dict[int, float]:
        """The newest energy register reading (Wh) stored for each running session."""
        out: dict[int, float] = {}
        if not tx_ids:
            return out
        rows = self.db.execute(
            f"SELECT tx_id, value, unit FROM meter_values WHERE tx_id IN ({','.join('?' * len(tx_ids))}) "
            "AND measurand='Energy.Active.Import.Register' AND (phase IS NULL OR phase='') ORDER BY id DESC",
            tuple(tx_ids))
        for r in rows:
            if r["tx_id"] in out:
                continue
            try:
                out[r["tx_id"]] = float(r["value"]) * (1000.0 if (r["unit"] or "").lower() == "kwh" else 1.0)
            except ValueError:
                continue
        return out

    # -- meter values -------------------------------------------------------------------------------
    def add_meter_values(self, samples: Iterable[MeterSample], *, tx_id: int | None, device: str | None,
                         charge_box_id: str | None, connector: int, outbox: Sequence[OutboxRow] = ()) -> None:
        """Committed (group commit) before it returns, with its `outbox` rows."""
        rows = [(tx_id, device, charge_box_id, connector, *_mv_fields(s), None) for s in samples]
        if rows or outbox:
            self.group_write(lambda db: (db.executemany(_INSERT_MV, rows), _queue(db, outbox)))

    def meter_values(self, tx_id: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM meter_values WHERE tx_id=? ORDER BY id", (tx_id,))]

    # -- device state (small JSON values that must survive restarts) ---------------------------------
    def put_state(self, device: str, key: str, value: Any) -> None:
        row = (device, key, json.dumps(value))
        self.group_write(lambda db: db.execute("INSERT INTO device_state (device, key, value) VALUES (?,?,?)"
                                               " ON CONFLICT(device, key) DO UPDATE SET value=excluded.value", row))

    def get_state(self, device: str, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM device_state WHERE device=? AND key=?", (device, key)).fetchone()
        return json.loads(row["value"]) if row else default

    # -- event log ----------------------------------------------------------------------------------
    def add_event(self, level: str, message: str, device: str | None = None) -> None:
        row = (time.time(), level, device, message)
        self.group_write(lambda db: db.execute("INSERT INTO events (ts, level, device, message) VALUES (?,?,?,?)", row))

    def events(self, limit: int = 200, device: str | None = None) -> list[dict[str, Any]]:
        if device:
            rows = self.db.execute("SELECT * FROM events WHERE device=? ORDER BY id DESC LIMIT ?", (device, limit))
        else:
            rows = self.db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    # -- load history for the dashboard plot ----------------------------------------------------------
    def add_history(self, ts: float, data: dict[str, Any], keep_s: float = 6 * 3600) -> None:
        text = json.dumps(data)
        self.group_write(lambda db: (db.execute("INSERT INTO load_history (ts, data) VALUES (?,?)", (ts, text)),
                                     db.execute("DELETE FROM load_history WHERE ts<?", (ts - keep_s,))))

    def history(self, since: float) -> list[dict[str, Any]]:
        return [{"ts": r["ts"], **json.loads(r["data"])}
                for r in self.db.execute("SELECT ts, data FROM load_history WHERE ts>=? ORDER BY ts", (since,))]


def _queue(db: sqlite3.Connection, rows: Iterable[OutboxRow]) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO outbox (link, kind, action, payload, tx_id, connector, msg_id, dedup)"
        " VALUES (?,?,?,?,?,?,?,?)",
        [(r.link, r.kind, r.action, r.payload, r.tx_id, r.connector, r.msg_id, r.dedup) for r in rows])


def _move_old_orphans(db: sqlite3.Connection) -> None:
    """Before step 2 an unknown Stop was stored under the id the station gave, which could push our id
    sequence past int32 (then every StartTransaction failed): move those rows apart and let the
    sequence continue from our own highest id."""
    if "orphan_id" not in [c[1] for c in db.execute("PRAGMA table_info(meter_values)")]:
        db.execute("ALTER TABLE meter_values ADD COLUMN orphan_id INTEGER")
    for row in db.execute("SELECT * FROM transactions WHERE state='orphan'").fetchall():
        cur = db.execute(
            "INSERT OR IGNORE INTO orphan_stops (charge_box_id, given_id, meter_stop, stop_time, stop_reason,"
            " why, received) VALUES (?,?,?,?,?,'unknown transaction',?)",
            (row["charge_box_id"], str(row["id"]), row["meter_stop"], row["stop_time"], row["stop_reason"],
             time.time()))
        db.execute("UPDATE meter_values SET orphan_id=?, tx_id=NULL WHERE tx_id=?", (cur.lastrowid, row["id"]))
        db.execute("DELETE FROM transactions WHERE id=?", (row["id"],))
    top = db.execute("SELECT COALESCE(MAX(id), 0) FROM transactions").fetchone()[0]
    db.execute("UPDATE sqlite_sequence SET seq=? WHERE name='transactions'", (top,))
