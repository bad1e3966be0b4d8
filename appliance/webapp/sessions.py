"""Login sessions known to the server, so that logging out really ends one.

The session cookie is signed, not stored: without this book a copied cookie would stay valid after
"log out" until it expires (30 days). Each login gets a random id; the cookie carries the id, the
book keeps a hash of it with its expiry in `<data dir>/web_sessions` (mode 0600), so a restart keeps
everyone logged in and logging out (or a password change) ends the session for good.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from pathlib import Path

from appliance.fsutil import atomic_write

log = logging.getLogger("ampgate.web")
FILE = "web_sessions"
MAX_SESSIONS = 64       # more logins than this end the oldest sessions first


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionBook:
    def __init__(self, data_dir: str | Path, lifetime_s: float):
        self.path = Path(data_dir) / FILE
        self.lifetime_s = lifetime_s
        self._live: dict[str, float] = self._load()

    def _load(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(k): float(v) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as e:
            log.warning("web: %s unreadable (%s): every session has to log in again", self.path, e)
            return {}

    def _save(self) -> None:
        now = time.time()
        live = sorted(((k, t) for k, t in self._live.items() if t > now), key=lambda kv: kv[1])
        self._live = dict(live[-MAX_SESSIONS:])
        atomic_write(self.path, json.dumps(self._live).encode(), mode=0o600)

    def start(self) -> str:
        sid = secrets.token_urlsafe(24)
        self._live[_key(sid)] = time.time() + self.lifetime_s
        self._save()
        return sid

    def valid(self, sid: object) -> bool:
        return isinstance(sid, str) and self._live.get(_key(sid), 0.0) > time.time()

    def end(self, sid: object) -> None:
        if isinstance(sid, str) and self._live.pop(_key(sid), None) is not None:
            self._save()

    def end_all(self) -> None:
        self._live.clear()
        self._save()
