"""Making keys, root CAs, server/client certificates and CSRs, and signing CSRs: what users otherwise do
with the openssl recipe, with the extensions that recipe forgets (CA flag, SAN, key usages)."""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.certs.pem import SAME_SUBJECT_HINT, CertError, PrivateKey, key_matches

# Attribute names accepted in subjects (openssl's short names, case-insensitive).
_ATTRS = {
    "CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "C": NameOID.COUNTRY_NAME,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS, "E": NameOID.EMAIL_ADDRESS, "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "DC": NameOID.DOMAIN_COMPONENT, "STREET": NameOID.STREET_ADDRESS, "TITLE": NameOID.TITLE,
    "GN": NameOID.GIVEN_NAME, "SN": NameOID.SURNAME, "UID": NameOID.USER_ID,
}
USAGES = ("server", "client", "both")


def parse_subject(text: str) -> x509.Name:
    """'/C=DE/O=Müller Ladetechnik GmbH/CN=CP1' (openssl order, most significant first) or RFC 4514
    'CN=CP1,O=Müller Ladetechnik GmbH,C=DE' (least significant first). UTF-8 values stay UTF-8."""
    text = text.strip()
    if not text:
        raise CertError("the subject is empty (e.g. --subject '/C=DE/O=Example/CN=CP1')")
    if text.startswith("/"):
        parts = [p for p in re.split(r"(?<!\\)/", text[1:]) if p]
        pairs = [p.replace("\\/", "/") for p in parts]
    else:
        pairs = list(reversed([p.replace("\\,", ",") for p in re.split(r"(?<!\\),", text) if p.strip()]))
    attrs = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        oid = _ATTRS.get(key.strip().upper())
        if not sep or oid is None:
            raise CertError(f"subject part {pair!r} is not NAME=VALUE with NAME one of CN, O, OU, L, ST, C, "
                            "emailAddress, serialNumber, DC, street, title, GN, SN, UID")
        value = value.strip()
        if not value:
            raise CertError(f"subject part {pair!r} has no value")
        if oid == NameOID.COUNTRY_NAME and not re.fullmatch(r"[A-Za-z]{2}", value):
            raise CertError(f"country C={value!r} must be a two-letter code such as DE")
        try:
            attrs.append(x509.NameAttribute(oid, value))
        except ValueError as e:
            raise CertError(f"subject part {pair!r}: {e}") from None
    return x509.Name(attrs)


def parse_san(text: str | Sequence[str] | None) -> list[x509.GeneralName]:
    """'DNS:ampgate.local,IP:192.168.1.10,email:a@b,URI:https://x' (one string or several)."""
    if not text:
        return []
    items = [text] if isinstance(text, str) else list(text)
    names: list[x509.GeneralName] = []
    for item in ",".join(items).split(","):
        item = item.strip()
        if not item:
            continue
        kind, sep, value = item.partition(":")
        kind, value = kind.strip().upper(), value.strip()
        if not sep or not value:
            raise CertError(f"subjectAltName entry {item!r} must look like DNS:name or IP:address")
        if kind == "DNS":
            names.append(x509.DNSName(value))
        elif kind in ("IP", "IP ADDRESS"):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(value)))
            except ValueError:
                raise CertError(f"subjectAltName {item!r}: not an IP address") from None
        elif kind == "EMAIL":
            names.append(x509.RFC822Name(value))
        elif kind == "URI":
            names.append(x509.UniformResourceIdentifier(value))
        else:
            raise CertError(f"subjectAltName entry {item!r}: use DNS:, IP:, email: or URI:")
    return names


def default_san(subject: x509.Name) -> list[x509.GeneralName]:
    """A server certificate without --san gets its CN as DNS name or IP address (clients match SAN only)."""
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        return []
    cn = str(cns[0].value)
    try:
        return [x509.IPAddress(ipaddress.ip_address(cn))]
    except ValueError:
        return [x509.DNSName(cn)] if re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?", cn) else []


def new_key(kind: str = "rsa", size: int = 2048) -> PrivateKey:
    """RSA (2048 by default: OCPP 1.6 station-facing limit) or EC P-256."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if size not in (2048, 3072, 4096):
        raise CertError(f"RSA key size {size}: use 2048, 3072 or 4096")
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    if not 1 <= days <= 36500:
        raise CertError(f"--days {days}: use 1 to 36500")
    now = dt.datetime.now(dt.timezone.utc)
    # a little back-dating so a box whose clock is a few minutes behind accepts a fresh certificate
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return hashes.SHA256() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else None


def _key_usage(public_key: object, ca: bool) -> x509.KeyUsage:
    rsa_key = isinstance(public_key, rsa.RSAPublicKey)  # only RSA keys encipher (TLS 1.2 RSA key exchange)
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=rsa_key and not ca,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _eku(usage: str) -> x509.ExtendedKeyUsage:
    if usage not in USAGES:
        raise CertError(f"usage {usage!r}: use one of {', '.join(USAGES)}")
    oids = {"server": [ExtendedKeyUsageOID.SERVER_AUTH], "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
            "both": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]}[usage]
    return x509.ExtendedKeyUsage(oids)


def make_ca(subject: x509.Name, key: PrivateKey, days: int = 3650) -> x509.Certificate:
    """A self-signed root CA with the CA flag, key usages and key identifier."""
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(_key_usage(key.public_key(), ca=True), critical=True)
         .add_extension(ski, critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False))
    return _validity(b, days).sign(key, _hash_for(key))


def _check_ca(ca_cert: x509.Certificate, ca_key: PrivateKey) -> None:
    if not key_matches(ca_cert, ca_key):
        raise CertError("the CA key does not belong to the CA certificate")


def issue_cert(subject: x509.Name, public_key: object, san: list[x509.GeneralName], days: int, usage: str,
               signer_key: PrivateKey, ca_cert: x509.Certificate | None = None) -> x509.Certificate:
    """A leaf certificate for public_key: signed by ca_cert/signer_key, or self-signed when ca_cert is None."""
    issuer = ca_cert.subject if ca_cert is not None else subject
    if ca_cert is not None:
        _check_ca(ca_cert, signer_key)
        if subject == ca_cert.subject:
            raise CertError(f"the new certificate would have the CA's own subject: {SAME_SUBJECT_HINT}")
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
         .serial_number(x509.random_serial_number())
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(_key_usage(public_key, ca=False), critical=True)
         .add_extension(_eku(usage), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if ca_cert is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
    return _validity(b, days).sign(signer_key, _hash_for(signer_key))


def make_csr(subject: x509.Name, key: PrivateKey, san: list[x509.GeneralName]) -> x509.CertificateSigningRequest:
    b = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(key, _hash_for(key))


def sign_csr(csr: x509.CertificateSigningRequest, ca_cert: x509.Certificate, ca_key: PrivateKey, days: int,
             usage: str, san: list[x509.GeneralName] | None = None) -> x509.Certificate:
    """Sign a CSR; its subjectAltName is copied unless san overrides it (openssl `x509 -req` drops it)."""
    if san is None:
        try:
            san = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            san = []
    return issue_cert(csr.subject, csr.public_key(), san, days, usage, ca_key, ca_cert)
