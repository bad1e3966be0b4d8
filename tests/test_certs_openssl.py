"""Interop with the openssl CLI both ways: the recipe users follow (charging-manager.md §6.3), replayed
with /usr/bin/openssl and used by the appliance; and the appliance's own certificates checked by
`openssl verify`, `s_client` and `s_server`."""
import re
import socket
import ssl

import pytest

from appliance import cli, config
from appliance.certs import manage
from appliance.certs.manage import CertError
from appliance.certs.tls import ServerTls, client_context
from certkit import TIMEOUT, handshake, openssl, s_client, s_server, s_server_output, tls_server

ROOT_PW = "Wurzel-Passwört"  # a non-ASCII passphrase too


def cnf(cn, san, ou="Ladeinfrastruktur"):
    return f"""[req]
prompt = no
distinguished_name = dn
req_extensions = ext

[dn]
CN = {cn}
emailAddress = pki@mueller-ladetechnik.example
O = Müller Ladetechnik GmbH
OU = {ou}
L = Köln
C = DE

[ext]
subjectAltName = {san}
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """The vendor guide's recipe, step by step (UTF-8 config files, -utf8)."""
    d = tmp_path_factory.mktemp("recipe")
    (d / "rootCA.cnf").write_text(cnf("Müller Root CA", "DNS:mueller-ladetechnik.example,DNS:*.mueller-ladetechnik.example"), encoding="utf-8")
    (d / "client.cnf").write_text(cnf("CP1", "DNS:cp1.mueller-ladetechnik.example"), encoding="utf-8")
    (d / "server.cnf").write_text(cnf("localhost", "DNS:localhost,DNS:*.mueller.example,IP:127.0.0.1"), encoding="utf-8")
    openssl("genrsa", "-des3", "-passout", f"pass:{ROOT_PW}", "-out", "rootCA.key", "4096", cwd=d)
    openssl("req", "-x509", "-new", "-nodes", "-key", "rootCA.key", "-passin", f"pass:{ROOT_PW}", "-sha256", "-days", "365",
            "-out", "rootCA.crt", "-config", "rootCA.cnf", "-utf8", cwd=d)
    for name in ("client", "server"):
        openssl("genrsa", "-out", f"{name}.key", "2048", cwd=d)
        openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-config", f"{name}.cnf", "-utf8", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "rootCA.crt", "-CAkey", "rootCA.key", "-passin", f"pass:{ROOT_PW}",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "365", "-sha256", cwd=d)
    return d


@pytest.fixture
def cfg(conf_file):
    return lambda text="": config.load(conf_file(text))


def cert_cli(*args) -> int:
    """`ampgate cert ...` in this process (exit codes through a subprocess: test_certs_cli.py)."""
    return cli.main(["cert", *map(str, args)])


def test_recipe_root_displays_utf8_and_is_trusted(recipe, data_dir):
    [info] = manage.add_ca(data_dir, (recipe / "rootCA.crt").read_bytes())
    assert "O=Müller Ladetechnik GmbH" in info["subject"] and "L=Köln" in info["subject"]
    assert "emailAddress=pki@mueller-ladetechnik.example" in info["subject"]
    assert info["self_signed"] and info["warning"] in (None, "version 1 certificate without a CA flag (openssl recipe); accepted")
    assert manage.list_ca(data_dir)[0]["fingerprint_sha256"] == info["fingerprint_sha256"]


def test_recipe_server_cert_serves_tls(recipe, data_dir, tmp_path, cfg):
    manage.import_server(data_dir, (recipe / "server.crt").read_bytes(), (recipe / "server.key").read_bytes())
    client_dir = tmp_path / "c"
    manage.add_ca(client_dir, (recipe / "rootCA.crt").read_bytes())
    with tls_server(ServerTls(data_dir, cfg()).context) as srv:
        # `x509 -req` dropped the SAN: Python matches the CN then
        assert handshake(client_context(client_dir, cfg()), srv.port, "localhost") == b"ok"
        r = s_client(srv.port, "-CAfile", recipe / "rootCA.crt", "-verify_return_error", "-servername", "localhost")
        assert r.returncode == 0 and b"Verify return code: 0 (ok)" in r.stdout, r.stderr


def test_recipe_client_cert_for_mtls_both_ways(recipe, data_dir, tmp_path, cfg):
    """The recipe's client certificate: presented by the appliance to `openssl s_server -Verify`, and
    presented by `openssl s_client` to the appliance's Profile 3 server."""
    client_dir = tmp_path / "c"
    info = manage.import_client(client_dir, (recipe / "client.crt").read_bytes(), (recipe / "client.key").read_bytes())
    assert info["common_name"] == "CP1"
    with s_server("-cert", recipe / "server.crt", "-key", recipe / "server.key", "-Verify", "1",
                  "-CAfile", recipe / "rootCA.crt", "-verify_return_error") as (port, proc):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            with client_context(client_dir, cfg()).wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"hello\n")
        out = s_server_output(proc)
    assert re.search(r"subject=.*CN = CP1", out) and "verify error" not in out, out

    c = cfg("[ocpp_server]\nclient_certs = required\n")
    manage.add_ca(data_dir, (recipe / "rootCA.crt").read_bytes())
    tls = ServerTls(data_dir, c)
    with tls_server(tls.context) as srv:
        r = s_client(srv.port, "-cert", recipe / "client.crt", "-key", recipe / "client.key")
        assert r.returncode == 0, r.stderr
        r = s_client(srv.port)  # no client certificate
    assert len(srv.peers) == 1 and tls.check_peer("CP1", srv.peers[0]) is None
    assert "CN 'CP1' is not the chargeBoxId 'CP9'" in tls.check_peer("CP9", srv.peers[0])
    assert srv.errors, "a client without a certificate must be refused"


def test_sign_recipe_csr_with_encrypted_openssl3_root_key_keeps_san_and_wildcard(recipe, data_dir, tmp_path, cfg, monkeypatch):
    out = tmp_path / "server.crt"
    monkeypatch.setenv("AMPGATE_CA_KEY_PASSWORD", ROOT_PW)
    assert cert_cli("sign", recipe / "server.csr", "--ca-cert", recipe / "rootCA.crt", "--ca-key", recipe / "rootCA.key",
                    "--out", out) == 0
    openssl("verify", "-CAfile", recipe / "rootCA.crt", out)
    manage.import_server(data_dir, out.read_bytes(), (recipe / "server.key").read_bytes())
    client_dir = tmp_path / "c"
    manage.add_ca(client_dir, (recipe / "rootCA.crt").read_bytes())
    ctx = client_context(client_dir, cfg())
    with tls_server(ServerTls(data_dir, cfg()).context) as srv:
        assert handshake(ctx, srv.port, "box.mueller.example") == b"ok"  # a wildcard matches one label
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(ctx, srv.port, "a.box.mueller.example")
        assert handshake(ctx, srv.port, "127.0.0.1") == b"ok"


def test_legacy_des3_key_signs_and_imports(recipe, data_dir, tmp_path):
    """OpenSSL 1.1 wrote `genrsa -des3` keys as legacy DES-EDE3 PEM: they must load too."""
    openssl("genrsa", "-traditional", "-des3", "-passout", "pass:legacy", "-out", "legacy.key", "2048", cwd=tmp_path)
    assert b"Proc-Type: 4,ENCRYPTED" in (tmp_path / "legacy.key").read_bytes()
    assert cert_cli("make-cert", "--subject", "/CN=localhost", "--key", tmp_path / "legacy.key", "--key-password", "legacy",
                    "--out", tmp_path / "legacy.crt") == 0
    info = manage.import_server(data_dir, (tmp_path / "legacy.crt").read_bytes(), (tmp_path / "legacy.key").read_bytes(), "legacy")
    assert info["self_signed"] and info["san"] == ["DNS:localhost"]
    with pytest.raises(CertError, match="wrong password"):
        manage.import_server(data_dir, (tmp_path / "legacy.crt").read_bytes(), (tmp_path / "legacy.key").read_bytes(), "nope")


def test_same_config_for_root_and_client_is_explained(recipe, tmp_path):
    openssl("req", "-new", "-key", "client.key", "-out", str(tmp_path / "bad.csr"), "-config", "rootCA.cnf", "-utf8", cwd=recipe)
    openssl("x509", "-req", "-in", tmp_path / "bad.csr", "-CA", "rootCA.crt", "-CAkey", "rootCA.key", "-passin", f"pass:{ROOT_PW}",
            "-CAcreateserial", "-out", tmp_path / "bad.crt", "-days", "30", cwd=recipe)
    with pytest.raises(CertError, match="subject is the same as its issuer's.*self-signed"):
        manage.import_client(tmp_path, (tmp_path / "bad.crt").read_bytes(), (recipe / "client.key").read_bytes())


def test_our_certificates_pass_openssl(tmp_path, data_dir, cfg):
    """make-ca / make-cert / make-csr / sign, then openssl verify, s_client against the appliance's
    server, and the appliance's client against s_server."""
    d = tmp_path
    steps = [
        ("make-ca", "--subject", "/C=DE/O=Müller Ladetechnik GmbH/CN=Müller Root", "--ec", "--key-out", d / "ca.key",
         "--key-password", "capw", "--out", d / "ca.crt"),
        ("make-cert", "--subject", "/C=DE/L=Köln/O=Müller Ladetechnik GmbH/CN=ampgate", "--san", "DNS:localhost,IP:127.0.0.1",
         "--ca-cert", d / "ca.crt", "--ca-key", d / "ca.key", "--ca-key-password", "capw", "--key-out", d / "srv.key",
         "--out", d / "srv.crt"),
        ("make-csr", "--subject", "CN=CP1,O=Müller Ladetechnik GmbH,C=DE", "--key-out", d / "cp1.key", "--out", d / "cp1.csr"),
        ("sign", d / "cp1.csr", "--client", "--ca-cert", d / "ca.crt", "--ca-key", d / "ca.key", "--ca-key-password", "capw",
         "--out", d / "cp1.crt"),
    ]
    for step in steps:
        assert cert_cli(*step) == 0, step[0]
    assert oct((d / "srv.key").stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in (d / "ca.key").read_bytes()
    openssl("verify", "-CAfile", d / "ca.crt", d / "srv.crt", d / "cp1.crt")
    openssl("verify", "-CAfile", d / "ca.crt", "-purpose", "sslclient", d / "cp1.crt")
    openssl("verify", "-CAfile", d / "ca.crt", "-purpose", "sslserver", d / "srv.crt")
    openssl("req", "-in", d / "cp1.csr", "-noout", "-verify")
    subj = openssl("x509", "-in", d / "srv.crt", "-noout", "-subject", "-nameopt", "utf8").stdout.decode()
    assert "O=Müller Ladetechnik GmbH" in subj.replace(" = ", "=") and "Köln" in subj

    # the onboard certificate, pinned by s_client
    manage.ensure_onboard(data_dir)
    with tls_server(ServerTls(data_dir, cfg()).context) as srv:
        r = s_client(srv.port, "-CAfile", manage.server_path(data_dir), "-verify_return_error", "-verify_hostname", "localhost")
        assert r.returncode == 0 and b"Verify return code: 0 (ok)" in r.stdout, r.stderr
    # the imported CA-signed one, with a client certificate (Profile 3)
    manage.import_server(data_dir, (d / "srv.crt").read_bytes(), (d / "srv.key").read_bytes())
    manage.add_ca(data_dir, (d / "ca.crt").read_bytes())
    tls = ServerTls(data_dir, cfg("[ocpp_server]\nclient_certs = required\n"))
    with tls_server(tls.context) as srv:
        r = s_client(srv.port, "-CAfile", d / "ca.crt", "-verify_return_error", "-verify_ip", "127.0.0.1",
                     "-cert", d / "cp1.crt", "-key", d / "cp1.key")
        assert r.returncode == 0 and b"Verify return code: 0 (ok)" in r.stdout, r.stderr
    assert tls.check_peer("CP1", srv.peers[0]) is None

    # the appliance as a client (CA + client certificate) against s_server
    client_dir = tmp_path / "c"
    manage.add_ca(client_dir, (d / "ca.crt").read_bytes())
    manage.import_client(client_dir, (d / "cp1.crt").read_bytes(), (d / "cp1.key").read_bytes())
    with s_server("-cert", d / "srv.crt", "-key", d / "srv.key", "-Verify", "1", "-CAfile", d / "ca.crt",
                  "-verify_return_error") as (port, proc):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            with client_context(client_dir, cfg()).wrap_socket(raw, server_hostname="localhost") as t:
                t.sendall(b"hello\n")
        out = s_server_output(proc)
    assert re.search(r"subject=.*CN = CP1", out) and "verify error" not in out, out


@pytest.mark.parametrize("suite", ["AES128-GCM-SHA256", "AES256-GCM-SHA384"])
def test_rsa_key_exchange_suites_the_security_profiles_require(data_dir, cfg, suite):
    """A station offering only TLS_RSA_WITH_AES_*_GCM_SHA* (whitepaper, RSA certificates) gets in;
    stations offering ECDHE still get ECDHE first."""
    manage.ensure_onboard(data_dir)
    with tls_server(ServerTls(data_dir, cfg()).context) as srv:
        r = s_client(srv.port, "-tls1_2", "-cipher", suite)
        assert r.returncode == 0 and f"Cipher is {suite}".encode() in r.stdout, r.stderr
        r = s_client(srv.port, "-tls1_2")
        assert b"Cipher is ECDHE-RSA-AES256-GCM-SHA384" in r.stdout, r.stdout
