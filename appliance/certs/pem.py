"""Reading certificates, keys and CSRs from PEM bytes, and describing certificates for people.

Every failure is a CertError whose message can be shown to the user as it is: the web page, the
console and `ampgate cert` all print it unchanged.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = Any  # rsa / ec / ed25519 private key objects
EXPIRY_WARNING_DAYS = 30
OCPP_MAX_RSA_BITS = 2048  # OCPP-J 1.6: the station-facing server key is RSA <= 2048 bits

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_NAME_OVERRIDES = {NameOID.EMAIL_ADDRESS: "emailAddress"}


class CertError(Exception):
    """A certificate problem phrased for the user (one line, says what and what to do)."""


def _blocks(data: bytes, what: str) -> list[tuple[str, bytes]]:
    """The PEM blocks in data as (label, block bytes); explains DER and garbage input."""
    data = data.lstrip(b"\xef\xbb\xbf")  # a BOM from Windows editors
    blocks = [(m.group(1).decode(), m.group(0)) for m in _BLOCK.finditer(data)]
    if blocks:
        return blocks
    if not data.strip():
        raise CertError(f"the {what} file is empty")
    if data[:1] == b"\x30":
        raise CertError(f"the {what} is in DER (binary) form; PEM is needed: convert it with "
                        f"`openssl {'x509' if what == 'certificate' else 'pkey'} -inform der -in FILE -out FILE.pem`")
    raise CertError(f"no PEM {what} found (expected a '-----BEGIN ...-----' block)")


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM file, in file order."""
    certs = []
    for label, block in _blocks(data, "certificate"):
        if label != "CERTIFICATE":
            continue
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            raise CertError(f"certificate number {len(certs) + 1} in the file is damaged (not valid PEM/X.509)") from None
    if not certs:
        raise CertError("the file holds no certificate ('-----BEGIN CERTIFICATE-----' block)")
    return certs


def _key_block(data: bytes) -> tuple[bytes, bool]:
    """The first private key block and whether it needs a password (PKCS#8 or legacy OpenSSL encryption)."""
    keys = [(label, block) for label, block in _blocks(data, "key") if label.endswith("PRIVATE KEY")]
    if not keys:
        raise CertError("the file holds no private key ('-----BEGIN ... PRIVATE KEY-----' block)")
    label, block = keys[0]
    return block, label.startswith("ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in block


def key_is_encrypted(data: bytes) -> bool:
    try:
        return _key_block(data)[1]
    except CertError:
        return False


def load_private_key(data: bytes, password: str | None = None) -> PrivateKey:
    """The private key in a PEM file (PKCS#8, traditional RSA/EC, encrypted or not)."""
    block, encrypted = _key_block(data)
    if encrypted and not password:
        raise CertError("the key is encrypted: give its password")
    try:
        return serialization.load_pem_private_key(block, password.encode() if encrypted and password else None)
    except UnsupportedAlgorithm as e:
        raise CertError(f"unsupported key type or encryption: {e}") from None
    except (ValueError, TypeError):
        if encrypted:
            raise CertError("wrong password for the key (or the key is damaged)") from None
        raise CertError("the private key is damaged (not a valid PEM key)") from None


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    blocks = [b for label, b in _blocks(data, "certificate request") if label in ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")]
    if not blocks:
        raise CertError("the file holds no certificate request ('-----BEGIN CERTIFICATE REQUEST-----' block)")
    try:
        csr = x509.load_pem_x509_csr(blocks[0])
    except ValueError:
        raise CertError("the certificate request is damaged") from None
    if not csr.is_signature_valid:
        raise CertError("the certificate request's signature does not verify (damaged or altered)")
    return csr


def public_der(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    return public_der(cert.public_key()) == public_der(key.public_key())


def key_pem(key: PrivateKey, password: str | None = None) -> bytes:
    """PKCS#8 PEM; encrypted with the best available cipher when a password is given."""
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


# -- describing ----------------------------------------------------------------------------------

def name_str(name: x509.Name) -> str:
    """RFC 4514 text with UTF-8 kept readable (Köln, not K\\C3\\B6ln)."""
    return name.rfc4514_string(_NAME_OVERRIDES)


def common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def san_list(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for g in ext:
        if isinstance(g, x509.DNSName):
            out.append(f"DNS:{g.value}")
        elif isinstance(g, x509.IPAddress):
            out.append(f"IP:{g.value}")
        elif isinstance(g, x509.RFC822Name):
            out.append(f"email:{g.value}")
        elif isinstance(g, x509.UniformResourceIdentifier):
            out.append(f"URI:{g.value}")
        else:
            out.append(str(g.value))
    return out


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def normalize_fingerprint(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower())


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def key_description(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return type(key).__name__.replace("PublicKey", "")
    return type(key).__name__


def extended_key_usages(cert: x509.Certificate) -> list[str]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    names = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
    return [names.get(o, o.dotted_string) for o in eku]


def looks_self_issued_but_not_self_signed(cert: x509.Certificate) -> bool:
    """Subject == issuer but its own key did not sign it: made from the same openssl config as its CA.
    Verifiers take it for a self-signed certificate and reject it."""
    return cert.subject == cert.issuer and not is_self_signed(cert)


SAME_SUBJECT_HINT = ("its subject is the same as its issuer's, so verifiers take it for a self-signed certificate "
                     "and reject it (it was probably made from the CA's openssl config): give it its own subject, "
                     "e.g. its own CN")

def not_before(cert: x509.Certificate) -> dt.datetime:
    """Start of validity in UTC. cryptography < 42 (OpenWrt 24.10 ships 41) lacks the *_utc properties."""
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc
    return cert.not_valid_before.replace(tzinfo=dt.timezone.utc)


def not_after(cert: x509.Certificate) -> dt.datetime:
    """End of validity in UTC (see not_before)."""
    if hasattr(cert, "not_valid_after_utc"):
        return cert.not_valid_after_utc
    return cert.not_valid_after.replace(tzinfo=dt.timezone.utc)


def validity_problem(cert: x509.Certificate, now: dt.datetime | None = None) -> str | None:
    now = now or dt.datetime.now(dt.timezone.utc)
    if not_after(cert) < now:
        return f"expired on {not_after(cert):%Y-%m-%d %H:%M} UTC"
    if not_before(cert) > now:
        return f"not yet valid (valid from {not_before(cert):%Y-%m-%d %H:%M} UTC)"
    return None


def describe(cert: x509.Certificate, warnings: list[str] | None = None) -> dict[str, Any]:
    """The certificate as the UI shows it; `warning` joins validity warnings and the caller's."""
    now = dt.datetime.now(dt.timezone.utc)
    left = not_after(cert) - now
    notes = []
    problem = validity_problem(cert, now)
    if problem:
        notes.append(problem)
    elif left < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        notes.append(f"expires within {EXPIRY_WARNING_DAYS} days ({not_after(cert):%Y-%m-%d})")
    notes.extend(warnings or [])
    return {
        "subject": name_str(cert.subject),
        "issuer": name_str(cert.issuer),
        "common_name": common_name(cert.subject),
        "san": san_list(cert),
        "not_before": not_before(cert).isoformat(),
        "not_after": not_after(cert).isoformat(),
        "fingerprint_sha256": fingerprint(cert),
        "expires_in_days": left.days,
        "serial": format(cert.serial_number, "X"),
        "version": cert.version.value + 1,
        "key": key_description(cert.public_key()),
        "self_signed": is_self_signed(cert),
        "ca": is_ca(cert),
        "extended_key_usage": extended_key_usages(cert),
        "warning": "; ".join(notes) or None,
    }
