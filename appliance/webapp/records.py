"""Transactions (list, filter, CSV export) and the event log."""
from __future__ import annotations

import csv
import io
import time
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from appliance.i18n import N_, _, fmt_time
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


def stamp() -> str:
    """For download file names: local date and time."""
    return time.strftime("%Y%m%d-%H%M%S")


def _rt() -> Any:
    return current_app.config["RUNTIME"]


def _filtered() -> tuple[dict[str, str], list[dict[str, Any]]]:
    f = {k: (request.args.get(k) or "").strip() for k in ("device", "id_tag", "since", "until")}
    until = f["until"]
    if len(until) == 10:   # a date: include that whole day
        until += "T99"
    rt = _rt()
    rows = rt.store.transactions(device=f["device"] or None, since=f["since"] or None, until=until or None,
                                 limit=100000, id_tag=f["id_tag"] or None)
    for r in rows:
        ms, me = r.get("meter_start"), r.get("meter_stop")
        r["energy_wh"] = me - ms if isinstance(ms, int) and isinstance(me, int) and me >= ms else None
    _running_energy(rt, [r for r in rows if r["energy_wh"] is None and r.get("stop_time") is None])
    return f, rows


def _running_energy(rt: Any, rows: list[dict[str, Any]]) -> None:
    """kWh so far for running sessions: the box's live reading, else the newest stored meter value."""
    if not rows:
        return
    live = {}
    for dev in list(rt.devices.values()):
        try:
            st = dev.status()
        except Exception:   # a box that cannot say: the stored reading serves
            continue
        if st.transaction is not None and st.energy_wh is not None:
            live[st.transaction] = st.energy_wh
    stored = rt.store.last_energy_wh([r["id"] for r in rows if r["id"] not in live])
    for r in rows:
        if r["id"] in live:
            r["energy_wh"] = live[r["id"]]
        elif r["id"] in stored and isinstance(r.get("meter_start"), int):
            r["energy_wh"] = max(0.0, stored[r["id"]] - r["meter_start"])
        r["running"] = r["energy_wh"] is not None


@bp.get("/transactions")
def transactions():
    f, rows = _filtered()
    names = sorted(set(_rt().config.devices()) | {r["device"] for r in rows if r["device"]})
    kwh = sum((r["energy_wh"] or 0) for r in rows) / 1000
    return render_template("transactions.html", rows=rows[:PAGE_ROWS], total=len(rows), filters=f, names=names,
                           total_kwh=kwh)


# the spreadsheet variant: what German Excel opens as is (semicolon, decimal comma, UTF-8 with BOM)
SHEET_COLUMNS = (("id", N_("Session")), ("device", N_("Device")), ("connector", N_("Connector")),
                 ("id_tag", N_("idTag")), ("start_time", N_("Start")), ("stop_time", N_("Stop")),
                 ("kwh", N_("kWh")), ("state", N_("State")), ("stop_reason", N_("Stop reason")))


def _sheet(rows: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow([_(title) for _key, title in SHEET_COLUMNS])
    for r in rows:
        cells = dict(r, start_time=fmt_time(r["start_time"]), stop_time=fmt_time(r.get("stop_time")),
                     device=r.get("device") or r.get("charge_box_id") or "",
                     kwh="" if r.get("energy_wh") is None else f"{r['energy_wh'] / 1000:.3f}".replace(".", ","))
        w.writerow([csv_cell(cells.get(k)) for k, _title in SHEET_COLUMNS])
    return Response("\ufeff" + out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=ampgate-sessions-{stamp()}.csv"})


@bp.get("/transactions.csv")
def transactions_csv():
    """CSV as before (comma, UTC as stored, Wh); ?format=excel: the spreadsheet variant."""
    _, rows = _filtered()
    if request.args.get("format") == "excel":
        return _sheet(rows)
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=ampgate-transactions-{stamp()}.csv"})


@bp.get("/log")
def log():
    device = (request.args.get("device") or "").strip() or None
    try:
        limit = min(max(int(request.args.get("limit", 200)), 1), 5000)
    except ValueError:
        limit = 200
    return render_template("log.html", events=_rt().store.events(limit=limit, device=device),
                           device=device or "", limit=limit)
