"""The start page: device tiles and grid load, kept fresh by static/dashboard.js from /api/status."""
from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    return render_template("dashboard.html")
