"""The `ampgate` command line. Each subcommand lives in its own module, which provides
HELP, add_arguments(parser) and main(args) -> exit status."""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # first: everything below may import socket, ssl, threading or time

import argparse  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import logging.handlers  # noqa: E402
import sys  # noqa: E402

from appliance import __version__  # noqa: E402

# name -> (module, one-line help). Only the module of the command being run is imported, so
# `ampgate run` does not pay for the certificate tools or the Modbus simulator at start-up.
COMMANDS = {
    "run": ("appliance.app", "run the appliance: web page, OCPP server, load management, Modbus drivers"),
    "cert": ("appliance.certs.cli", "certificates: show, import, regenerate, CA list, client certificate, make/sign"),
    "console": ("appliance.console", "the serial-console maintenance shell"),
}
SIMULATORS = {
    "ocpp": ("appliance.sim.ocpp_wallbox", "a simulated OCPP 1.6J wallbox (for demos, tests and benchmarks)"),
    "powerbrain": ("appliance.sim.powerbrain", "a simulated Power Brain Modbus slave with a simple car model"),
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="etc/ampgate.conf", help="configuration file (default: %(default)s)")
    p.add_argument("--data", default="var", help="data directory: database, certificates (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log level (default: %(default)s)")
    p.add_argument("--syslog", action="store_true",
                   help="log to the system log (/dev/log, facility daemon) instead of standard error")


def _add(sub: argparse._SubParsersAction, name: str, entry: tuple[str, str], chosen: bool) -> None:
    module_name, help_text = entry
    p = sub.add_parser(name, help=help_text, description=help_text)
    _common(p)
    if chosen:
        mod = importlib.import_module(module_name)
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    words = [w for w in (sys.argv[1:] if argv is None else argv) if not w.startswith("-")]
    parser = argparse.ArgumentParser(prog="ampgate", description="Ampgate charging manager appliance")
    parser.add_argument("--version", action="version", version=f"ampgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, entry in COMMANDS.items():
        _add(sub, name, entry, chosen=bool(words) and words[0] == name)
    sim = sub.add_parser("sim", help="simulated devices for demos, tests and benchmarks")
    simsub = sim.add_subparsers(dest="simulator", metavar="DEVICE", required=True)
    for name, entry in SIMULATORS.items():
        _add(simsub, name, entry, chosen=words[:2] == ["sim", name])
    return parser


SYSLOG_SOCKET = "/dev/log"


def setup_logging(level: str, syslog: bool = False) -> None:
    if syslog:  # syslog stamps the time and keeps the severity; the tag names us in `logread`
        handler: logging.Handler = logging.handlers.SysLogHandler(
            SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter("ampgate[%(process)d]: %(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    setup_logging(args.log_level, args.syslog)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
