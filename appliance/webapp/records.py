"""Transactions (list, filter, CSV export) and the event log."""
from __future__ import annotations

import csv
import io
import time
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from appliance.store.db import TX_COLUMNS

bp = Blueprint("records", __name__)

PAGE_ROWS = 500
CSV_COLUMNS = TX_COLUMNS + ("energy_wh",)
# a spreadsheet runs a cell starting with one of these as a formula (an idTag or a stop reason comes
# from a station, i.e. from anyone who can plug in); a leading apostrophe makes it plain text
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _rt() -> Any:
    return current_app.config["RUNTIME"]


def _filtered() -> tuple[dict[str, str], list[dict[str, Any]]]:
    f = {k: (request.args.get(k) or "").strip() for k in ("device", "since", "until")}
    until = f["until"]
    if len(until) == 10:   # a date: include that whole day
        until += "T99"
    rows = _rt().store.transactions(device=f["device"] or None, since=f["since"] or None,
                                    until=until or None, limit=100000)
    for r in rows:
        ms, me = r.get("meter_start"), r.get("meter_stop")
        r["energy_wh"] = me - ms if isinstance(ms, int) and isinstance(me, int) and me >= ms else None
    return f, rows


@bp.get("/transactions")
def transactions():
    f, rows = _filtered()
    names = sorted(set(_rt().config.devices()) | {r["device"] for r in rows if r["device"]})
    return render_template("transactions.html", rows=rows[:PAGE_ROWS], total=len(rows), filters=f, names=names)


@bp.get("/transactions.csv")
def transactions_csv():
    _, rows = _filtered()
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=ampgate-transactions-{stamp}.csv"})


@bp.get("/log")
def log():
    device = (request.args.get("device") or "").strip() or None
    try:
        limit = min(max(int(request.args.get("limit", 200)), 1), 5000)
    except ValueError:
        limit = 200
    return render_template("log.html", events=_rt().store.events(limit=limit, device=device),
                           device=device or "", limit=limit)
