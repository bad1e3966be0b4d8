"""Processes the gateway tests drive: an `ocpp`-package backend and `ocpp`-package wallboxes."""
import itertools
import json
import sys

import gevent
from gevent.subprocess import PIPE, Popen

from conftest import ROOT, free_port, wait_for

BACKEND = ROOT / "tests" / "peers" / "ocpp_pkg_backend.py"
BOX = ROOT / "tests" / "peers" / "ocpp_pkg_box.py"


class JsonPeer:
    """A peer process speaking JSON lines; `ask` sends a numbered command and waits for its answer."""

    def __init__(self, args: list[str], ready: str):
        self.proc = Popen([sys.executable, *args], stdin=PIPE, stdout=PIPE, text=True, bufsize=1)
        self.events: list[dict] = []
        self._n = itertools.count(1)
        self._reader = gevent.spawn(self._read)
        self.wait(lambda e: e["event"] == ready, what=ready)

    def _read(self):
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def wait(self, match, timeout: float = 20, what: str = "event") -> dict:
        return wait_for(lambda: next((e for e in self.events if match(e)), None), timeout, what=what)

    def ask(self, verb: str, *words: str, payload: dict, timeout: float = 20) -> dict:
        n = next(self._n)
        self.proc.stdin.write(" ".join([verb, str(n), *words, json.dumps(payload)]) + "\n")
        self.proc.stdin.flush()
        return self.wait(lambda e: e.get("n") == n and e["event"] in ("result", "error"), timeout, what=f"answer {n}")

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


class Backend(JsonPeer):
    def __init__(self, *extra: str, port: int | None = None):
        self.port = port or free_port()
        super().__init__([str(BACKEND), "--port", str(self.port), *extra], "ready")

    def frames(self, cp: str, action: str | None = None) -> list[list]:
        """Every CALL this backend received from `cp` (optionally of one action), parsed."""
        out = []
        for e in list(self.events):
            if e["event"] == "rx" and e["cp"] == cp:
                frame = json.loads(e["raw"])
                if frame[0] == 2 and (action is None or frame[2] == action):
                    out.append(frame)
        return out

    def raw_calls(self, cp: str, action: str) -> list[str]:
        return [e["raw"] for e in list(self.events) if e["event"] == "rx" and e["cp"] == cp
                and json.loads(e["raw"])[0] == 2 and json.loads(e["raw"])[2] == action]

    def call(self, cp: str, action: str, payload: dict) -> dict:
        return self.ask("call", cp, action, payload=payload)


class Box(JsonPeer):
    def __init__(self, url: str):
        super().__init__([str(BOX), url], "connected")

    def send(self, action: str, payload: dict) -> dict:
        return self.ask("send", action, payload=payload)

    def received(self, action: str) -> list[dict]:
        return [e["payload"] for e in list(self.events) if e["event"] == "rx" and e["action"] == action]
