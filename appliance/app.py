"""`ampgate run`: wires everything together in one gevent process. Nothing else knows the wiring."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import time
from typing import Any, Callable

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

from appliance import config as config_mod
from appliance import gcpause
from appliance.lm.failsafe import FailSafe

HELP = "run the appliance: web page, OCPP server, load management, Modbus drivers"
log = logging.getLogger("ampgate")
CONFIG_POLL_S = 2.0   # a hand edit or the console's change is picked up this quickly

# Optional parts register a starter here: fn(runtime) -> object with .stop() (or None).
# Keeping the list here lets each part plug in without the others knowing about it.
LOAD_MANAGEMENT = "load management"
STARTERS: list[tuple[str, str]] = [
    ("ocpp server", "appliance.ocpp.server:start"),
    (LOAD_MANAGEMENT, "appliance.lm.controller:start"),
    ("gateway", "appliance.gateway.service:start"),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-web", action="store_true", help="do not serve the web page and API")


def _resolve(spec: str) -> Callable[[Any], Any]:
    import importlib

    module_name, _, fn = spec.partition(":")
    return getattr(importlib.import_module(module_name), fn)


class Appliance:
    """The running process: holds the runtime and every server/greenlet it started."""

    def __init__(self, cfg: config_mod.Config, data_dir: str, web: bool = True):
        from appliance.runtime import Runtime

        self.runtime = Runtime(cfg, data_dir)
        self.web_enabled = web
        self.parts: list[tuple[str, Any]] = []
        self.web_server: WSGIServer | None = None
        self._watcher: gevent.Greenlet | None = None

    def start(self) -> None:
        from appliance.netguard import fd_budget

        rt = self.runtime
        budget = fd_budget()   # first: raises the open-file limit before any server accepts
        log.info("open files: limit %d, up to %d web and %d OCPP connections", budget.limit, budget.web, budget.ocpp)
        rt.load_devices()
        for name, spec in STARTERS:
            try:
                part = _resolve(spec)(rt)
            except Exception as e:
                if name == LOAD_MANAGEMENT:   # never silently without it: every wallbox paused instead
                    log.exception("load management could not start")
                    part = FailSafe(rt, f"load management could not start: {type(e).__name__}: {e}").start()
                elif isinstance(e, (ImportError, AttributeError)):
                    continue  # part not present in this build
                else:
                    raise
            if part is not None:
                self.parts.append((name, part))
        if self.web_enabled:
            from appliance.webapp.server import make_server

            web = rt.config.section("web")
            self.web_server = make_server(rt)
            self.web_server.start()
            rt.listeners.append(f"web http://{web['bind']}:{self.web_server.server_port}/")
            log.info("web page and API listening on http://%s:%s/", web["bind"], self.web_server.server_port)
        self._watcher = gevent.spawn(self._watch_config)

    def _watch_config(self) -> None:
        """The page, the console and a text editor write one file: follow it when it changes."""
        rt = self.runtime
        while True:
            gevent.sleep(CONFIG_POLL_S)
            try:
                if rt.config.refresh():
                    rt.events.info(f"configuration file {rt.config.path} changed; reloaded")
                    rt.load_devices()
            except config_mod.ConfigError as e:
                rt.events.error(f"configuration file changed but is invalid, keeping the previous settings: {e}")
            except Exception:   # a bug in one reload must not stop following the file
                log.exception("reloading the configuration failed; still watching %s", rt.config.path)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.kill()
        if self.web_server is not None:
            self.web_server.stop(timeout=2)
        for name, part in reversed(self.parts):
            try:
                part.stop()
            except Exception as e:  # keep stopping the rest
                log.error("stopping %s failed: %s", name, e)
        self.runtime.close()


def main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        cfg = config_mod.load_for_run(args.config)
    except config_mod.ConfigError as e:
        print(f"ampgate: {e}", file=sys.stderr)
        return 2
    try:
        app = Appliance(cfg, args.data, web=not args.no_web)
    except (OSError, sqlite3.Error) as e:   # the data directory: one line, not a traceback
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"ampgate: data directory {args.data}: cannot create or write it ({why}); give a writable one "
              "with --data DIR", file=sys.stderr)
        return 2
    try:
        app.start()
    except OSError as e:
        print(f"ampgate: cannot listen: {e}", file=sys.stderr)
        app.stop()
        return 2
    gcpause.tune()   # what start-up allocated is frozen out of the collector's way
    log.info("ampgate started in %.2f s (config %s, data %s)", time.monotonic() - t0, args.config, args.data)
    stop = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop.set)
    restart = gevent.event.Event()

    def ask_restart() -> None:   # the page's restart button: answer the request first, then go
        restart.set()
        gevent.spawn_later(0.5, stop.set)

    app.runtime.restart = ask_restart
    stop.wait()
    log.info("%s; garbage collection: %s", "restarting" if restart.is_set() else "stopping", gcpause.stop())
    app.stop()
    log.info("stopped")
    if restart.is_set():
        _exec_again()
    return 0


def _exec_again() -> None:
    """The same command line in a fresh process (same pid: procd and systemd see no exit)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "appliance", *sys.argv[1:]])

