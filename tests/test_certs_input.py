"""Bad input: every broken import gets one clear error and leaves the certificates in use untouched."""
import datetime as dt
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from appliance import config
from appliance.certs import issue, manage
from appliance.certs.manage import CertError
from appliance.certs.pem import key_pem, load_private_key
from appliance.certs.tls import ServerTls
from certkit import Pki


@pytest.fixture(scope="module")
def pki():
    return Pki("Input Root")


@pytest.fixture(scope="module")
def good(pki):
    return pki.leaf("localhost", kind="rsa")


def expired_cert(key, days_ago=2):
    now = dt.datetime.now(dt.timezone.utc)
    name = issue.parse_subject("/CN=old")
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now - dt.timedelta(days=days_ago)).sign(key, hashes.SHA256()))


def der(pem_cert):
    return x509.load_pem_x509_certificate(pem_cert).public_bytes(serialization.Encoding.DER)


def cases(good, pki):
    cert, key = good
    other_cert, _ = pki.leaf("other")
    key_obj = load_private_key(key)
    encrypted = key_pem(key_obj, "right")
    old = expired_cert(key_obj).public_bytes(serialization.Encoding.PEM)
    return [
        ("wrong password", (cert, encrypted, "wrong"), "wrong password for the key"),
        ("no password", (cert, encrypted, None), "the key is encrypted: give its password"),
        ("key does not match", (other_cert, key, None), "the key does not belong to the certificate"),
        ("expired", (old, key, None), "expired on"),
        ("garbage certificate", (b"hello world\n", key, None), "no PEM certificate found"),
        ("garbage key", (cert, b"\x00\x01 not a key", None), "no PEM key found"),
        ("empty certificate", (b"", key, None), "the certificate file is empty"),
        ("DER certificate", (der(cert), key, None), "DER (binary) form; PEM is needed"),
        ("DER key", (cert, load_private_key(key).private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()), None), "DER (binary) form"),
        ("damaged certificate", (cert.replace(b"M", b"A", 40), key, None), "damaged"),
        ("key only", (key, key, None), "holds no certificate"),
    ]


def test_bad_server_imports_change_nothing(data_dir, conf_file, good, pki):
    tls = ServerTls(data_dir, config.load(conf_file()))
    ctx = tls.context()
    before = manage.server_path(data_dir).read_bytes()
    for label, (cert, key, pw), message in cases(good, pki):
        with pytest.raises(CertError) as e:
            manage.import_server(data_dir, cert, key, pw)
        assert message in str(e.value), label
        assert "\n" not in str(e.value), label
        assert manage.server_path(data_dir).read_bytes() == before, label
    assert tls.context() is ctx
    assert manage.show(data_dir)["onboard"] is True


def test_bad_client_imports_change_nothing(data_dir, good, pki):
    manage.import_client(data_dir, *good)
    before = manage.client_path(data_dir).read_bytes()
    for label, (cert, key, pw), message in cases(good, pki):
        with pytest.raises(CertError, match=re.escape(message)):
            manage.import_client(data_dir, cert, key, pw)
        assert manage.client_path(data_dir).read_bytes() == before, label


def test_encrypted_import_is_stored_decrypted_and_private(data_dir, good):
    cert, key = good
    info = manage.import_server(data_dir, cert, key_pem(load_private_key(key), "pw"), "pw")
    path = manage.server_path(data_dir)
    assert info["onboard"] is False and info["common_name"] == "localhost"
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" not in path.read_bytes()
    assert manage.show(data_dir)["onboard"] is False


def test_chain_is_reordered_leaf_first(data_dir, good, pki):
    cert, key = good
    manage.import_server(data_dir, pki.pem + cert, key)  # CA first, as some portals hand it out
    chain = x509.load_pem_x509_certificates(manage.server_path(data_dir).read_bytes())
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=localhost,O=Test", "CN=Input Root,O=Test"]


def test_ca_list_bad_input_and_removal(data_dir, pki, good):
    with pytest.raises(CertError, match="no PEM certificate"):
        manage.add_ca(data_dir, b"junk")
    key = load_private_key(good[1])
    with pytest.raises(CertError, match="expired"):
        manage.add_ca(data_dir, pki.pem + expired_cert(key).public_bytes(serialization.Encoding.PEM))
    assert manage.list_ca(data_dir) == []  # nothing of a partly bad file was stored
    other = Pki("Other Root")
    infos = manage.add_ca(data_dir, pki.pem + other.pem + good[0])
    assert len(manage.list_ca(data_dir)) == 3
    assert infos[2]["warning"] == "not a CA: trusts (pins) exactly this certificate"
    manage.add_ca(data_dir, pki.pem)  # again: no duplicate
    assert len(manage.list_ca(data_dir)) == 3
    with pytest.raises(CertError, match="no CA certificate with fingerprint"):
        manage.remove_ca(data_dir, "00:11:22:33:44")
    manage.remove_ca(data_dir, infos[0]["fingerprint_sha256"].lower())
    manage.remove_ca(data_dir, infos[1]["fingerprint_sha256"].replace(":", "")[:12])
    assert [i["common_name"] for i in manage.list_ca(data_dir)] == ["localhost"]


def test_expiry_warning_and_oversized_rsa(data_dir, pki):
    key = issue.new_key("rsa", 3072)
    cert = issue.issue_cert(issue.parse_subject("/CN=localhost"), key.public_key(), [], 10, "server", pki.key, pki.cert)
    info = manage.import_server(data_dir, cert.public_bytes(serialization.Encoding.PEM), key_pem(key))
    assert "expires within 30 days" in info["warning"] and "RSA key of 3072 bits" in info["warning"]
    assert info["expires_in_days"] in (9, 10)


def test_subject_and_san_parsing():
    name = issue.parse_subject("/C=DE/O=Müller Ladetechnik GmbH/OU=a\\/b/CN=CP1")
    assert name.rfc4514_string() == "CN=CP1,OU=a/b,O=Müller Ladetechnik GmbH,C=DE"
    assert issue.parse_subject("CN=CP1,O=Müller\\, Söhne,C=DE") == issue.parse_subject("/C=DE/O=Müller, Söhne/CN=CP1")
    for bad, msg in [("/X=1", "not NAME=VALUE"), ("/C=Deutschland", "two-letter"), ("", "empty"), ("/CN=", "no value")]:
        with pytest.raises(CertError, match=msg):
            issue.parse_subject(bad)
    assert [str(g.value) for g in issue.parse_san(["DNS:a.example,IP:::1", "email:x@y"])] == ["a.example", "::1", "x@y"]
    for bad in ("IP:999.1.1.1", "dns", "FOO:bar"):
        with pytest.raises(CertError, match="subjectAltName"):
            issue.parse_san(bad)
