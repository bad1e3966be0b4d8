"""JSON API (interfaces.md): status, devices, transactions."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

api = Blueprint("api", __name__, url_prefix="/api")


def _rt():
    return current_app.config["RUNTIME"]


@api.get("/status")
def status():
    return jsonify(_rt().status())


@api.get("/transactions")
def transactions():
    args = request.args
    try:
        limit = int(args.get("limit", 1000))
    except ValueError:
        return jsonify(error="limit: must be an integer"), 400
    rows = _rt().store.transactions(device=args.get("device") or None, since=args.get("since") or None,
                                    until=args.get("until") or None, limit=limit)
    return jsonify(transactions=rows)
