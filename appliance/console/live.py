"""Live state for the console: the running appliance's /api/status, and the event log in SQLite.

The console is a separate process, so it asks the appliance over HTTP on this host (Basic auth, user
`admin`, with the password typed at login) and reads the event log straight from the database, which
works whether or not the appliance runs.
"""
from __future__ import annotations

import base64
import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DB_FILE = "ampgate.db"      # the Runtime's database in the data directory
API_USER = "admin"
API_TIMEOUT_S = 5.0
WILDCARD_BINDS = ("", "0.0.0.0", "::")


class LiveError(Exception):
    """One line for the user: why live state could not be had (`status`: the HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def api_url(web: dict[str, Any], path: str) -> str:
    host = web.get("bind", "")
    host = "127.0.0.1" if host in WILDCARD_BINDS else host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{web['port']}{path}"


def get_json(web: dict[str, Any], path: str, password: str | None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET (or with `body`, POST) a JSON answer from the running appliance, or raise LiveError saying
    what is wrong (for a refused request: the appliance's own error line)."""
    url = api_url(web, path)
    req = urllib.request.Request(url, headers={"Accept": "application/json"},
                                 data=None if body is None else json.dumps(body).encode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if password:
        token = base64.b64encode(f"{API_USER}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=API_TIMEOUT_S) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        if e.code == 401 and not password:
            raise LiveError("the appliance wants the web password for live state: log in to the console"
                            " (without --no-login)", status=401) from None
        if e.code == 401:
            raise LiveError("the appliance refused the console's login (web password changed since login?):"
                            " log in again", status=401) from None
        try:
            said = json.loads(e.read().decode("utf-8")).get("error")
        except (ValueError, OSError, AttributeError):
            said = None
        if said:
            raise LiveError(said, status=e.code) from None
        raise LiveError(f"the appliance answered {e.code} {e.reason} for {url}", status=e.code) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            raise LiveError(f"the appliance is not running (nothing answers on {api_url(web, '/')})") from None
        raise LiveError(f"cannot reach the appliance at {url}: {e.reason}") from None
    except (TimeoutError, OSError) as e:
        raise LiveError(f"the appliance did not answer at {url}: {e}") from None
    except ValueError:
        raise LiveError(f"{url} did not answer JSON: is something else on that port?") from None


def answers(web: dict[str, Any]) -> bool:
    """True when the appliance answers on its web port (refusing us for lack of a password counts)."""
    try:
        get_json(web, "/api/status", None)
        return True
    except LiveError as e:
        return e.status == 401


# -- event log ------------------------------------------------------------------------------------

class EventReader:
    """Reads the `events` table read-only; never creates the database."""

    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / DB_FILE

    def _query(self, sql: str, args: tuple) -> list[dict[str, Any]]:
        if not self.path.is_file():
            raise LiveError(f"no event log yet: {self.path} does not exist (has the appliance run here?)")
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
            try:
                db.row_factory = sqlite3.Row
                return [dict(r) for r in db.execute(sql, args)]
            finally:
                db.close()
        except sqlite3.Error as e:
            raise LiveError(f"cannot read the event log in {self.path}: {e}") from None

    def last(self, n: int) -> list[dict[str, Any]]:
        """The last n events, oldest first."""
        rows = self._query("SELECT id, ts, level, device, message FROM events ORDER BY id DESC LIMIT ?", (n,))
        return rows[::-1]

    def after(self, event_id: int) -> list[dict[str, Any]]:
        return self._query("SELECT id, ts, level, device, message FROM events WHERE id > ? ORDER BY id",
                           (event_id,))


def format_event(ev: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev["ts"]))
    who = f"{ev['device']}: " if ev.get("device") else ""
    return f"{when} {ev['level']:<7} {who}{ev['message']}"
