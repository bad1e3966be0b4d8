"""`ampgate console`: the serial-console maintenance shell (charging-manager.md §7.2).

It runs as its own process on the serial port (an inittab line on the appliance), separate from
`ampgate run`: it reads and writes the same configuration file the web page writes, reads the event log
from the database, and asks the running appliance for live state over its HTTP API on localhost.
Everything goes through stdin/stdout, so it works on a serial tty, a pseudo-terminal or pipes.
"""
from __future__ import annotations

import argparse
import sys

HELP = "the serial-console maintenance shell"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-login", action="store_true",
                   help="skip the password prompt (for a root shell that is already authenticated)")


def main(args: argparse.Namespace) -> int:
    from appliance.console.login import login
    from appliance.console.shell import Shell

    stdin, stdout = sys.stdin, sys.stdout
    password = None
    if not args.no_login:
        ok, password = login(args.config, stdin, stdout)
        if not ok:
            return 1
    shell = Shell(args.config, args.data, stdin, stdout, password)
    try:
        shell.cmdloop()
    except KeyboardInterrupt:
        stdout.write("\n")
    return 0
