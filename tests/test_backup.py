"""Backup and restore: configuration, certificates and keys in one file, optionally encrypted; a damaged,
cut, changed or foreign file is refused and nothing is replaced."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from appliance import backup

CONF = "[load_management]\nmax_current_per_phase = 40\n\n[devices]\n  [[garage]]\n  type = ocpp16\n  address = CP1\n"


@pytest.fixture
def site(tmp_path: Path):
    conf = tmp_path / "ampgate.conf"
    conf.write_text(CONF, encoding="utf-8")
    data = tmp_path / "var"
    (data / "certs").mkdir(parents=True)
    (data / "certs" / "server.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (data / "certs" / "server.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n")
    return conf, data


def snapshot(conf: Path, data: Path) -> dict[str, bytes]:
    out = {"conf": conf.read_bytes()}
    for p in sorted((data / "certs").iterdir()):
        out[p.name] = p.read_bytes()
    return out


def wreck(conf: Path, data: Path) -> None:
    """What a restore must undo: another configuration, a lost key, a new file."""
    conf.write_text("[load_management]\nmax_current_per_phase = 16\n", encoding="utf-8")
    (data / "certs" / "server.key").unlink(missing_ok=True)
    (data / "certs" / "extra.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nCC\n-----END CERTIFICATE-----\n")


@pytest.mark.parametrize("password", ["", "Zählerschrank 7"])
def test_round_trip(site, password):
    conf, data = site
    before = snapshot(conf, data)
    blob = backup.make(conf, data, password)
    assert backup.is_encrypted(blob) == bool(password)
    if password:
        assert b"max_current_per_phase" not in blob and b"PRIVATE KEY" not in blob
    wreck(conf, data)
    restored = backup.restore(blob, conf, data, password)
    assert restored == ["certs/server.key", "certs/server.pem", "config/ampgate.conf"]
    assert snapshot(conf, data) == before
    assert (conf.with_name("ampgate.conf.old")).read_text().endswith("= 16\n")   # the replaced one is kept


def _refused(site, blob: bytes, password: str, match: str) -> None:
    conf, data = site
    wreck(conf, data)
    before = snapshot(conf, data)
    with pytest.raises(backup.BackupError, match=match):
        backup.restore(blob, conf, data, password)
    assert snapshot(conf, data) == before, "a refused restore changed files"
    assert not list(data.glob(".certs-restore-*"))


@pytest.mark.parametrize("password", ["", "secret-pass"])
def test_truncated_backup_is_refused(site, password):
    blob = backup.make(*site, password)
    _refused(site, blob[: len(blob) // 2], password, "damaged|cut short|wrong password")


def test_changed_byte_in_an_encrypted_backup_is_refused(site):
    blob = bytearray(backup.make(*site, "secret-pass"))
    blob[-20] ^= 0x01
    _refused(site, bytes(blob), "secret-pass", "wrong password, or the backup file was changed")


def test_wrong_or_missing_password_is_refused(site):
    blob = backup.make(*site, "secret-pass")
    _refused(site, blob, "other", "wrong password")
    _refused(site, blob, "", "encrypted: enter its password")


def _retar(blob: bytes, change) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    change(files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_tampered_member_is_refused(site):
    blob = backup.make(*site)
    changed = _retar(blob, lambda f: f.update({"config/ampgate.conf": f["config/ampgate.conf"] + b"# x\n"}))
    _refused(site, changed, "", "does not match its checksum")


def test_missing_member_is_refused(site):
    blob = _retar(backup.make(*site), lambda f: f.pop("certs/server.key"))
    _refused(site, blob, "", "incomplete")


def test_path_outside_the_backup_is_refused(site):
    def evil(f):
        f["../../etc/passwd"] = b"x"
    _refused(site, _retar(backup.make(*site), evil), "", "do not match its manifest|unexpected entry")


def test_invalid_configuration_in_the_backup_is_refused(site):
    conf, data = site
    conf.write_text("[load_management]\nmode = turbo\n", encoding="utf-8")
    blob = backup.make(conf, data)
    conf.write_text(CONF, encoding="utf-8")
    _refused(site, blob, "", "configuration is not valid: .*turbo")


def test_foreign_file_is_refused(site):
    _refused(site, b"PK\x03\x04 not a backup at all", "", "not an Ampgate backup")


# -- the System page ----------------------------------------------------------------------------------
def test_system_page_backup_restore_and_log(conf_file, data_dir):
    from appliance import config
    from appliance.runtime import Runtime
    from appliance.webapp import create_app
    from tests.test_web_api import set_password

    rt = Runtime(config.load(conf_file(CONF)), data_dir)
    try:
        client = create_app(rt).test_client()
        tok = set_password(client)
        page = client.get("/system/", headers={"Accept-Language": "de"}).text
        assert "Sicherung herunterladen" in page and "Ampgate 0." in page
        r = client.post("/system/backup", data={"csrf_token": tok, "password": "pw-123456"})
        assert r.status_code == 200 and "ampgate-backup-" in r.headers["Content-Disposition"]
        blob = r.data
        assert backup.is_encrypted(blob)
        conf = rt.config.path
        conf.write_text(conf.read_text() + "\n[ocpp_server]\nheartbeat_interval = 60\n")
        bad = blob[:-5]
        r = client.post("/system/restore", data={"csrf_token": tok, "password": "pw-123456",
                                                 "backup": (io.BytesIO(bad), "b.agb")},
                        content_type="multipart/form-data", follow_redirects=True)
        assert "not restored, nothing was changed: wrong password, or the backup file was changed" in r.text
        assert "heartbeat_interval = 60" in conf.read_text()
        r = client.post("/system/restore", data={"csrf_token": tok, "password": "pw-123456",
                                                 "backup": (io.BytesIO(blob), "b.agb")},
                        content_type="multipart/form-data", follow_redirects=True)
        assert "restored: " in r.text and "heartbeat_interval" not in conf.read_text()
        log = client.get("/system/log.txt")
        assert log.status_code == 200 and "backup restored: config/ampgate.conf" in log.text
    finally:
        rt.close()
