"""`ampgate console` as a user meets it: a real process on a real pseudo-terminal (the serial port's
stand-in: it is the console's controlling terminal, so echo, no-echo and Ctrl-C behave as on a tty) or
on pipes, working on a real configuration file and data directory."""
import fcntl
import json
import os
import select
import subprocess
import termios
import time
from pathlib import Path

import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from appliance import config
from conftest import PYTHON, ROOT, free_port, subprocess_env

PASSWORD = "correct horse"
HASH = generate_password_hash(PASSWORD, "pbkdf2:sha256:200000")
TIMEOUT = 20.0
SITE = """[load_management]
max_current_per_phase = 40
[devices]
[[garage]]
type = ocpp16
address = CP1
max_current = 16
"""


def _take_tty() -> None:
    """In the child: a new session whose controlling terminal is the pty (as getty does)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The console on a pseudo-terminal; `expect` waits (with a deadline) for text to appear."""

    def __init__(self, conf: Path, data: Path, argv: list[str] | None = None, env: dict | None = None):
        """argv/env: another way to start the console (the OpenWrt wrapper script)."""
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            argv or [PYTHON, "-m", "appliance", "console", "--config", str(conf), "--data", str(data)],
            stdin=slave, stdout=slave, stderr=slave, env=env or subprocess_env(), cwd=ROOT,
            preexec_fn=_take_tty)
        os.close(slave)
        self.seen = ""      # everything so far, \r\n made \n
        self.pos = 0        # how far expect() has consumed

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:     # EIO: the console exited and closed the pty
            return False
        if not chunk:
            return False
        self.seen += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return True

    def expect(self, text: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen[self.pos:]:
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"{text!r} did not appear; the terminal shows:\n{self.seen}")
        end = self.seen.index(text, self.pos) + len(text)
        out, self.pos = self.seen[self.pos:end], end
        return out

    def send(self, text: str, end: str = "\n") -> None:
        os.write(self.master, (text + end).encode())

    def command(self, line: str) -> str:
        """Run one command; returns what it printed before the next prompt (without the echo)."""
        self.send(line)
        out = self.expect("ampgate> ")
        return out[: -len("ampgate> ")].split("\n", 1)[1] if "\n" in out else ""

    def wait(self, timeout: float = TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        os.close(self.master)


@pytest.fixture
def terminal():
    opened = []

    def open_(conf: Path, data: Path) -> Terminal:
        t = Terminal(conf, data)
        opened.append(t)
        return t
    yield open_
    for t in opened:
        t.close()


def console(conf: Path, data: Path, lines: list[str], env: dict | None = None,
            extra: tuple = ()) -> subprocess.CompletedProcess:
    """The console on pipes: feed lines, collect everything it printed."""
    return subprocess.run([PYTHON, "-m", "appliance", "console", "--config", str(conf), "--data", str(data), *extra],
                          input="".join(line + "\n" for line in lines), capture_output=True, text=True,
                          env={**subprocess_env(), **(env or {})}, cwd=ROOT, timeout=TIMEOUT)


def answers(out: str) -> list[str]:
    """The lines printed after each prompt (pipes do not echo input), one entry per command."""
    return [part.strip("\n") for part in out.split("ampgate> ")[1:]]


@pytest.fixture
def site(tmp_path, data_dir):
    conf = tmp_path / "ampgate.conf"
    conf.write_text(f"[web]\nbind = 127.0.0.1\nport = {free_port()}\npassword_hash = {HASH}\n" + SITE,
                    encoding="utf-8")
    return conf, data_dir


# -- login ------------------------------------------------------------------------------------------

def test_login_with_the_web_password_on_a_terminal_without_echo(site, terminal):
    t = terminal(*site)
    t.expect("password: ")
    t.send(PASSWORD)
    t.expect("'help' lists the commands")
    t.expect("ampgate> ")
    assert PASSWORD not in t.seen, "the password was echoed"
    assert "status" in t.command("help")
    t.send("exit")
    assert t.wait() == 0


def test_wrong_password_is_refused_then_the_right_one_lets_in(site, terminal):
    t = terminal(*site)
    t.expect("password: ")
    t.send("wrong password")
    t.expect("login incorrect\n")
    t.expect("password: ")
    t.send(PASSWORD)
    t.expect("ampgate> ")
    t.send("", end="\x04")   # Ctrl-D at the prompt leaves
    assert t.wait() == 0


def test_three_wrong_passwords_end_the_session(site):
    done = console(*site, ["nope", "still nope", "nope again", "status"])
    assert done.returncode == 1
    assert "login incorrect (3 tries)" in done.stdout
    assert "ampgate> " not in done.stdout


def test_no_login_flag_skips_the_prompt_for_an_authenticated_root_shell(site):
    done = console(*site, ["devices"], extra=("--no-login",))
    assert done.returncode == 0 and "password" not in done.stdout
    assert "garage" in answers(done.stdout)[0]


@pytest.mark.parametrize("stored, says", [
    ("", "no web admin password is set yet: console open"),
    ("hand-edited", "the stored web password hash is damaged: console open"),
])
def test_no_usable_password_lets_in_and_says_so(tmp_path, data_dir, stored, says):
    conf = tmp_path / "ampgate.conf"
    conf.write_text(f"[web]\npassword_hash = {stored}\n" + SITE, encoding="utf-8")
    done = console(conf, data_dir, ["devices"])
    assert done.returncode == 0
    assert done.stdout.startswith(says)
    assert "garage" in answers(done.stdout)[0]


def test_the_console_shows_the_claim_code_until_the_web_password_is_set(tmp_path, data_dir):
    from appliance.claim import ClaimCode

    conf = tmp_path / "ampgate.conf"
    conf.write_text("[web]\npassword_hash = ''\n" + SITE, encoding="utf-8")
    code = ClaimCode(data_dir).announce()        # what `ampgate run` does at start
    done = console(conf, data_dir, ["exit"])
    assert f"claim code {code}" in done.stdout
    conf.write_text(f"[web]\npassword_hash = {HASH}\n" + SITE, encoding="utf-8")
    done = console(conf, data_dir, [PASSWORD, "exit"])
    assert "claim code" not in done.stdout


# -- password reset ---------------------------------------------------------------------------------

def test_password_reset_changes_only_the_hash(site, terminal):
    conf, data = site
    before = config.load(conf)
    t = terminal(conf, data)
    t.expect("password: ")
    t.send(PASSWORD)
    t.expect("ampgate> ")
    t.send("password reset")
    t.expect("new web admin password")
    t.send("a new secret")
    t.expect("the same again: ")
    t.send("a new secret")
    out = t.expect("ampgate> ")
    assert "web admin password set" in out
    assert "a new secret" not in t.seen
    t.send("exit")
    assert t.wait() == 0

    after = config.load(conf)
    assert check_password_hash(after.section("web")["password_hash"], "a new secret")
    assert after.devices() == before.devices()
    assert after.section("load_management") == before.section("load_management")
    # the next login takes the new password, not the old one
    assert console(conf, data, [PASSWORD, "a new secret", "exit"]).stdout.count("login incorrect") == 1


def test_password_reset_refuses_short_or_mismatched_and_can_remove(site):
    conf, data = site
    original = conf.read_bytes()
    done = console(conf, data, [PASSWORD, "password reset", "short", "password reset", "long enough 1",
                                "long enough 2", "password reset", "", "password reset"])
    replies = answers(done.stdout)
    assert replies[0].endswith("password reset: use at least 8 characters; nothing changed")
    assert replies[1].endswith("password reset: the two entries differ; nothing changed")
    assert "web admin password removed" in replies[2]
    assert replies[3].endswith("password reset: no input, nothing changed")
    after = config.load(conf)
    assert after.section("web")["password_hash"] == ""
    assert list(after.devices()) == ["garage"] and b"max_current_per_phase = 40" in conf.read_bytes()
    assert conf.read_bytes() != original


# -- config reset -----------------------------------------------------------------------------------

def test_config_reset_needs_yes_and_keeps_certificates(site):
    conf, data = site
    from appliance.certs import manage

    manage.ensure_onboard(data)
    cert = manage.server_path(data).read_bytes()
    original = conf.read_bytes()

    done = console(conf, data, [PASSWORD, "config reset", "no", "devices", "config reset", "yes", "devices"])
    replies = answers(done.stdout)
    assert "config reset: cancelled, nothing changed" in replies[0]
    assert "garage" in replies[1]
    assert "configuration reset to factory defaults" in replies[2]
    assert "no devices configured" in replies[3]
    reset = config.load(conf)
    assert reset.devices() == {} and reset.section("web")["password_hash"] == ""
    assert reset.section("load_management")["max_current_per_phase"] == 32
    assert (conf.parent / "ampgate.conf.bak").read_bytes() == original
    assert manage.server_path(data).read_bytes() == cert


def test_a_broken_configuration_can_be_repaired_from_the_console(tmp_path, data_dir):
    conf = tmp_path / "ampgate.conf"
    conf.write_text(f"[web]\npassword_hash = {HASH}\n[load_management]\nmax_current_per_phase = lots\n",
                    encoding="utf-8")
    done = console(conf, data_dir, [PASSWORD, "devices", "config reset", "yes", "devices"])
    assert "warning:" in done.stdout and "max_current_per_phase" in done.stdout.split("\n")[0]
    replies = answers(done.stdout)
    assert replies[0].startswith("configuration:") and "config reset" in replies[0]
    assert "no devices configured" in replies[2]


# -- one clear line for mistakes and for what is not possible here ----------------------------------

@pytest.mark.skipif(Path("/etc/openwrt_release").exists(), reason="this is an OpenWrt box")
def test_mistakes_and_what_is_not_possible_here_get_one_clear_line(site):
    done = console(*site, [PASSWORD, "statsu", "log tail -n x", "log tail --bogus", "net frob", "cert frob",
                           "config reset now", "help nothing", "password", "net static 192.168.1.50",
                           "net static 192.168.1.50/24 10.0.0.1", "net static 300.1.1.1/24", "status",
                           "net show", "net dhcp", "reboot"])
    replies = answers(done.stdout)
    assert replies[0] == "unknown command 'statsu' - did you mean 'status'? ('help' lists the commands)"
    assert replies[1] == "log tail: -n needs a positive number, e.g. log tail -n 50"
    assert replies[2].startswith("log tail: unknown option '--bogus'")
    assert replies[3].startswith("net: unknown action 'frob'")
    assert replies[4].startswith("cert: unknown action 'frob'")
    assert replies[5] == "usage: config reset [certs]"
    assert replies[6] == "help: no command 'nothing'"
    assert replies[7] == "usage: password reset"
    assert replies[8] == "192.168.1.50: give the prefix too, e.g. 192.168.1.50/24"
    assert replies[9] == "gateway 10.0.0.1 is not in 192.168.1.0/24"
    assert "is not an IPv4 address with prefix" in replies[10]
    port = config.load(site[0]).section("web")["port"]
    assert replies[11] == f"the appliance is not running (nothing answers on http://127.0.0.1:{port}/)"
    # this machine is not the appliance: its network and its power stay as they are
    assert replies[12] == replies[13] == ("network configuration is only available on the appliance (OpenWrt with uci);"
                                          " this machine is left alone")
    assert replies[14] == "reboot is only done on the appliance (OpenWrt); this machine is left running"
    assert all("\n" not in r for r in replies), replies
    assert "Traceback" not in done.stdout + done.stderr


# OpenWrt's uci is not on this machine; this stand-in speaks its command-line grammar for the commands
# the console uses (get/set/delete/add_list/commit, -q) and keeps the state in a JSON file.
UCI = r"""#!%s
import json, sys
path = %r
args = [a for a in sys.argv[1:] if a != "-q"]
with open(path) as f:
    state = json.load(f)
cmd, rest = args[0], args[1:]
values = state["values"]
if cmd == "get":
    if rest[0] not in values:
        sys.exit("uci: Entry not found")
    v = values[rest[0]]
    print(" ".join(v) if isinstance(v, list) else v)
elif cmd == "set":
    key, value = rest[0].split("=", 1)
    values[key] = value
elif cmd == "delete":
    if values.pop(rest[0], None) is None:
        sys.exit("uci: Entry not found")
elif cmd == "add_list":
    key, value = rest[0].split("=", 1)
    values.setdefault(key, []).append(value)
elif cmd == "commit":
    state["commits"].append(rest[0])
else:
    sys.exit("uci: Invalid command")
with open(path, "w") as f:
    json.dump(state, f)
"""


@pytest.mark.skipif(Path("/etc/init.d/network").exists(), reason="would reload this machine's network")
def test_net_commands_speak_uci(site, tmp_path):
    state = tmp_path / "uci.json"
    state.write_text(json.dumps({"values": {"network.lan.proto": "dhcp"}, "commits": []}))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "uci").write_text(UCI % (PYTHON, str(state)))
    (bindir / "uci").chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    done = console(*site, [PASSWORD, "net static 192.168.7.20/24 192.168.7.1 9.9.9.9 1.1.1.1", "net show",
                           "net dhcp", "net show"], env)
    replies = answers(done.stdout)
    assert replies[0] == "lan: 192.168.7.20/24 via 192.168.7.1, DNS 9.9.9.9 1.1.1.1, saved (no network service here to reload)"
    assert replies[1].split("\n")[0] == ("lan: proto=static  ipaddr=192.168.7.20  netmask=255.255.255.0"
                                         "  gateway=192.168.7.1  dns=9.9.9.9 1.1.1.1")
    assert replies[2] == "lan: address by DHCP, saved (no network service here to reload)"
    assert replies[3].split("\n")[0] == "lan: proto=dhcp  ipaddr=-  netmask=-  gateway=-  dns=-"
    after = json.loads(state.read_text())
    assert after == {"values": {"network.lan.proto": "dhcp"}, "commits": ["network", "network"]}


def test_cert_regenerate_and_config_reset_certs_make_new_certificates(site):
    conf, data = site
    from appliance.certs import manage

    done = console(conf, data, [PASSWORD, "cert show", "cert regenerate", "no", "cert show",
                                "cert regenerate", "yes", "config reset certs", "yes"])
    replies = answers(done.stdout)
    first = replies[0].split("SHA-256:")[1].split()[0]
    assert "server certificate (onboard, self-signed)" in replies[0]
    assert "cancelled, nothing changed" in replies[1]
    assert first in replies[2]
    assert "new onboard certificate" in replies[3] and first not in replies[3]
    second = replies[3].split("SHA-256:")[1].split()[0]
    assert "configuration reset to factory defaults and certificates renewed" in replies[4]
    assert manage.server_info(data)["fingerprint_sha256"] not in (first, second)


# -- selftest without a running appliance -----------------------------------------------------------

def test_selftest_names_a_busy_port_and_unreachable_buses(tmp_path, data_dir):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    modbus = socket.socket()     # a reachable Modbus TCP endpoint (TCP reachability is what is checked)
    modbus.bind(("127.0.0.1", 0))
    modbus.listen()
    master, slave = os.openpty()  # a serial device that exists
    try:
        conf = tmp_path / "ampgate.conf"
        conf.write_text(f"""[web]
bind = 127.0.0.1
port = {free_port()}
[ocpp_server]
bind = 127.0.0.1
port = {busy.getsockname()[1]}
[devices]
[[up]]
type = powerbrain
port = tcp://127.0.0.1:{modbus.getsockname()[1]}
[[down]]
type = powerbrain
port = tcp://127.0.0.1:{free_port()}
[[rs485]]
type = powerbrain
port = "{os.ttyname(slave)},9600,8,n,1"
[[missing]]
type = sdm630
port = /dev/ttyAMPGATE-NONE
""", encoding="utf-8")
        out = answers(console(conf, data_dir, ["selftest"]).stdout)[0].split("\n")
    finally:
        for s in (busy, modbus):
            s.close()
        os.close(master)
        os.close(slave)
    by_topic = {line.split(":")[0][5:]: line for line in out}
    assert by_topic["configuration"].startswith("ok")
    assert any(line.startswith("ok   web port") and line.endswith("free") for line in out)
    assert any(line.startswith("FAIL OCPP port") and "in use by another program" in line for line in out)
    assert any(line.startswith("ok   bus tcp://") and "(up)" in line for line in out)
    assert any(line.startswith("FAIL bus tcp://") and "(down)" in line and "cannot connect" in line for line in out)
    assert any(line.startswith("ok   bus /dev/") and "(rs485)" in line for line in out)
    assert any(line.startswith("FAIL bus /dev/ttyAMPGATE-NONE (missing): cannot open") for line in out)
    assert any(line.startswith("ok   data directory") for line in out)
    assert out[-1] == "selftest: 7 ok, 3 failed"
