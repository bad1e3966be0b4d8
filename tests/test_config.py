"""Configuration: validation errors name file, line and key; saving is atomic and keeps comments."""
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
