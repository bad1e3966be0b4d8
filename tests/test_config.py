"""Configuration: validation errors name file, line and key; saving is atomic and keeps comments."""
import re
import subprocess

import pytest

from appliance import config
from conftest import PYTHON, ROOT, subprocess_env


def test_defaults_without_file(tmp_path):
    cfg = config.load(tmp_path / "missing.conf")
    assert cfg.section("ocpp_server")["port"] == 19520
    assert cfg.section("load_management")["max_imbalance"] == 20
    assert cfg.devices() == {}


def test_shipped_config_is_valid():
    cfg = config.load(ROOT / "etc" / "ampgate.conf")
    assert cfg.section("ocpp_server")["tls"] == "off"


def test_bad_value_names_file_line_and_key(conf_file):
    p = conf_file("[ocpp_server]\nport = 19520\ntls = sometimes\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    assert str(e.value).startswith(f"{p}:3: [ocpp_server] tls:")


def test_device_cross_checks(conf_file):
    p = conf_file("[devices]\n[[garage]]\ntype = ocpp16\naddress = CP1\nmin_current = 10\nmax_current = 8\n")
    with pytest.raises(config.ConfigError, match=r":5: \[devices\]\[garage\] min_current: 10.0 is above"):
        config.load(p)
    p = conf_file("[devices]\n[[garage]]\ntype = ocpp16\n")
    with pytest.raises(config.ConfigError, match="chargeBoxId is required"):
        config.load(p)


def test_unknown_key_and_parse_error(conf_file):
    with pytest.raises(config.ConfigError, match=r":2: \[web\] colour: unknown setting"):
        config.load(conf_file("[web]\ncolour = red\n"))
    with pytest.raises(config.ConfigError, match=r":3: "):
        config.load(conf_file("[web]\nport = 1\nport = 2\n"))


def test_set_device_validates_before_writing(conf_file):
    p = conf_file("# my comment\n[load_management]\nmax_current_per_phase = 25  # fuse\n[devices]\n")
    cfg = config.load(p)
    cfg.set_device("garage", {"type": "ocpp16", "address": "CP1", "max_current": "16", "label": "Müller"})
    text = p.read_text(encoding="utf-8")
    assert "# my comment" in text and "Müller" in text and "[[garage]]" in text
    before = p.read_text(encoding="utf-8")
    with pytest.raises(config.ConfigError) as e:
        cfg.set_device("garage", {"type": "ocpp16", "address": "CP1", "max_current": "abc"})
    assert e.value.key == "max_current"
    assert p.read_text(encoding="utf-8") == before
    assert config.load(p).devices()["garage"]["max_current"] == 16


def test_run_exits_2_with_one_line_on_bad_config(conf_file, data_dir):
    p = conf_file("[load_management]\nmode = turbo\n")
    r = subprocess.run([PYTHON, "-m", "appliance", "run", "--config", str(p), "--data", str(data_dir)],
                       capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{p}:2: [load_management] mode:" in lines[0]


def test_a_writer_never_overwrites_a_newer_file(conf_file):
    """The console (another process) changed the file: the page's next save starts from it."""
    import os
    import time

    p = conf_file("[load_management]\nmax_current_per_phase = 25\n")
    page = config.load(p)
    console = config.load(p)
    console.update_section("web", {"password_hash": "pbkdf2:sha256:1$salt$abc"})
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 1_000_000))   # make the change visible on coarse clocks
    page.update_section("load_management", {"reserve": 2})
    final = config.load(p)
    assert final.section("web")["password_hash"] == "pbkdf2:sha256:1$salt$abc"
    assert final.section("load_management")["reserve"] == 2
    assert page.refresh() is False


@pytest.mark.parametrize("text", [None, "", "# only a comment\n\n"])
def test_run_refuses_a_missing_or_empty_file_with_one_line(tmp_path, data_dir, text):
    p = tmp_path / "ampgate.conf"
    if text is not None:
        p.write_text(text, encoding="utf-8")
    r = subprocess.run([PYTHON, "-m", "appliance", "run", "--config", str(p), "--data", str(data_dir)],
                       capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"ampgate: {p}: ") and "etc/ampgate.conf" in lines[0], lines


FULL = """[web]
password_hash = pbkdf2:sha256:1$salt$abc
[ocpp_server]
password = secret1234
[load_management]
max_current_per_phase = 25
[devices]
[[garage]]
type = ocpp16
address = CP1
"""


def _rewrite(p, text: str) -> None:
    import os
    import time

    p.write_text(text, encoding="utf-8")
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 1_000_000))   # visible on coarse clocks too


@pytest.mark.parametrize("shrunk, why", [
    ("", "empty"),
    ("\n# nothing left\n", "empty"),
    (FULL.split("[ocpp_server]")[0] + "[ocpp_server]\npassword = secret1234\n",
     "lost its [load_management], [devices] sections"),
    (FULL.replace("password_hash = pbkdf2:sha256:1$salt$abc\n", ""), "[web] password_hash was removed"),
    (FULL.replace("password = secret1234\n", ""), "[ocpp_server] password was removed"),
])
def test_a_reload_refuses_a_file_that_shrank_and_keeps_the_running_configuration(conf_file, shrunk, why):
    p = conf_file(FULL)
    cfg = config.load(p)
    _rewrite(p, shrunk)
    with pytest.raises(config.ConfigError, match=re.escape(why)):
        cfg.refresh()
    assert cfg.section("web")["password_hash"] and cfg.section("ocpp_server")["password"] == "secret1234"
    assert cfg.section("load_management")["max_current_per_phase"] == 25 and "garage" in cfg.devices()
    assert cfg.refresh() is False                            # reported once
    cfg.update_section("load_management", {"reserve": 1})  # the next save writes the whole running state back
    again = config.load(p)
    assert again.devices()["garage"]["address"] == "CP1" and again.section("ocpp_server")["password"] == "secret1234"


def test_a_reload_applies_a_complete_edit(conf_file):
    p = conf_file(FULL)
    cfg = config.load(p)
    _rewrite(p, FULL.replace("max_current_per_phase = 25", "max_current_per_phase = 20").replace(
        "[[garage]]\ntype = ocpp16\naddress = CP1\n", "[[carport]]\ntype = ocpp16\naddress = CP2\n"))
    assert cfg.refresh() is True
    assert cfg.section("load_management")["max_current_per_phase"] == 20 and list(cfg.devices()) == ["carport"]


@pytest.mark.parametrize("port, says", [
    ("COM3", "'COM3' is not a serial device of this appliance; expected tcp://HOST:PORT, or a serial device as "
             "/dev/ttyUSB0 or /dev/ttyUSB0,9600,8,n,1"),
    ("127.0.0.1:1234", "'127.0.0.1:1234' looks like a network address: write tcp://127.0.0.1:1234"),
    ("/dev/ttyUSB0,19200,8,x,1", "bad serial parameters in '/dev/ttyUSB0,19200,8,x,1': baud, 7|8, n|e|o, 1|2; "
                                 "expected tcp://HOST:PORT"),
    ("tcp://10.0.0.5", "expected tcp://HOST:PORT"),
])
def test_modbus_port_strings_are_checked_with_the_expected_form(conf_file, port, says):
    with pytest.raises(config.ConfigError, match=re.escape(says)):
        config.load(conf_file(f'[devices]\n  [[pb]]\n  type = powerbrain\n  port = "{port}"\n'))


@pytest.mark.parametrize("port", ["tcp://10.0.0.5:502", "/dev/ttyUSB0", "/dev/ttyUSB0,19200,8,e,1"])
def test_good_modbus_ports_pass(conf_file, port):
    assert config.load(conf_file(f'[devices]\n  [[pb]]\n  type = powerbrain\n  port = "{port}"\n'))


def test_serial_port_without_quotes_is_read_whole(conf_file):
    cfg = config.load(conf_file("[devices]\n  [[pb]]\n  type = powerbrain\n  port = /dev/ttyUSB0,9600,8,n,1\n"))
    assert cfg.devices()["pb"]["port"] == "/dev/ttyUSB0,9600,8,n,1"


def test_removed_settings_in_an_old_file_are_dropped_not_refused(conf_file):
    """comm_error_reduce and signed_data had no code behind them; files that still carry them load."""
    cfg = config.load(conf_file("[load_management]\ncomm_error_reduce = True\n[devices]\n[[box]]\n"
                                "type = ocpp16\naddress = CP1\nsigned_data = store\n"))
    assert "comm_error_reduce" not in cfg.section("load_management")
    assert "signed_data" not in cfg.devices()["box"]
    cfg.update_section("load_management", {"reserve": 1.0})       # and a save writes them no more
    assert "comm_error_reduce" not in cfg.path.read_text() and "signed_data" not in cfg.path.read_text()


def test_unwritable_data_directory_is_one_line_and_exit_2(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("[web]\nport = 1\n", encoding="utf-8")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = subprocess.run([PYTHON, "-m", "appliance", "run", "--config", str(conf), "--data", str(blocker / "var"),
                           "--no-web"], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"ampgate: data directory {blocker / 'var'}: cannot create or write it (Not a directory); give a writable "
        "one with --data DIR"]
