"""The OpenWrt package (openwrt/), checked without an OpenWrt build system: shell syntax of the
scripts, the package Makefile's required parts, paths and flags that match what the appliance
expects, and dependencies that cover every pinned runtime package."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import appliance
from appliance import cli, config
from conftest import ROOT

PKG = ROOT / "openwrt"
FILES = PKG / "files"
MAKEFILE = (PKG / "Makefile").read_text(encoding="utf-8")
SCRIPTS = ["ampgate.init", "ampgate-console", "ampgate.uci-defaults"]
CONF_PATH, DATA_PATH = "/etc/ampgate/ampgate.conf", "/etc/ampgate/data"

# setup.py RUNTIME name -> the packages feed's package that provides it (a DEPENDS entry), or why none
FROM_FEED = {
    "flask": "python3-flask", "werkzeug": "python3-werkzeug", "gevent": "python3-gevent",
    "greenlet": "python3-greenlet", "websocket-client": "python3-websocket-client",
    "pyserial": "python3-pyserial", "cryptography": "python3-cryptography", "cffi": "python3-cffi",
}
NOT_SHIPPED = {"jsonschema": "only the ocpp package's own validator uses it; the appliance uses fastjsonschema"}


def define(name: str) -> str:
    m = re.search(rf"^define {re.escape(name)}\n(.*?)^endef", MAKEFILE, re.S | re.M)
    assert m, f"Makefile lacks 'define {name}'"
    return m.group(1)


def variable(name: str) -> str:
    m = re.search(rf"^{name}\s*[:?]?=\s*(.*)$", MAKEFILE, re.M)
    assert m, f"Makefile lacks {name}"
    return m.group(1).strip()


def uci_options() -> dict[str, str]:
    text = (FILES / "ampgate.config").read_text(encoding="utf-8")
    return dict(re.findall(r"^\s*option\s+(\w+)\s+'([^']*)'", text, re.M))


# -- shell scripts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_parse_with_sh_and_are_executable(name):
    path = FILES / name
    shells = [s for s in ("sh", "dash", "busybox") if shutil.which(s)]
    for sh in shells:
        argv = [sh, "sh", "-n", str(path)] if sh == "busybox" else [sh, "-n", str(path)]
        done = subprocess.run(argv, capture_output=True, text=True)
        assert done.returncode == 0, f"{sh}: {done.stderr}"
    assert path.stat().st_mode & 0o111, f"{name} is not executable"


def test_init_script_is_a_procd_service_started_late():
    text = (FILES / "ampgate.init").read_text(encoding="utf-8")
    assert text.startswith("#!/bin/sh /etc/rc.common\n")
    assert re.search(r"^START=95$", text, re.M) and re.search(r"^USE_PROCD=1$", text, re.M)
    for needed in ("procd_set_param respawn", "procd_set_param stdout 1", "procd_set_param stderr 1",
                   "start_service()", "reload_service()"):
        assert needed in text
    reload = text[text.index("reload_service()"):]
    assert "stop" in reload.split("}")[0] and "start" in reload.split("}")[0], "reload must restart"


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


@pytest.mark.parametrize("uci", [uci_options(), {}], ids=["uci config", "defaults"])
def test_init_command_is_ampgate_run_with_flags_the_cli_accepts(uci):
    argv = _init_command(uci)
    assert argv[0] == "/usr/bin/ampgate" and argv[1] == "run"
    args = cli.build_parser(argv[1:]).parse_args(argv[1:])
    assert (args.config, args.data, args.log_level) == (CONF_PATH, DATA_PATH, "info")


def test_disabled_in_uci_starts_nothing():
    assert _init_command({**uci_options(), "enabled": "0"}) == []


def test_console_hook_uses_the_same_paths_and_valid_flags():
    text = (FILES / "ampgate-console").read_text(encoding="utf-8")
    assert f"echo {CONF_PATH}" in text and f"echo {DATA_PATH}" in text
    assert "uci -q get ampgate.main.config" in text and "uci -q get ampgate.main.data" in text
    argv = ["console", "--config", CONF_PATH, "--data", DATA_PATH]
    assert "exec /usr/bin/ampgate console --config \"$conf\" --data \"$data\"" in text
    assert cli.build_parser(argv).parse_args(argv).func.__module__ == "appliance.console"
    hook = (FILES / "ampgate.uci-defaults").read_text(encoding="utf-8")
    assert "::askconsole:$HOOK" in hook and "HOOK=/usr/sbin/ampgate-console" in hook


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


# -- the package Makefile ----------------------------------------------------------------------------

def test_makefile_has_the_parts_an_openwrt_package_needs():
    lines = MAKEFILE.splitlines()
    includes = [ln for ln in lines if ln.startswith("include ")]
    assert includes[0] == "include $(TOPDIR)/rules.mk"
    assert "include $(INCLUDE_DIR)/package.mk" in includes
    assert any(ln.endswith("/lang/python/python3-package.mk") for ln in includes)
    assert includes.index("include $(INCLUDE_DIR)/package.mk") > 0
    assert variable("PKG_NAME") == "ampgate"
    assert variable("PKG_VERSION") == appliance.__version__
    assert variable("PKG_RELEASE").isdigit()
    pkg = define("Package/ampgate")
    for key in ("SECTION", "CATEGORY", "TITLE", "DEPENDS"):
        assert re.search(rf"^\s*{key}:=", pkg, re.M), key
    assert define("Package/ampgate/description").strip()
    assert lines[-2:] == ["$(eval $(call Py3Package,ampgate))", "$(eval $(call BuildPackage,ampgate))"]


def test_recipes_are_tab_indented():
    for name in ("Build/Prepare", "Py3Package/ampgate/install"):
        body = [ln for ln in define(name).splitlines() if ln.strip()]
        assert body and all(ln.startswith("\t") for ln in body), f"{name}: recipe lines must start with a tab"


def test_installed_paths_match_what_the_appliance_expects():
    etc, data = variable("AMPGATE_ETC"), variable("AMPGATE_DATA")
    assert f"{etc}/ampgate.conf" == CONF_PATH and data == DATA_PATH
    assert uci_options()["config"] == CONF_PATH and uci_options()["data"] == DATA_PATH
    conffiles = define("Package/ampgate/conffiles").split()
    assert conffiles == ["$(AMPGATE_ETC)/ampgate.conf", "/etc/config/ampgate"]
    install = define("Py3Package/ampgate/install")
    assert "$(1)$(AMPGATE_ETC)/ampgate.spec" in install
    # the configspec lands where appliance.config looks for it on an installed system
    assert f'Path("{etc}") / SPEC_NAME' in Path(config.__file__).read_text()
    # everything the Makefile copies exists
    for rel in re.findall(r"\$\(CURDIR\)/([\w./-]+)", MAKEFILE):
        assert (PKG / rel).exists(), rel
    for rel in re.findall(r"\$\(AMPGATE_SRC\)/([\w./-]+)", MAKEFILE):
        assert rel == "web" or (ROOT / rel).exists(), rel
    keep = (FILES / "ampgate.keep").read_text().split()
    assert "/etc/ampgate/" in keep and DATA_PATH.startswith(keep[0].rstrip("/"))


def test_every_pinned_runtime_package_is_packaged():
    setup = (ROOT / "setup.py").read_text()
    runtime = dict(re.findall(r'"([\w.-]+)==([\w.]+)"', setup.split("TEST = [")[0]))
    vendored = dict(re.findall(r"^([\w.-]+)==([\w.]+) --hash=sha256:[0-9a-f]{64}$",
                               (PKG / "vendor-requirements.txt").read_text(), re.M))
    depends = define("Package/ampgate").split("DEPENDS:=")[1]
    for name, version in runtime.items():
        key = name.lower()
        if key in vendored:
            assert vendored[key] == version, f"{name}: vendored {vendored[key]}, pinned {version}"
        elif key in FROM_FEED:
            assert f"+{FROM_FEED[key]}" in depends, f"{name}: +{FROM_FEED[key]} missing from DEPENDS"
        else:
            assert key in NOT_SHIPPED, f"{name} is pinned but neither vendored nor a feed dependency"
    assert set(vendored) <= {n.lower() for n in runtime}
