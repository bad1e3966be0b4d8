"""The appliance's certificate store under <data_dir>/certs/, shared by the CLI, the web page and the
console (no CLI concerns here: functions take bytes and return dicts, problems raise CertError).

Layout:
  server.pem      the server key + certificate + chain in use (mode 0600). Its first line says whether it
                  is the onboard self-signed certificate or an imported one. Key and certificate share one
                  file so one atomic rename switches both: a running server never sees a mismatched pair.
  client.pem      the client key + certificate + chain presented to backends (Security Profile 3), 0600.
  ca/<sha256>.pem trusted CA certificates, one per file: they verify backends (outbound) and stations'
                  client certificates (inbound, Security Profile 3).

An imported key that was password-protected is stored decrypted (mode 0600), so the appliance starts
unattended; a password kept next to the key in the configuration would protect nothing more.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from appliance.certs import onboard
from appliance.fsutil import atomic_write
from appliance.certs.pem import (OCPP_MAX_RSA_BITS, SAME_SUBJECT_HINT, CertError, PrivateKey, cert_pem,
                                 describe, extended_key_usages, is_ca, is_self_signed, key_matches, key_pem,
                                 load_certificates, load_private_key, looks_self_issued_but_not_self_signed,
                                 name_str, normalize_fingerprint, not_after, san_list, validity_problem)

__all__ = ["CertError", "show", "ensure_onboard", "regenerate", "import_server", "import_client", "remove_client",
           "add_ca", "remove_ca", "list_ca", "server_path", "client_path", "ca_bundle", "files_stamp"]

KEY_MODE = 0o600
ONBOARD_HEADER = b"# ampgate server certificate: onboard (self-signed)\n"
IMPORTED_HEADER = b"# ampgate server certificate: imported\n"
CLIENT_HEADER = b"# ampgate client certificate\n"


def certs_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "certs"


def server_path(data_dir: str | os.PathLike) -> Path:
    return certs_dir(data_dir) / "server.pem"


def client_path(data_dir: str | os.PathLike) -> Path:
    return certs_dir(data_dir) / "client.pem"


def ca_dir(data_dir: str | os.PathLike) -> Path:
    return certs_dir(data_dir) / "ca"


# -- server certificate -------------------------------------------------------------------------

def _write_bundle(path: Path, header: bytes, key: PrivateKey, chain: list[x509.Certificate]) -> None:
    atomic_write(path, header + key_pem(key) + b"".join(cert_pem(c) for c in chain), KEY_MODE)


def _read_chain(path: Path) -> list[x509.Certificate]:
    try:
        return load_certificates(path.read_bytes())
    except OSError as e:
        raise CertError(f"cannot read {path}: {e.strerror}") from None


def ensure_onboard(data_dir: str | os.PathLike) -> None:
    """Make the onboard certificate if there is no server certificate yet (first start)."""
    if not server_path(data_dir).exists():
        regenerate(data_dir)


def regenerate(data_dir: str | os.PathLike) -> dict[str, Any]:
    """A new onboard self-signed certificate; it replaces the one in use (an imported one too)."""
    cert, key = onboard.make_onboard()
    _write_bundle(server_path(data_dir), ONBOARD_HEADER, key, [cert])
    return _server_info(cert, onboard_cert=True)


def _checked_pair(cert_data: bytes, key_data: bytes, password: str | None) -> tuple[PrivateKey, list[x509.Certificate]]:
    """The key and the chain with the key's certificate first, after the checks an import needs."""
    certs = load_certificates(cert_data)
    key = load_private_key(key_data, password)
    leaf = next((c for c in certs if key_matches(c, key)), None)
    if leaf is None:
        what = "the certificate" if len(certs) == 1 else f"any of the {len(certs)} certificates"
        raise CertError(f"the key does not belong to {what} ({name_str(certs[0].subject)})")
    problem = validity_problem(leaf)
    if problem:
        raise CertError(f"the certificate {name_str(leaf.subject)}: {problem}")
    if looks_self_issued_but_not_self_signed(leaf):
        raise CertError(f"the certificate cannot be used: {SAME_SUBJECT_HINT}")
    return key, [leaf] + [c for c in certs if c is not leaf]


def _server_info(cert: x509.Certificate, onboard_cert: bool) -> dict[str, Any]:
    notes = []
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey) and pub.key_size > OCPP_MAX_RSA_BITS:
        notes.append(f"RSA key of {pub.key_size} bits: OCPP 1.6 stations may accept only up to {OCPP_MAX_RSA_BITS}")
    eku = extended_key_usages(cert)
    if eku and "serverAuth" not in eku:
        notes.append("not made for servers (extended key usage lacks serverAuth)")
    if onboard_cert:
        listed = set(san_list(cert))
        missing = [str(a) for a in onboard.host_addresses() if f"IP:{a}" not in listed]
        if missing:
            notes.append(f"this host's address {', '.join(missing)} is not in the certificate: regenerate it")
    info = describe(cert, notes)
    info["onboard"] = onboard_cert
    return info


def import_server(data_dir: str | os.PathLike, cert_pem_data: bytes, key_pem_data: bytes,
                  password: str | None = None) -> dict[str, Any]:
    """Check (readable, key matches, valid now) and then make it the server certificate in use."""
    key, chain = _checked_pair(cert_pem_data, key_pem_data, password)
    _write_bundle(server_path(data_dir), IMPORTED_HEADER, key, chain)
    return _server_info(chain[0], onboard_cert=False)


def server_info(data_dir: str | os.PathLike) -> dict[str, Any]:
    ensure_onboard(data_dir)
    path = server_path(data_dir)
    data = path.read_bytes()
    return _server_info(load_certificates(data)[0], onboard_cert=data.startswith(ONBOARD_HEADER))


# -- client certificate -------------------------------------------------------------------------

def _client_info(cert: x509.Certificate) -> dict[str, Any]:
    notes = []
    if is_self_signed(cert):
        notes.append("self-signed: the backend must hold this very certificate in its trusted list")
    eku = extended_key_usages(cert)
    if eku and "clientAuth" not in eku:
        notes.append("not made for clients (extended key usage lacks clientAuth)")
    return describe(cert, notes)


def import_client(data_dir: str | os.PathLike, cert_pem_data: bytes, key_pem_data: bytes,
                  password: str | None = None) -> dict[str, Any]:
    """The certificate + key the appliance presents to backends (Security Profile 3)."""
    key, chain = _checked_pair(cert_pem_data, key_pem_data, password)
    _write_bundle(client_path(data_dir), CLIENT_HEADER, key, chain)
    return _client_info(chain[0])


def remove_client(data_dir: str | os.PathLike) -> None:
    try:
        client_path(data_dir).unlink()
    except FileNotFoundError:
        raise CertError("there is no client certificate") from None


def client_info(data_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = client_path(data_dir)
    return _client_info(_read_chain(path)[0]) if path.exists() else None


# -- CA certificates ----------------------------------------------------------------------------

def _ca_info(cert: x509.Certificate) -> dict[str, Any]:
    notes = []
    if not is_ca(cert):
        if is_self_signed(cert):
            if cert.version == x509.Version.v1:
                notes.append("version 1 certificate without a CA flag (openssl recipe); accepted")
        else:
            notes.append("not a CA: trusts (pins) exactly this certificate")
    info = describe(cert, notes)
    info["file"] = f"{normalize_fingerprint(info['fingerprint_sha256'])}.pem"
    return info


def add_ca(data_dir: str | os.PathLike, pem: bytes) -> list[dict[str, Any]]:
    """Trust every certificate in the file (a root, an intermediate, or a server's own certificate to pin).
    All are checked before any is stored."""
    certs = load_certificates(pem)
    now = dt.datetime.now(dt.timezone.utc)
    for c in certs:
        if not_after(c) < now:
            raise CertError(f"the certificate {name_str(c.subject)} expired on {not_after(c):%Y-%m-%d}")
        if looks_self_issued_but_not_self_signed(c):
            raise CertError(f"the certificate {name_str(c.subject)} cannot be trusted: {SAME_SUBJECT_HINT}")
    infos = [_ca_info(c) for c in certs]
    for c, info in zip(certs, infos):
        atomic_write(ca_dir(data_dir) / info["file"], cert_pem(c))
    return infos


def _ca_files(data_dir: str | os.PathLike) -> list[Path]:
    d = ca_dir(data_dir)
    return sorted(p for p in d.glob("*.pem")) if d.is_dir() else []


def list_ca(data_dir: str | os.PathLike) -> list[dict[str, Any]]:
    infos = []
    for p in _ca_files(data_dir):
        infos.append(_ca_info(_read_chain(p)[0]))
    return sorted(infos, key=lambda i: (i["subject"], i["fingerprint_sha256"]))


def remove_ca(data_dir: str | os.PathLike, fingerprint: str) -> None:
    """Remove by SHA-256 fingerprint (colons and case ignored; a unique prefix of 8+ digits will do)."""
    want = normalize_fingerprint(fingerprint)
    if len(want) < 8:
        raise CertError(f"fingerprint {fingerprint!r}: give at least 8 hex digits (see the CA list)")
    hits = [p for p in _ca_files(data_dir) if p.stem.startswith(want)]
    if not hits:
        raise CertError(f"no CA certificate with fingerprint {fingerprint}")
    if len(hits) > 1:
        raise CertError(f"fingerprint {fingerprint} matches {len(hits)} CA certificates: give more digits")
    hits[0].unlink()


def ca_bundle(data_dir: str | os.PathLike) -> str:
    """All trusted CA certificates as one PEM text (for SSLContext.load_verify_locations(cadata=...))."""
    return "".join(p.read_text(encoding="ascii") for p in _ca_files(data_dir))


def files_stamp(data_dir: str | os.PathLike) -> tuple:
    """Changes whenever a certificate file is replaced, added or removed (atomic renames: new inode)."""
    def st(p: Path) -> tuple:
        try:
            s = p.stat()
            return (s.st_ino, s.st_mtime_ns, s.st_size)
        except FileNotFoundError:
            return ()
    return (st(server_path(data_dir)), st(client_path(data_dir)),
            tuple((p.name, st(p)) for p in _ca_files(data_dir)))


# -- everything at once -------------------------------------------------------------------------

def show(data_dir: str | os.PathLike) -> dict[str, Any]:
    """The server certificate in use (made first if missing), the CA list and the client certificate."""
    server = server_info(data_dir)
    return {"server": server, "onboard": server["onboard"], "ca": list_ca(data_dir), "client": client_info(data_dir)}
