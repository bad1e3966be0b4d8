"""Run the real appliance (`python -m appliance run`) as a subprocess on free ports and drive Debian's
chromium with Playwright; shared by the browser tests and `make screenshots`."""
from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def wait_for(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition", interval: float = 0.05):
    """Poll `cond` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Appliance:
    """`ampgate run` on its own config and data dir, web and OCPP on free ports of 127.0.0.1."""

    def __init__(self, workdir: Path, extra_config: str = "", max_open_files: int | None = None):
        self.workdir = Path(workdir)
        self.max_open_files = max_open_files   # a hard RLIMIT_NOFILE for the process, as a service may have
        self.web_port, self.ocpp_port = free_port(), free_port()
        self.config = self.workdir / "ampgate.conf"
        self.data = self.workdir / "var"
        self.config.write_text(
            f"[web]\nport = {self.web_port}\nbind = 127.0.0.1\n\n"
            f"[ocpp_server]\nport = {self.ocpp_port}\nbind = 127.0.0.1\n\n{extra_config}", encoding="utf-8")
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "appliance.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def claim_code(self) -> str:
        """The one-time code the first visit needs (what the log and the serial console show)."""
        from appliance import claim

        return wait_for(lambda: claim.read(self.data), 10, "the claim code")

    def start(self) -> "Appliance":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "run", "--config", str(self.config), "--data", str(self.data),
             "--log-level", "info"],
            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), preexec_fn=self._limits)
        try:
            wait_for(lambda: self.proc.poll() is not None or _listening(self.web_port), 20, "the web port")
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"appliance exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        return self

    def _limits(self) -> None:
        if self.max_open_files:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_open_files, self.max_open_files))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "Appliance":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def set_password(appliance: Appliance, password: str) -> None:
    """What a first visit does, without a browser: GET /setup for the token, POST the claim code and
    the password."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    html = opener.open(appliance.url + "/setup").read().decode()
    tok = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    data = urllib.parse.urlencode({"password": password, "password2": password, "csrf_token": tok,
                                   "claim_code": appliance.claim_code()}).encode()
    opener.open(appliance.url + "/setup", data=data).read()


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
