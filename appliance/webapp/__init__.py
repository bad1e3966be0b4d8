"""The Flask app: the local web page and the JSON API, one blueprint per area."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

WEB_DIR = Path(__file__).resolve().parents[2] / "web"


def create_app(runtime: Any) -> Flask:
    """App factory; `runtime` is an appliance.runtime.Runtime (no globals tests must patch)."""
    app = Flask("ampgate", template_folder=str(WEB_DIR / "templates"), static_folder=str(WEB_DIR / "static"))
    app.config["RUNTIME"] = runtime
    from appliance.webapp.api import api

    app.register_blueprint(api)
    return app
