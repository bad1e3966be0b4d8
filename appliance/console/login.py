"""Login on the serial console with the web page's admin password (`[web] password_hash`).

The console is physical access to the box: with no password set yet, or a configuration file that
cannot be read, it lets the user in (saying so) so the box can be repaired from here.
"""
from __future__ import annotations

import os
import time
from typing import TextIO

from configobj import ConfigObj, ConfigObjError
from werkzeug.security import check_password_hash

from appliance import config as config_mod

TRIES = 3
FAIL_DELAY_S = 1.0   # slows guessing over the serial line; a tty has no faster way in


def read_secret(prompt: str, stdin: TextIO, stdout: TextIO) -> str | None:
    """One line without echo on a terminal (plain read on a pipe); None at end of input."""
    fd = stdin.fileno() if hasattr(stdin, "fileno") else -1
    old = None
    if fd >= 0 and os.isatty(fd):   # echo off before the prompt shows: a quick typist is not echoed either
        import termios

        old = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
    stdout.write(prompt)
    stdout.flush()
    try:
        line = stdin.readline()
    finally:
        if old is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
            stdout.write("\n")
    return None if line == "" else line.rstrip("\r\n")


def stored_hash(config_path: str) -> tuple[str | None, str]:
    """(password hash or "" if none is set, problem) — hash None when the file cannot be read."""
    try:
        return config_mod.load(config_path).section("web")["password_hash"], ""
    except config_mod.ConfigError as e:
        problem = str(e)
    # an invalid file may still hold a readable password hash: do not open the door wider than needed
    try:
        raw = ConfigObj(config_path, encoding="utf-8", file_error=True)
        return str(raw.get("web", {}).get("password_hash", "")), problem
    except (ConfigObjError, OSError, UnicodeDecodeError):
        return None, problem


def hash_usable(h: str) -> bool:
    """A werkzeug hash ("method$salt$digest") that a password can match; hand-edited text cannot."""
    if h.count("$") != 2 or h.split(":", 1)[0] not in ("pbkdf2", "scrypt"):
        return False
    try:
        check_password_hash(h, "")
        return True
    except ValueError:
        return False


def login(config_path: str, stdin: TextIO, stdout: TextIO) -> tuple[bool, str | None]:
    """Ask for the password. Returns (let in, the password typed — for the appliance's API)."""
    h, problem = stored_hash(config_path)
    if problem:
        stdout.write(f"warning: {problem}\n")
    if h is None:
        stdout.write("the configuration cannot be read: console open without login so it can be repaired\n")
        return True, None
    if not h:
        stdout.write("no web admin password is set yet: console open (set one with 'password reset')\n")
        return True, None
    if not hash_usable(h):
        # no password could ever match it, on the page either: this port is the way to repair that
        stdout.write("the stored web password hash is damaged: console open (set a new one with 'password reset')\n")
        return True, None
    for attempt in range(TRIES):
        typed = read_secret("password: ", stdin, stdout)
        if typed is None:
            stdout.write("login: no input\n")
            return False, None
        if check_password_hash(h, typed):
            return True, typed
        time.sleep(FAIL_DELAY_S)
        stdout.write("login incorrect\n" if attempt < TRIES - 1 else f"login incorrect ({TRIES} tries)\n")
    stdout.flush()
    return False, None
