"""The `ampgate` command line. Each subcommand lives in its own module, which provides
HELP, add_arguments(parser) and main(args) -> exit status."""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # first: everything below may import socket, ssl, threading or time

import argparse  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from appliance import __version__  # noqa: E402

COMMANDS = [
    ("run", "appliance.app"),
    ("cert", "appliance.certs.cli"),
    ("console", "appliance.console"),
]
SIMULATORS = [
    ("ocpp", "appliance.sim.ocpp_wallbox"),
    ("powerbrain", "appliance.sim.powerbrain"),
]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="etc/ampgate.conf", help="configuration file (default: %(default)s)")
    p.add_argument("--data", default="var", help="data directory: database, certificates (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log level (default: %(default)s)")


def _add(sub: argparse._SubParsersAction, name: str, module_name: str) -> None:
    mod = importlib.import_module(module_name)
    p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
    _common(p)
    mod.add_arguments(p)
    p.set_defaults(func=mod.main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ampgate", description="Ampgate charging manager appliance")
    parser.add_argument("--version", action="version", version=f"ampgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS:
        _add(sub, name, module_name)
    sim = sub.add_parser("sim", help="simulated devices for demos, tests and benchmarks")
    simsub = sim.add_subparsers(dest="simulator", metavar="DEVICE", required=True)
    for name, module_name in SIMULATORS:
        _add(simsub, name, module_name)
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
