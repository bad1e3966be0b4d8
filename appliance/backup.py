"""Backup and restore: one file with the configuration, the certificates and their keys.

The file is a gzip'd tar with a manifest (format, version, the SHA-256 of every member). With a password
it is encrypted and authenticated as a whole: AES-256-GCM under a key derived with scrypt, so a wrong
password and a changed byte are both refused. Without a password the manifest's digests catch damage
(not a deliberate change: that is what the password is for).

A restore checks everything before it replaces anything: the container, every digest, the member
names, the configuration against the schema, every certificate and key as PEM. Only then are the files
written (each atomically; the certificate directory swapped in whole), the old ones kept beside as *.old.
The database (sessions, log) is not part of a backup.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from appliance import __version__
from appliance.fsutil import atomic_write
from appliance.i18n import _

FORMAT = "ampgate-backup"
VERSION = 1
MAGIC = b"AMPGATE-BACKUP-AESGCM-1\n"
SALT_BYTES, NONCE_BYTES = 16, 12
SCRYPT = {"n": 2 ** 15, "r": 8, "p": 1}
MAX_BYTES = 4 * 1024 * 1024            # a backup of configuration and certificates is a few KiB
CONFIG_MEMBER = "config/ampgate.conf"
_CERT_MEMBER = re.compile(r"^certs/[A-Za-z0-9_.-]{1,64}$")


class BackupError(Exception):
    """Why a backup cannot be made or restored; nothing was changed."""


def _key(password: str, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, **SCRYPT).derive(password.encode("utf-8"))


def _members(config_path: Path, data_dir: Path) -> dict[str, bytes]:
    from appliance.certs.manage import certs_dir

    files = {CONFIG_MEMBER: config_path.read_bytes() if config_path.is_file() else b""}
    certs = certs_dir(data_dir)
    if certs.is_dir():
        for p in sorted(certs.iterdir()):
            if p.is_file() and _CERT_MEMBER.match(f"certs/{p.name}"):
                files[f"certs/{p.name}"] = p.read_bytes()
    return files


def make(config_path: str | os.PathLike, data_dir: str | os.PathLike, password: str = "") -> bytes:
    """The backup file's bytes (encrypted when a password is given)."""
    files = _members(Path(config_path), Path(data_dir))
    manifest = {"format": FORMAT, "version": VERSION, "ampgate": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("manifest.json", json.dumps(manifest, indent=1).encode())] + list(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
    plain = buf.getvalue()
    if not password:
        return plain
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    return MAGIC + salt + nonce + AESGCM(_key(password, salt)).encrypt(nonce, plain, MAGIC)


def is_encrypted(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def _decrypt(blob: bytes, password: str) -> bytes:
    if not password:
        raise BackupError(_("this backup is encrypted: enter its password"))
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    body = blob[len(MAGIC):]
    if len(body) < SALT_BYTES + NONCE_BYTES + 16:
        raise BackupError(_("the backup file is cut short"))
    salt, nonce, sealed = body[:SALT_BYTES], body[SALT_BYTES:SALT_BYTES + NONCE_BYTES], body[SALT_BYTES + NONCE_BYTES:]
    try:
        return AESGCM(_key(password, salt)).decrypt(nonce, sealed, MAGIC)
    except InvalidTag:
        raise BackupError(_("wrong password, or the backup file was changed or damaged")) from None


def read(blob: bytes, password: str = "") -> dict[str, bytes]:
    """Every member of a backup, each checked against the manifest; raises BackupError otherwise."""
    if len(blob) > MAX_BYTES:
        raise BackupError(_("not an Ampgate backup: the file is too large"))
    plain = _decrypt(blob, password) if is_encrypted(blob) else blob
    try:
        with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as tar:
            files: dict[str, bytes] = {}
            for m in tar.getmembers():
                if not m.isfile():
                    raise BackupError(_("not an Ampgate backup: unexpected entry %(name)r", name=m.name))
                f = tar.extractfile(m)
                files[m.name] = f.read() if f else b""
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise BackupError(_("not an Ampgate backup, or the file is damaged (%(why)s)", why=e)) from None
    return _checked(files)


def _checked(files: dict[str, bytes]) -> dict[str, bytes]:
    try:
        manifest = json.loads(files.pop("manifest.json"))
    except (KeyError, ValueError):
        raise BackupError(_("not an Ampgate backup: no readable manifest")) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BackupError(_("not an Ampgate backup of a version this appliance reads"))
    listed = manifest.get("files")
    if not isinstance(listed, dict) or set(listed) != set(files):
        raise BackupError(_("the backup is incomplete: its files do not match its manifest"))
    for name, data in files.items():
        if name != CONFIG_MEMBER and not _CERT_MEMBER.match(name):
            raise BackupError(_("not an Ampgate backup: unexpected entry %(name)r", name=name))
        if hashlib.sha256(data).hexdigest() != listed[name]:
            raise BackupError(_("the backup is damaged: %(name)s does not match its checksum", name=name))
    if CONFIG_MEMBER not in files:
        raise BackupError(_("the backup is incomplete: it has no configuration"))
    return files


def _validate(files: dict[str, bytes]) -> None:
    """The configuration against the schema and every certificate file as PEM, before anything moves."""
    from appliance import config

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "ampgate.conf"
        p.write_bytes(files[CONFIG_MEMBER])
        try:
            config.load(p)
        except config.ConfigError as e:
            raise BackupError(_("the backup's configuration is not valid: %(why)s",
                                why=str(e).replace(str(p), "ampgate.conf"))) from None
    for name, data in files.items():
        if name.endswith(".pem") and b"-----BEGIN " not in data:
            raise BackupError(_("the backup is damaged: %(name)s is not PEM", name=name))


def restore(blob: bytes, config_path: str | os.PathLike, data_dir: str | os.PathLike, password: str = "") -> list[str]:
    """Check the whole backup, then replace the configuration and the certificate directory.
    Returns the restored file names. On any error nothing was replaced."""
    from appliance.certs.manage import certs_dir

    files = read(blob, password)
    _validate(files)
    certs = certs_dir(data_dir)
    staged = Path(tempfile.mkdtemp(prefix=".certs-restore-", dir=Path(data_dir)))
    try:
        for name, data in files.items():
            if name.startswith("certs/"):
                fd = os.open(staged / name[len("certs/"):], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
        cfg = Path(config_path)
        if cfg.is_file():
            shutil.copy2(cfg, cfg.with_name(cfg.name + ".old"))
        atomic_write(cfg, files[CONFIG_MEMBER], 0o600)
        old = certs.with_name("certs.old")
        shutil.rmtree(old, ignore_errors=True)
        if certs.exists():
            os.replace(certs, old)
        os.replace(staged, certs)
        os.chmod(certs, 0o700)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return sorted(files)
