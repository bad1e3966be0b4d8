"""Real TLS handshakes for every profile: the server context from ServerTls, the outbound context from
client_context, both built from certificate stores on disk."""
import ssl

import pytest

from appliance import config
from appliance.certs import manage
from appliance.certs.manage import CertError
from appliance.certs.pem import key_pem, load_private_key
from appliance.certs.tls import ServerTls, client_context, peer_common_name
from certkit import Pki, handshake, tls_server


@pytest.fixture(scope="module")
def pki_a():
    return Pki("Root A")


@pytest.fixture(scope="module")
def pki_b():
    return Pki("Root B")


@pytest.fixture
def client_dir(tmp_path):
    d = tmp_path / "client"
    d.mkdir()
    return d


def cfg(conf_file, text=""):
    return config.load(conf_file(text))


def test_no_ca_connects_to_any_server(data_dir, client_dir, conf_file):
    c = cfg(conf_file)
    ctx = client_context(client_dir, c)
    assert ctx.verify_mode == ssl.CERT_NONE
    with tls_server(ServerTls(data_dir, c).context) as srv:  # the onboard self-signed certificate
        assert handshake(ctx, srv.port) == b"ok"
        assert manage.show(data_dir)["onboard"] is True


def test_ca_configured_verifies_chain_and_host_name(data_dir, client_dir, conf_file, pki_a, pki_b):
    c = cfg(conf_file)
    manage.import_server(data_dir, *pki_a.leaf("localhost"))
    manage.add_ca(client_dir, pki_a.pem)
    ctx = client_context(client_dir, c)
    with tls_server(ServerTls(data_dir, c).context) as srv:
        assert handshake(ctx, srv.port, "localhost") == b"ok"
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            handshake(ctx, srv.port, "ampgate.example")
        # the server's certificate is signed by a CA the client does not trust
        other = client_dir / "other"
        manage.add_ca(other, pki_b.pem)
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            handshake(client_context(other, c), srv.port, "localhost")


def test_pinning_self_signed_and_ca_signed_leaf(data_dir, client_dir, conf_file, pki_a):
    c = cfg(conf_file)
    tls = ServerTls(data_dir, c)
    with tls_server(tls.context) as srv:
        manage.ensure_onboard(data_dir)
        manage.add_ca(client_dir, manage.server_path(data_dir).read_bytes())  # pin the onboard cert
        assert handshake(client_context(client_dir, c), srv.port, "localhost") == b"ok"
        # a CA-signed leaf pinned without its CA needs partial-chain verification
        cert, key = pki_a.leaf("localhost")
        manage.import_server(data_dir, cert, key)
        pinned = client_dir / "pinned"
        manage.add_ca(pinned, cert)
        assert handshake(client_context(pinned, c), srv.port, "localhost") == b"ok"
        # the old pin no longer matches the new certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(client_context(client_dir, c), srv.port, "localhost")


def _profile3(data_dir, conf_file, pki, extra=""):
    c = cfg(conf_file, "[ocpp_server]\nclient_certs = required\n" + extra)
    manage.add_ca(data_dir, pki.pem)
    return c, ServerTls(data_dir, c)


def test_client_certificate_accepted_and_cn_checked(data_dir, client_dir, conf_file, pki_a):
    c, tls = _profile3(data_dir, conf_file, pki_a)
    manage.import_client(client_dir, *pki_a.leaf("CP1", usage="client", san=None))
    with tls_server(tls.context) as srv:
        assert handshake(client_context(client_dir, c), srv.port) == b"ok"
    peer = srv.peers[-1]
    assert peer_common_name(peer) == "CP1"
    assert tls.check_peer("CP1", peer) is None
    assert tls.check_peer("CP2", peer) == "client certificate CN 'CP1' is not the chargeBoxId 'CP2'"
    assert "no client certificate" in tls.check_peer("CP1", None)  # plain ws next to wss (tls = detect)


def test_cn_match_can_be_switched_off(data_dir, conf_file, pki_a):
    _, tls = _profile3(data_dir, conf_file, pki_a, "[certs]\nrequire_cn_match = false\n")
    assert tls.check_peer("CP2", {"subject": ((("commonName", "CP1"),),)}) is None
    assert tls.check_peer("CP2", None) is not None


def test_certificate_without_cn_is_refused_when_cn_must_match(data_dir, conf_file, pki_a):
    _, tls = _profile3(data_dir, conf_file, pki_a)
    assert "has no CN" in tls.check_peer("CP1", {"subject": ((("organizationName", "X"),),)})


def test_missing_or_foreign_client_certificate_refused(data_dir, client_dir, conf_file, pki_a, pki_b):
    c, tls = _profile3(data_dir, conf_file, pki_a)
    with tls_server(tls.context) as srv:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(client_context(client_dir, c), srv.port)  # no client certificate
        manage.import_client(client_dir, *pki_b.leaf("CP1", usage="client", san=None))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(client_context(client_dir, c), srv.port)  # signed by a CA the server does not trust
    assert len(srv.errors) == 2 and srv.peers == []
    assert "certificate" in srv.errors[0] and "certificate verify failed" in srv.errors[1]


def test_profile3_without_trusted_ca_refuses_everyone(data_dir, client_dir, conf_file, pki_a):
    c = cfg(conf_file, "[ocpp_server]\nclient_certs = required\n")
    manage.import_client(client_dir, *pki_a.leaf("CP1", usage="client", san=None))
    with tls_server(ServerTls(data_dir, c).context) as srv:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(client_context(client_dir, c), srv.port)


def test_import_applies_without_restart_and_a_broken_file_keeps_the_old_context(data_dir, client_dir, conf_file, pki_a,
                                                                                    caplog):
    c = cfg(conf_file)
    tls = ServerTls(data_dir, c)
    manage.add_ca(client_dir, pki_a.pem)
    ctx = client_context(client_dir, c)
    with tls_server(tls.context) as srv:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(ctx, srv.port)  # the onboard certificate is not signed by A
        first = tls.context()
        assert tls.context() is first  # unchanged files: the cached context
        manage.import_server(data_dir, *pki_a.leaf("localhost"))
        assert handshake(ctx, srv.port) == b"ok"
        manage.server_path(data_dir).write_bytes(b"garbage")  # damaged behind our back
        assert handshake(ctx, srv.port) == b"ok"
        assert handshake(ctx, srv.port) == b"ok"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "keeping the previous server certificate" in errors[0]  # one line, not one per station


def test_settings_change_rebuilds_context(data_dir, conf_file, pki_a):
    c = cfg(conf_file)
    tls = ServerTls(data_dir, c)
    assert tls.context().verify_mode == ssl.CERT_NONE
    manage.add_ca(data_dir, pki_a.pem)
    c.update_section("ocpp_server", {"client_certs": "required"})
    ctx = tls.context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not ctx.verify_flags & ssl.VERIFY_X509_STRICT and ctx.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN


def test_encrypted_key_on_disk_uses_configured_password(data_dir, conf_file, pki_a):
    cert, key = pki_a.leaf("localhost")
    encrypted = key_pem(load_private_key(key), "s3cret")
    manage.certs_dir(data_dir).mkdir()
    manage.server_path(data_dir).write_bytes(encrypted + cert)
    assert ServerTls(data_dir, cfg(conf_file, "[certs]\nkey_password = s3cret\n")).context()
    with pytest.raises(CertError, match="cannot load the server certificate"):
        ServerTls(data_dir, cfg(conf_file, "[certs]\nkey_password = wrong\n")).context()
    with pytest.raises(CertError, match="cannot load the server certificate"):
        ServerTls(data_dir, cfg(conf_file)).context()  # no password: an error, never a terminal prompt


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_below_1_2_refused(data_dir, conf_file):
    c = cfg(conf_file)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with tls_server(ServerTls(data_dir, c).context) as srv:
        with pytest.raises(ssl.SSLError):
            handshake(old, srv.port)
