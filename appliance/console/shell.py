"""The console's command loop (stdlib `cmd`): one method per command, one clear line per failure.

Every command reads the configuration file fresh, so what the web page saved a moment ago counts;
changes go through appliance.config, the same validated, atomic writer the page uses.
"""
from __future__ import annotations

import cmd
import datetime as dt
import difflib
import select
import shlex
import shutil
import socket
from pathlib import Path
from typing import Any, TextIO


from appliance import __version__, claim
from appliance import config as config_mod
from appliance.console import live, selftest, system
from appliance.console.login import read_secret
from appliance.fsutil import atomic_write
from appliance.passwords import MIN_PASSWORD, make_hash

FOLLOW_POLL_S = 0.5
LOG_LINES = 20
HELP_WIDTH = 24    # usages longer than this get a line of their own (80-column serial terminals)

COMMANDS = {
    "status": ("status", "mode, cycle time, per-phase load, devices with state and current"),
    "devices": ("devices", "the configured devices (and their live state)"),
    "log": ("log tail [-f] [-n N]", "the last N events (default 20); -f follows until Enter or Ctrl-C"),
    "net": ("net show | dhcp | static ADDRESS/PREFIX [GATEWAY [DNS ...]]", "network settings (appliance only)"),
    "cert": ("cert show | regenerate", "the server certificate; regenerate makes a new onboard one"),
    "password": ("password reset", "set or clear the web admin password (the configuration is kept)"),
    "config": ("config reset [certs]", "factory defaults after confirmation; 'certs' also renews certificates"),
    "grid": ("grid [AMPS]", "show or set the grid connection's limit per phase (25,5 or 25.5)"),
    "enable": ("enable NAME", "let load management control a device again"),
    "disable": ("disable NAME", "take a device out of control (kept in the configuration)"),
    "box": ("box NAME charge_now [MIN] | pause | resume | stop | unlock", "act on one wallbox (as on the page)"),
    "modbus": ("modbus PORT UNIT REGISTER [32] [signed] [scale=X] [input] [write=V [flash]]",
               "read or write one register through the running appliance's bus queue"),
    "restart": ("restart", "restart the appliance's service (settings that need it)"),
    "selftest": ("selftest", "configuration, ports, Modbus buses, database, certificate"),
    "reboot": ("reboot", "restart the appliance's hardware (appliance only)"),
    "help": ("help [COMMAND]", "this list, or one command's usage"),
    "exit": ("exit", "leave the console (also Ctrl-D)"),
}


class Failure(Exception):
    """A command failed; the message is the one line the user sees."""


class Shell(cmd.Cmd):
    prompt = "ampgate> "

    def __init__(self, config_path: str, data_dir: str, stdin: TextIO, stdout: TextIO, password: str | None):
        super().__init__(stdin=stdin, stdout=stdout)
        # on a terminal (serial tty or pty): readline's line editing and history (Up/Down); on pipes plain lines
        self.use_rawinput = _line_editing(stdin, stdout)
        self.config_path = config_path
        self.data_dir = data_dir
        self.password = password       # typed at login; the appliance's API wants it (Basic auth)
        self.intro = self._banner() + self._claim_note()

    def _banner(self) -> str:
        """Name, version and where the page and the OCPP endpoint are (first thing on the serial line)."""
        try:
            cfg = config_mod.load(self.config_path)
            web, ocpp = cfg.section("web"), cfg.section("ocpp_server")
            host = _own_address()
            scheme = {"on": "wss", "detect": "ws/wss"}.get(ocpp["tls"], "ws")
            where = f"\nweb page http://{host}:{web['port']}/   wallboxes {scheme}://{host}:{ocpp['port']}/<chargeBoxId>"
        except config_mod.ConfigError:
            where = ""
        return (f"Ampgate {__version__} maintenance console on {socket.gethostname()}"
                " - 'help' lists the commands" + where)

    def _claim_note(self) -> str:
        """Before the web page has a password, setting one there needs the claim code: show it here."""
        try:
            if config_mod.load(self.config_path).section("web")["password_hash"]:
                return ""
        except config_mod.ConfigError:
            return ""
        code = claim.read(self.data_dir)
        if code:
            return f"\nweb page not set up yet: claim code {code} (enter it there with the new password)"
        return "\nweb page not set up yet: start the appliance for a claim code, or use 'password reset' here"

    # -- the loop --------------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def cmdloop(self, intro: Any = None) -> None:
        while True:
            try:
                super().cmdloop(intro)
                return
            except KeyboardInterrupt:   # Ctrl-C at the prompt: a fresh prompt, not the end of the console
                self.say("^C")
                self.intro = intro = ""

    def onecmd(self, line: str) -> bool:
        try:
            return bool(super().onecmd(line))
        except (Failure, live.LiveError, system.HostError) as e:   # each is one line for the user
            self.say(str(e))
        except KeyboardInterrupt:
            self.say("interrupted")
        except Exception as e:   # a bug must not end the console: one line, the prompt comes back
            self.say(f"{line.split()[0] if line.split() else 'command'}: internal error ({type(e).__name__}: {e})")
        return False

    def emptyline(self) -> bool:
        return False            # cmd's default repeats the last command: not on a console that reboots

    def default(self, line: str) -> bool:
        word = line.split()[0]
        close = difflib.get_close_matches(word, list(COMMANDS), n=1)
        hint = f" - did you mean '{close[0]}'?" if close else ""
        self.say(f"unknown command '{word}'{hint} ('help' lists the commands)")
        return False

    def do_EOF(self, arg: str) -> bool:
        self.say()
        return True

    def do_exit(self, arg: str) -> bool:
        return True

    do_quit = do_exit

    def do_help(self, arg: str) -> None:
        if arg:
            if arg not in COMMANDS:
                raise Failure(f"help: no command '{arg}'")
            usage, text = COMMANDS[arg]
            self.say(f"{usage}\n  {text}")
            return
        width = max(len(u) for u, _ in COMMANDS.values() if len(u) <= HELP_WIDTH)
        for usage, text in COMMANDS.values():
            self.say(f"  {usage:<{width}}  {text}" if len(usage) <= HELP_WIDTH else f"  {usage}\n  {'':<{width}}  {text}")

    # -- helpers ---------------------------------------------------------------------------------
    def config(self) -> config_mod.Config:
        try:
            return config_mod.load(self.config_path)
        except config_mod.ConfigError as e:
            raise Failure(f"configuration: {e} (fix it, or 'config reset')") from None

    def live_status(self, cfg: config_mod.Config) -> dict[str, Any]:
        return live.get_json(cfg.section("web"), "/api/status", self.password)

    def confirm(self, question: str) -> bool:
        self.stdout.write(f"{question} Type yes to go on: ")
        self.stdout.flush()
        return self.stdin.readline().strip().lower() == "yes"

    def applied(self, cfg: config_mod.Config, restart: bool = False) -> str:
        """Tell how the running appliance gets the changed file: it re-reads the file by itself
        within a few seconds; only a reset (ports may change) restarts the service."""
        if restart:
            try:
                if system.restart_service():
                    return "the appliance was restarted with it"
            except system.HostError as e:
                return f"restarting the appliance failed ({e}): reboot to apply"
        if live.answers(cfg.section("web")):
            return "the running appliance picks it up within a few seconds"
        return "it applies when the appliance starts"

    @staticmethod
    def words(arg: str, usage: str) -> list[str]:
        try:
            return shlex.split(arg)
        except ValueError as e:
            raise Failure(f"{usage.split()[0]}: {e}") from None

    # -- status and devices ----------------------------------------------------------------------
    def do_status(self, arg: str) -> None:
        st = self.live_status(self.config())
        lm = st.get("load_management") or {}
        self.say(f"mode      {st.get('mode')}   (appliance up {_duration(int(st.get('uptime_s', 0)))})")
        if lm.get("cycle_s") is not None:
            slow = "  SLOW (normal is about 3 s)" if lm["cycle_s"] > 10 else ""
            self.say(f"cycle     every {lm['cycle_s']:.1f} s, last took {lm.get('cycle_ms', 0):g} ms{slow}")
        else:
            self.say("cycle     no load-management cycle yet")
        load = lm.get("load_a") or st.get("totals", {}).get("currents_a") or [0, 0, 0]
        self.say(f"load      {_phases(load)}   limit {st.get('limit_a')} A per phase")
        if lm.get("budget_a"):
            self.say(f"available {_phases(lm['budget_a'])}")
        if any(lm.get("overdraft_a") or []):
            self.say(f"overdraft {_phases(lm['overdraft_a'])}   (should stay 0)")
        devices = st.get("devices", [])
        self.say(f"devices   {len(devices)}")
        for d in devices:
            self.say("  " + _device_line(d))
        for u in st.get("unconfigured", []):
            self.say(f"  unknown station {u.get('charge_box_id')} is connecting: add it on the web page")

    def do_devices(self, arg: str) -> None:
        cfg = self.config()
        devices = cfg.devices()
        if not devices:
            self.say("no devices configured (add them on the web page)")
            return
        try:
            states = {d["name"]: d for d in self.live_status(cfg).get("devices", [])}
        except live.LiveError as e:
            states = {}
            self.say(f"(no live state: {e})")
        for name, d in devices.items():
            where = f"{d['address']}/{d['connector']}" if d["type"] == "ocpp16" else f"{d['port']} unit {d['unit']}"
            state = states.get(name, {}).get("state", "")
            flags = "" if d["active"] else "  (inactive)"
            self.say(f"  {name:<12} {d['type']:<10} {where:<24} {d['min_current']:g}-{d['max_current']:g} A"
                     f"  prio {d['priority']}  {state}{flags}")

    # -- site settings and boxes ----------------------------------------------------------------------
    def do_grid(self, arg: str) -> None:
        cfg = self.config()
        if not arg.strip():
            lm = cfg.section("load_management")
            self.say(f"grid limit {lm['max_current_per_phase']:g} A per phase, reserve {lm['reserve']:g} A")
            return
        from appliance.i18n import NumberError, normalise_number

        try:
            value = normalise_number(arg)
        except NumberError as e:
            raise Failure(f"grid: {e}") from None
        try:
            cfg.update_section("load_management", {"max_current_per_phase": value})
        except (config_mod.ConfigError, OSError) as e:
            raise Failure(f"grid: {e}") from None
        self.say(f"grid limit set to {float(value):g} A per phase; {self.applied(cfg)}")

    def do_enable(self, arg: str) -> None:
        self._set_active(arg.strip(), True)

    def do_disable(self, arg: str) -> None:
        self._set_active(arg.strip(), False)

    def _set_active(self, name: str, active: bool) -> None:
        word = "enable" if active else "disable"
        cfg = self.config()
        if not name:
            raise Failure(f"usage: {COMMANDS[word][0]}")
        if name not in cfg.data["devices"]:
            names = ", ".join(cfg.data["devices"]) or "none configured"
            raise Failure(f"{word}: no device named {name!r} (devices: {names})")
        values = {k: v for k, v in cfg.data["devices"][name].items() if k not in cfg.data["devices"][name].defaults}
        if active:
            values.pop("active", None)
        else:
            values["active"] = "false"
        try:
            cfg.set_device(name, values)
        except (config_mod.ConfigError, OSError) as e:
            raise Failure(f"{word}: {e}") from None
        self.say(f"{name} {word}d; {self.applied(cfg)}")

    def do_box(self, arg: str) -> None:
        usage = COMMANDS["box"][0]
        words = self.words(arg, usage)
        if len(words) < 2:
            raise Failure(f"usage: {usage}")
        body: dict[str, Any] = {"action": words[1]}
        if len(words) > 2:
            body["minutes"] = words[2]
        cfg = self.config()
        answer = live.get_json(cfg.section("web"), f"/api/devices/{words[0]}/action", self.password, body)
        self.say(answer.get("message", "done"))

    def do_modbus(self, arg: str) -> None:
        usage = COMMANDS["modbus"][0]
        words = self.words(arg, usage)
        if len(words) < 3:
            raise Failure(f"usage: {usage}")
        body: dict[str, Any] = {"port": words[0], "unit": words[1], "address": words[2]}
        for w in words[3:]:
            key, _, value = w.partition("=")
            if w in ("16", "32"):
                body["bits"] = w
            elif w in ("signed", "input", "flash"):
                body[{"flash": "confirm_flash", "input": "kind"}.get(w, w)] = "input" if w == "input" else True
            elif key in ("scale", "write") and value:
                body["scale" if key == "scale" else "value"] = value
            else:
                raise Failure(f"modbus: unknown word {w!r} (usage: {usage})")
        if "value" in body and "confirm_flash" not in body and _is_flash(body["address"]):
            if not self.confirm(f"Register {body['address']} is in the box's flash memory, which wears out with "
                                "every write. Write it?"):
                self.say("modbus: not written")
                return
            body["confirm_flash"] = True
        cfg = self.config()
        answer = live.get_json(cfg.section("web"), "/api/modbus", self.password, body)
        done = "written; " if answer.get("done") == "write" else ""
        self.say(f"{done}register {body['address']} = {answer['value']:g} (raw {answer['hex']})")

    def do_restart(self, arg: str) -> None:
        if not self.confirm("Restart the appliance's service now? Charging goes on at the boxes' limits."):
            self.say("restart: cancelled")
            return
        cfg = self.config()
        try:
            if system.restart_service():
                self.say("the appliance was restarted")
                return
        except system.HostError:
            pass
        live.get_json(cfg.section("web"), "/api/restart", self.password, {})
        self.say("the appliance restarts; it answers again in a few seconds")

    # -- log --------------------------------------------------------------------------------------
    def do_log(self, arg: str) -> None:
        usage = COMMANDS["log"][0]
        words = self.words(arg, usage)
        if not words or words[0] != "tail":
            raise Failure(f"usage: {usage}")
        follow, n, rest = False, LOG_LINES, words[1:]
        while rest:
            w = rest.pop(0)
            if w == "-f":
                follow = True
            elif w == "-n" and rest and rest[0].isdigit() and int(rest[0]) > 0:
                n = int(rest.pop(0))
            elif w == "-n":
                raise Failure("log tail: -n needs a positive number, e.g. log tail -n 50")
            else:
                raise Failure(f"log tail: unknown option '{w}' (usage: {usage})")
        reader = live.EventReader(self.data_dir)
        rows = reader.last(n)
        for ev in rows:
            self.say(live.format_event(ev))
        if follow:
            self.follow(reader, rows[-1]["id"] if rows else 0)

    def follow(self, reader: live.EventReader, last_id: int) -> None:
        self.say("-- following the log; Enter or Ctrl-C stops --")
        while True:
            ready, _, _ = select.select([self.stdin], [], [], FOLLOW_POLL_S)
            if ready:
                self.stdin.readline()
                return
            for ev in reader.after(last_id):
                self.say(live.format_event(ev))
                last_id = ev["id"]

    # -- network and the box ---------------------------------------------------------------------
    def do_net(self, arg: str) -> None:
        usage = COMMANDS["net"][0]
        words = self.words(arg, usage)
        action = words[0] if words else "show"
        if action == "show":
            for line in system.net_show():
                self.say(line)
        elif action == "dhcp":
            self.say(system.net_dhcp())
        elif action == "static":
            self.say(system.net_static(words[1:]))
        else:
            raise Failure(f"net: unknown action '{action}' (usage: {usage})")

    def do_reboot(self, arg: str) -> None:
        if not system.on_appliance():
            raise Failure("reboot is only done on the appliance (OpenWrt); this machine is left running")
        if not self.confirm("Reboot the appliance now? Charging continues on the wallboxes' fail-safe settings."):
            self.say("reboot: cancelled")
            return
        system.reboot()
        self.say("rebooting ...")

    def do_selftest(self, arg: str) -> None:
        results = selftest.run(self.config_path, self.data_dir)
        for ok, text in results:
            self.say(f"{'ok  ' if ok else 'FAIL'} {text}")
        failed = sum(1 for ok, _ in results if not ok)
        self.say(f"selftest: {len(results) - failed} ok, {failed} failed")

    # -- certificates -----------------------------------------------------------------------------
    def do_cert(self, arg: str) -> None:
        import argparse

        from appliance.certs import cli as cert_cli

        action = arg.strip()
        ns = argparse.Namespace(data=self.data_dir, json=False)
        try:
            if action in ("", "show"):
                cert_cli.cmd_show(ns)
            elif action == "regenerate":
                if not self.confirm("Replace the server certificate in use with a new onboard one?"
                                    " Stations that pinned the old one must be given the new one."):
                    self.say("cert regenerate: cancelled, nothing changed")
                    return
                cert_cli.cmd_regenerate(ns)
            else:
                raise Failure(f"cert: unknown action '{action}' (usage: {COMMANDS['cert'][0]})")
        except cert_cli.CertError as e:
            raise Failure(f"cert: {e}") from None
        except OSError as e:
            raise Failure(f"cert: {e.filename or self.data_dir}: {e.strerror}") from None
        finally:
            self.stdout.flush()

    # -- password and configuration ----------------------------------------------------------------
    def do_password(self, arg: str) -> None:
        if arg.strip() != "reset":
            raise Failure(f"usage: {COMMANDS['password'][0]}")
        cfg = self.config()
        new = read_secret("new web admin password (empty: none, the page asks on its next visit): ",
                          self.stdin, self.stdout)
        if new is None:
            raise Failure("password reset: no input, nothing changed")
        if new and len(new) < MIN_PASSWORD:
            raise Failure(f"password reset: use at least {MIN_PASSWORD} characters; nothing changed")
        if new and read_secret("the same again: ", self.stdin, self.stdout) != new:
            raise Failure("password reset: the two entries differ; nothing changed")
        try:
            cfg.update_section("web", {"password_hash": make_hash(new) if new else ""})
        except (config_mod.ConfigError, OSError) as e:
            raise Failure(f"password reset: {e}") from None
        self.password = new or None
        self.say(f"web admin password {'set' if new else 'removed'} in {self.config_path}; {self.applied(cfg)}")

    def do_config(self, arg: str) -> None:
        words = arg.split()
        if not words or words[0] != "reset" or words[1:] not in ([], ["certs"]):
            raise Failure(f"usage: {COMMANDS['config'][0]}")
        certs = words[1:] == ["certs"]
        path = Path(self.config_path)
        backup = path.with_name(path.name + ".bak")
        lost = "devices, passwords and settings are reset" + (", certificates renewed" if certs else
                                                               "; certificates are kept")
        if not self.confirm(f"Reset {path} to factory defaults ({lost}; the old file is kept as {backup.name})?"):
            self.say("config reset: cancelled, nothing changed")
            return
        try:
            if path.exists():
                shutil.copy2(path, backup)
            atomic_write(path, factory_text().encode("utf-8"), 0o600)
            cfg = config_mod.load(path)
            if certs:
                self.renew_certificates()
        except (OSError, config_mod.ConfigError) as e:
            raise Failure(f"config reset: {e}") from None
        self.password = None
        self.say(f"configuration reset to factory defaults{' and certificates renewed' if certs else ''};"
                 f" {self.applied(cfg, restart=True)}")

    def renew_certificates(self) -> None:
        from appliance.certs import manage

        shutil.rmtree(manage.certs_dir(self.data_dir), ignore_errors=True)
        manage.regenerate(self.data_dir)


def _line_editing(stdin: TextIO, stdout: TextIO) -> bool:
    """readline for a console on a terminal: Left/Right, Home/End, Up/Down through the history."""
    try:
        if not (stdin.isatty() and stdin is __import__("sys").stdin and stdout is __import__("sys").stdout):
            return False
        import readline
    except (ImportError, AttributeError, ValueError):
        return False
    readline.parse_and_bind("set enable-bracketed-paste off")   # no escape codes around what is typed
    return True


def _own_address() -> str:
    """This box's address as its name resolves, else the name itself (a loopback address helps nobody)."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return name
    return name if address.startswith("127.") else address


def _is_flash(address: Any) -> bool:
    from appliance.modbus.tool import FLASH

    try:
        return int(str(address)) in FLASH
    except ValueError:
        return False


def factory_text() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"# Ampgate configuration, reset to factory defaults by the serial console on {stamp}.\n"
            "# Every key has its default (see ampgate.spec); this file only needs what differs.\n"
            "# The web page asks for a new admin password on its first visit.\n")


def _phases(values: list[Any]) -> str:
    return "  ".join(f"L{i + 1} {float(v or 0):5.1f} A" for i, v in enumerate(values[:3]))


def _duration(s: int) -> str:
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _device_line(d: dict[str, Any]) -> str:
    state = d.get("state") if d.get("online") else "offline"
    parts = [f"{d.get('name', '?'):<12}", f"{d.get('type', ''):<10}", f"{state:<14}"]
    if isinstance(d.get("limit_a"), (int, float)):
        parts.append(f"limit {d['limit_a']:.1f} A")
    currents = [c or 0.0 for c in d.get("currents_a") or []]
    if any(currents):
        parts.append("drawing " + "/".join(f"{c:.1f}" for c in currents) + " A")
    if d.get("transaction") is not None:
        parts.append(f"tx {d['transaction']}")
    if d.get("error"):
        parts.append(d["error"])
    if d.get("active") is False:
        parts.append("(inactive)")
    gw = d.get("gateway")
    if gw:
        parts.append(f"backend {gw.get('state')}, {gw.get('queued', 0)} queued"
                     + (f" ({gw['last_error']})" if gw.get("last_error") else ""))
    return "  ".join(parts).rstrip()
