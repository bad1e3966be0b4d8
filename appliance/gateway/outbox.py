"""The gateway's durable queue per backend link, and the backend's word on idTags.

Rows are written by the recorder in the same SQLite transaction as the local record
(appliance.gateway.service.Gateway.outbox_rows); this module reads them in order, fills in what only
the backend can know (its transaction id) and removes each row once its CALLRESULT came.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Callable

from appliance.ocpp import rawjson
from appliance.store import Store

log = logging.getLogger("ampgate.gateway")

MAX_QUEUED = 20000        # per link; beyond it the oldest MeterValues go (never a Start or Stop)


class Outbox:
    def __init__(self, store: Store, on_event: Callable[[str, str], None]):
        self.store = store
        self.on_event = on_event

    def next(self, link: str) -> dict[str, Any] | None:
        row = self.store.db.execute("SELECT * FROM outbox WHERE link=? ORDER BY id LIMIT 1", (link,)).fetchone()
        return dict(row) if row else None

    def count(self, link: str) -> int:
        return int(self.store.db.execute("SELECT count(*) FROM outbox WHERE link=?", (link,)).fetchone()[0])

    def backend_tx(self, tx_id: int) -> int | None:
        row = self.store.db.execute("SELECT backend_tx FROM gateway_tx WHERE tx_id=?", (tx_id,)).fetchone()
        return None if row is None else row[0]

    def local_tx(self, link: str, backend_tx: int) -> int | None:
        row = self.store.db.execute("SELECT tx_id FROM gateway_tx WHERE link=? AND backend_tx=?",
                                    (link, backend_tx)).fetchone()
        return None if row is None else int(row[0])

    def prepare(self, row: dict[str, Any]) -> str | None:
        """The payload to send: the station's text with the backend's connector and transaction id;
        None when the transaction has no backend id (its start never reached the backend)."""
        values: dict[str, object] = {"connectorId": row["connector"]}
        if row["kind"] != "start" and row["tx_id"] is not None:
            backend = self.backend_tx(row["tx_id"])
            if backend is None:
                return None
            values["transactionId"] = backend
        return rawjson.replace(row["payload"], values)

    def done(self, row: dict[str, Any], answer: str) -> None:
        """Its CALLRESULT came: remove it; a start's answer gives the backend's transaction id."""
        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM outbox WHERE id=?", (row["id"],))
            if row["kind"] == "start":
                result = json.loads(answer)
                db.execute("INSERT OR REPLACE INTO gateway_tx (tx_id, link, backend_tx) VALUES (?,?,?)",
                           (row["tx_id"], row["link"], int(result["transactionId"])))
                _cache(db, row["link"], str(rawjson.value(row["payload"], "idTag") or ""), result.get("idTagInfo"))
        self.store.group_write(write)

    def attempt(self, row: dict[str, Any]) -> int:
        self.store.group_write(lambda db: db.execute("UPDATE outbox SET attempts=attempts+1 WHERE id=?", (row["id"],)))
        return int(row["attempts"]) + 1

    def drop(self, row: dict[str, Any], why: str) -> None:
        self.store.group_write(lambda db: db.execute("DELETE FROM outbox WHERE id=?", (row["id"],)))
        self.on_event("error", f"{row['action']} for transaction {row['tx_id']} not relayed to {row['link']}: {why}")

    def trim(self, link: str, keep: int = MAX_QUEUED) -> int:
        """Drop the oldest MeterValues beyond `keep` rows; Start/Stop always stay."""
        excess = self.count(link) - keep
        if excess <= 0:
            return 0
        self.store.group_write(lambda db: db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE link=? AND kind='meter' ORDER BY id LIMIT ?)",
            (link, excess)))
        self.on_event("warning", f"queue for {link} full: dropped the {excess} oldest MeterValues")
        return excess


class AuthCache:
    """What a backend last said of each idTag (charging-manager.md §4.5, offline_auth = cache)."""

    def __init__(self, store: Store):
        self.store = store

    def status(self, link: str, id_tag: str) -> str | None:
        row = self.store.db.execute("SELECT status FROM auth_cache WHERE link=? AND id_tag=?", (link, id_tag)).fetchone()
        return None if row is None else str(row[0])

    def remember(self, link: str, id_tag: str, info: Any) -> None:
        self.store.group_write(lambda db: _cache(db, link, id_tag, info))


def _cache(db: sqlite3.Connection, link: str, id_tag: str, info: Any) -> None:
    if id_tag and isinstance(info, dict) and isinstance(info.get("status"), str):
        db.execute("INSERT OR REPLACE INTO auth_cache (link, id_tag, status) VALUES (?,?,?)",
                   (link, id_tag, info["status"]))
