"""The database file at start: checked, kept when damaged, and never a reason to reuse an id.

A file damaged in the middle opened fine and then refused every transaction; one truncated to
0 bytes restarted silently at transaction id 1, handing out ids stations still hold. Now:
- `problem()` runs SQLite's quick_check before the file is used (and calls an empty file a problem);
- a damaged file is copied aside (`ampgate.db.damaged-<time>`) and what can still be read is
  carried into a new file, table by table, row range by row range;
- the highest transaction id ever handed out is kept beside the database (`ampgate.db.txid`,
  written with every new transaction), so ids go on above it whatever happened to the file.
"""
from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from pathlib import Path

from appliance.fsutil import atomic_write

log = logging.getLogger("ampgate.store")

TABLES = ("transactions", "orphan_stops", "meter_values", "device_state", "events", "load_history")
ID_GAP = 1000          # a damaged file without the id file: ids go on this far above the highest read
MAX_SKIPS = 64         # row ranges skipped per table before giving up on the rest of it


def id_file(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".txid")


def highest_id(db_path: Path) -> int:
    """The highest transaction id ever handed out with this data directory (0 if unknown)."""
    try:
        return int(id_file(db_path).read_text(encoding="ascii").strip() or 0)
    except (OSError, ValueError):
        return 0


def remember_id(db_path: Path, tx_id: int) -> None:
    atomic_write(id_file(db_path), str(tx_id).encode("ascii"))


def problem(db_path: Path) -> str | None:
    """What is wrong with the database file, or None (also when there is none yet)."""
    if not db_path.exists():
        return None
    if db_path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        return str(e)
    return None if rows == ["ok"] else "; ".join(rows)


def set_aside(db_path: Path) -> Path | None:
    """Move the damaged file (and its WAL) out of the way; returns the copy (None for an empty file)."""
    copy = None
    if db_path.stat().st_size:
        copy = db_path.with_name(f"{db_path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(db_path, copy)
        wal = db_path.with_name(db_path.name + "-wal")
        if wal.exists():
            shutil.copy2(wal, copy.with_name(copy.name + "-wal"))
    for suffix in ("", "-wal", "-shm"):
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
    return copy


def salvage(copy: Path, db: sqlite3.Connection) -> dict[str, int]:
    """Carry the readable rows of every table from the damaged copy into `db`; rows per table."""
    try:
        src = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    except sqlite3.DatabaseError:
        return {}
    carried = {}
    try:
        for table in TABLES:
            carried[table] = _carry(src, db, table)
    finally:
        src.close()
    return carried


def _carry(src: sqlite3.Connection, db: sqlite3.Connection, table: str) -> int:
    try:
        ours = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        theirs = {r[1] for r in src.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        return 0
    cols = ",".join(c for c in ours if c in theirs)
    if not cols:
        return 0
    insert = f"INSERT OR IGNORE INTO {table} ({cols}) VALUES ({','.join('?' * len(cols.split(',')))})"
    last, step, skips, n = -1 << 62, 1, 0, 0
    while skips <= MAX_SKIPS:
        try:
            for row in src.execute(f"SELECT rowid, {cols} FROM {table} WHERE rowid > ? ORDER BY rowid", (last,)):
                db.execute(insert, tuple(row[1:]))
                last, n = row[0], n + 1
            break
        except sqlite3.DatabaseError:   # a damaged page: skip ahead, further each time
            last, step, skips = last + step, step * 2, skips + 1
    return n


def continue_ids(db: sqlite3.Connection, db_path: Path, damaged: bool) -> None:
    """Transaction ids go on above every id handed out before, whatever happened to the file."""
    ours = db.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name='transactions'").fetchone()[0]
    top = max(ours, db.execute("SELECT COALESCE(MAX(id), 0) FROM transactions").fetchone()[0])
    known = highest_id(db_path)
    want = known if known else top + (ID_GAP if damaged else 0)
    if want > ours:
        db.execute("DELETE FROM sqlite_sequence WHERE name='transactions'")
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('transactions', ?)", (want,))
        log.warning("transaction ids continue after %d (the database knew only up to %d)", want, ours)
