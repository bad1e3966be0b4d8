"""The OpenWrt package as `make ipk` builds it (openwrt/build_ipk.py), unpacked with ar and tar as opkg
does: control fields and feed dependencies, conffiles, sysupgrade keep list, file layout and modes; the
shell scripts (shellcheck, and the init script's command line with procd's and uci's functions stubbed);
the serial console's fallback to a login shell. tests/test_openwrt_feeds.py runs the unpacked package."""
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import appliance
from appliance import cli
from conftest import ROOT

PKG = ROOT / "openwrt"
FILES = PKG / "files"
SHELL_FILES = [FILES / n for n in ("ampgate.init", "ampgate-console", "ampgate.uci-defaults", "postinst", "prerm")] \
    + [ROOT / ".ci" / "run"]
CONF_PATH, DATA_PATH = "/etc/ampgate/ampgate.conf", "/etc/ampgate/data"
LIB = "usr/lib/ampgate"

# setup.py's runtime requirements -> where they come from on OpenWrt (docs/openwrt.md)
FROM_FEED = {"flask": "python3-flask", "werkzeug": "python3-werkzeug", "gevent": "python3-gevent",
             "greenlet": "python3-greenlet", "websocket-client": "python3-websocket-client",
             "pyserial": "python3-pyserial", "cryptography": "python3-cryptography"}
SCHEMAS_ONLY = {"ocpp"}


def unpack(ipk: Path, dest: Path) -> Path:
    """What opkg does with an .ipk: ar members, then the control and data tarballs."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ar", "x", str(ipk)], cwd=dest, check=True)
    for part in ("control", "data"):
        (dest / part).mkdir()
        with tarfile.open(dest / f"{part}.tar.gz") as tar:
            tar.extractall(dest / part, filter="tar")
    return dest


def build_ipk(out: Path) -> Path:
    done = subprocess.run([sys.executable, str(PKG / "build_ipk.py"), "--out", str(out),
                           "--wheels", str(ROOT / "build" / "wheels")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return next(out.glob("*.ipk"))


@pytest.fixture(scope="module")
def ipk(tmp_path_factory) -> Path:
    return build_ipk(tmp_path_factory.mktemp("ipk"))


@pytest.fixture(scope="module")
def unpacked(ipk, tmp_path_factory) -> Path:
    return unpack(ipk, tmp_path_factory.mktemp("unpacked"))


def control_fields(unpacked: Path) -> dict[str, str]:
    text = (unpacked / "control" / "control").read_text()
    return dict(re.findall(r"^([\w-]+): (.*)$", text, re.M))


# -- the package as opkg reads it -----------------------------------------------------------------

def test_ipk_is_an_ar_archive_in_opkg_order(ipk, unpacked):
    listing = subprocess.run(["ar", "t", str(ipk)], capture_output=True, text=True, check=True).stdout.split()
    assert listing == ["debian-binary", "control.tar.gz", "data.tar.gz"]
    assert (unpacked / "debian-binary").read_text() == "2.0\n"
    assert ipk.name == f"ampgate_{appliance.__version__}-r1_all.ipk"


def test_control_names_the_package_and_its_feed_dependencies(unpacked):
    fields = control_fields(unpacked)
    assert fields["Package"] == "ampgate" and fields["Architecture"] == "all"
    assert fields["Version"] == f"{appliance.__version__}-r1"
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert "python3 (>= 3.11)" in depends
    # gevent imports zope.event and zope.interface; the feed's python3-gevent does not pull zope-event
    for dep in ("python3-gevent", "python3-greenlet", "python3-zope-event", "python3-zope-interface",
                "python3-flask", "python3-cryptography", "python3-websocket-client", "python3-pyserial"):
        assert dep in depends, dep
    installed = sum(p.stat().st_size for p in (unpacked / "data").rglob("*") if p.is_file())
    assert int(fields["Installed-Size"]) == installed


def test_every_runtime_requirement_is_a_feed_dependency_or_bundled(unpacked):
    setup = (ROOT / "setup.py").read_text()
    runtime = re.findall(r'^\s+"([\w.-]+)[<>=]', setup.split("RUNTIME = [")[1].split("]")[0], re.M)
    depends = control_fields(unpacked)["Depends"]
    bundled = {p.name.split("-")[0].replace("_", "-").lower()
               for p in (unpacked / "data" / LIB).glob("*.dist-info")}
    for name in runtime:
        key = name.lower()
        if key in FROM_FEED:
            assert FROM_FEED[key] in depends, f"{name}: {FROM_FEED[key]} missing from Depends"
        elif key not in SCHEMAS_ONLY:
            assert key in bundled, f"{name} is neither a feed dependency nor bundled"
    assert "blinker" in bundled, "Flask needs blinker, which the 24.10 and 25.12 feeds lack"
    # exactly the versions pinned in constraints.txt
    pins = dict(re.findall(r"^([\w.-]+)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))
    pins = {k.lower(): v for k, v in pins.items()}
    for info in (unpacked / "data" / LIB).glob("*.dist-info"):
        name, version = info.name[:-len(".dist-info")].rsplit("-", 1)
        assert pins[name.replace("_", "-").lower()] == version, info.name


def test_conffiles_keep_list_and_scripts(unpacked):
    ctrl = unpacked / "control"
    assert (ctrl / "conffiles").read_text().split() == [CONF_PATH, "/etc/config/ampgate"]
    for script in ("postinst", "prerm"):
        assert (ctrl / script).stat().st_mode & 0o111, script
    keep = (unpacked / "data" / "lib/upgrade/keep.d/ampgate").read_text().split()
    # configuration, certificates and database survive a sysupgrade; the schema (code) does not stay old
    assert keep == [CONF_PATH, DATA_PATH + "/", "/etc/config/ampgate"]
    postinst = (ctrl / "postinst").read_text()
    assert "/etc/init.d/ampgate enable" in postinst and "compileall" in postinst


def test_file_layout_and_modes(unpacked):
    data = unpacked / "data"
    mode = {p.relative_to(data).as_posix(): p.stat().st_mode & 0o777 for p in data.rglob("*") if p.is_file()}
    assert mode["usr/bin/ampgate"] == 0o755 and mode["usr/sbin/ampgate-console"] == 0o755
    assert mode["etc/init.d/ampgate"] == 0o755 and mode["etc/uci-defaults/90-ampgate-console"] == 0o755
    assert mode["etc/ampgate/ampgate.conf"] == 0o600, "the configuration holds password hashes"
    assert f"{LIB}/etc/ampgate.spec" in mode, "appliance.config looks for the schema beside the package"
    assert f"{LIB}/appliance/cli.py" in mode and f"{LIB}/web/templates/base.html" in mode
    assert not [n for n in mode if n.endswith(".pyc")], "byte-code is compiled on the box (postinst)"
    assert f"{LIB}/appliance/locale/de/LC_MESSAGES/ampgate.mo" in mode, "the German page needs its catalogue"
    assert not [n for n in mode if n.endswith(".po")]
    # only the OCPP 1.6 schemas of the ocpp package, as a namespace package (no code of it)
    ocpp = [n for n in mode if n.startswith(f"{LIB}/ocpp/")]
    assert f"{LIB}/ocpp/v16/schemas/BootNotification.json" in ocpp
    assert all(n.startswith(f"{LIB}/ocpp/v16/schemas/") and n.endswith(".json") for n in ocpp)
    # nothing outside the places a package may write to
    assert {n.split("/")[0] for n in mode} == {"etc", "lib", "usr"}


def test_the_build_is_reproducible(ipk, tmp_path):
    assert build_ipk(tmp_path).read_bytes() == ipk.read_bytes()


# -- shell scripts --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: p.name)
def test_shellcheck_passes(path):
    assert shutil.which("shellcheck"), "shellcheck is missing: make system-deps installs it"
    done = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert path.stat().st_mode & 0o111, f"{path.name} is not executable"


def test_init_script_is_a_procd_service_that_reloads_on_configuration_change():
    text = (FILES / "ampgate.init").read_text(encoding="utf-8")
    assert text.startswith("#!/bin/sh /etc/rc.common\n")
    assert re.search(r"^START=95$", text, re.M) and re.search(r"^USE_PROCD=1$", text, re.M)
    for needed in ("procd_set_param respawn", 'procd_set_param file "$conf"', "procd_add_reload_trigger ampgate",
                   "procd_set_param stderr 1", "start_service()"):
        assert needed in text
    assert "reload_service()" not in text, "procd's own reload restarts only on a change"


def _init_command(uci: dict[str, str]) -> list[str]:
    """start_service of the real init script with procd's and uci's shell functions standing in:
    the command line procd would be given, one argument per line."""
    stubs = """
config_load() { :; }
uci_value() { case "$1" in %s esac; }
config_get() { v=$(uci_value "$3"); eval "$1=\\"\\${v:-$4}\\""; }
config_get_bool() { v=$(uci_value "$3"); eval "$1=\\"\\${v:-$4}\\""; }
procd_open_instance() { :; }
procd_close_instance() { :; }
procd_set_param() { [ "$1" = command ] && { shift; printf '%%s\\n' "$@"; }; return 0; }
mkdir() { :; }
chmod() { :; }
. "$1"
start_service
""" % "".join(f"{k}) echo '{v}';; " for k, v in uci.items())
    done = subprocess.run(["sh", "-c", stubs, "sh", str(FILES / "ampgate.init")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def uci_options() -> dict[str, str]:
    text = (FILES / "ampgate.config").read_text(encoding="utf-8")
    return dict(re.findall(r"^\s*option\s+(\w+)\s+'([^']*)'", text, re.M))


@pytest.mark.parametrize("uci, syslog", [(uci_options(), True), ({}, True), ({"syslog": "0"}, False)],
                         ids=["uci config", "defaults", "no syslog"])
def test_init_command_is_ampgate_run_with_flags_the_cli_accepts(uci, syslog):
    argv = _init_command(uci)
    assert argv[0] == "/usr/bin/ampgate" and argv[1] == "run"
    args = cli.build_parser(argv[1:]).parse_args(argv[1:])
    assert (args.config, args.data, args.log_level, args.syslog) == (CONF_PATH, DATA_PATH, "info", syslog)


def test_disabled_in_uci_starts_nothing():
    assert _init_command({**uci_options(), "enabled": "0"}) == []


def test_uci_defaults_replace_the_serial_login_once_and_keep_the_original(tmp_path):
    inittab = tmp_path / "inittab"
    original = "::sysinit:/etc/init.d/rcS S boot\n::shutdown:/etc/init.d/rcS K shutdown\n" \
               "::askconsole:/usr/libexec/login.sh\n"
    inittab.write_text(original)
    script = (FILES / "ampgate.uci-defaults").read_text().replace("INITTAB=/etc/inittab", f"INITTAB={inittab}")
    for _ in range(2):   # a second run changes nothing
        assert subprocess.run(["sh", "-c", script], capture_output=True).returncode == 0
    assert inittab.read_text() == original.replace("/usr/libexec/login.sh", "/usr/sbin/ampgate-console")
    assert (tmp_path / "inittab.ampgate-orig").read_text() == original


# -- the serial console when Python cannot start ---------------------------------------------------

def fake_uci(tmp_path: Path, conf: Path, data: Path) -> Path:
    """A `uci` on PATH answering the two options the console wrapper asks for."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "uci").write_text(f"#!/bin/sh\ncase \"$3\" in\n  ampgate.main.config) echo {conf};;\n"
                                f"  ampgate.main.data) echo {data};;\n  *) exit 1;;\nesac\n")
    (bindir / "uci").chmod(0o755)
    return bindir


def test_console_falls_back_to_a_login_shell_with_one_line_why(unpacked, tmp_path):
    """The launcher run by a Python without gevent (Debian's /usr/bin/python3): the stack cannot start."""
    python = shutil.which("python3", path="/usr/bin")
    if python is None or subprocess.run([python, "-c", "import gevent"], capture_output=True).returncode == 0:
        pytest.skip("needs a /usr/bin/python3 without gevent")
    login = tmp_path / "login.sh"
    login.write_text("#!/bin/sh\necho 'OpenWrt login shell'\n")
    login.chmod(0o755)
    bindir = fake_uci(tmp_path, tmp_path / "ampgate.conf", tmp_path / "var")
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "AMPGATE": str(unpacked / "data/usr/bin/ampgate"), "LOGIN": str(login)}
    done = subprocess.run(["sh", str(unpacked / "data/usr/sbin/ampgate-console")], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1] == "OpenWrt login shell"
    why = done.stderr.strip().splitlines()
    assert why == ["ampgate: the Python stack cannot start: ModuleNotFoundError: No module named 'gevent'"]
    assert "starting the OpenWrt login shell" in done.stdout


def test_console_exit_status_passes_through_when_python_runs(unpacked, tmp_path):
    """A refused login (status 1) must not open a shell: only a broken stack does."""
    fake = tmp_path / "ampgate"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    bindir = fake_uci(tmp_path, tmp_path / "ampgate.conf", tmp_path / "var")
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "AMPGATE": str(fake), "LOGIN": "/bin/false"}
    done = subprocess.run(["sh", str(unpacked / "data/usr/sbin/ampgate-console")], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1 and "login shell" not in done.stdout


def test_syslog_option_sends_each_line_with_its_severity(tmp_path):
    """`--syslog` (the init script's default): datagrams to the syslog socket, facility daemon, tag ampgate."""
    import socket
    path = tmp_path / "log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(20)
        code = (f"import logging; from appliance import cli; cli.SYSLOG_SOCKET = {str(path)!r}; "
                "cli.setup_logging('info', syslog=True); logging.getLogger('ocpp').warning('CP1: offline'); "
                "logging.getLogger('lm').debug('not at info')")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        line = sock.recv(4096).decode()
        assert re.fullmatch(r"<28>ampgate\[\d+\]: WARNING ocpp: CP1: offline\x00", line), line  # 28 = daemon.warning
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
