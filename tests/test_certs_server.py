"""Certificates at the real OCPP server: TLS detect with many plain and TLS stations at once, and
Security Profile 3 (client certificate signed by a trusted CA, CN = chargeBoxId)."""
import json
import ssl

import gevent
import pytest
import websocket

from appliance import config
from appliance.certs import manage
from appliance.certs.tls import ServerTls, client_context
from certkit import Pki
from conftest import wait_for

PLAIN = TLS = 50


def connect(url, ctx=None):
    return websocket.create_connection(url, timeout=15, subprotocols=["ocpp1.6"],
                                       sslopt={"context": ctx} if ctx else None)


def heartbeat(ws):
    ws.send(json.dumps([2, "hb", "Heartbeat", {}]))
    reply = json.loads(ws.recv())
    assert reply[0] == 3 and "currentTime" in reply[2]


def server_with_certs(central, tmp_path, server_conf):
    """The real server with ServerTls wired as `ampgate run` wires it; returns (cs, its data dir)."""
    data = tmp_path / "var"
    conf = tmp_path / "tls.conf"
    conf.write_text(f"[ocpp_server]\n{server_conf}\n", encoding="utf-8")
    tls = ServerTls(data, config.load(conf))
    return central(server=server_conf, tls_context=tls.context, check_peer=tls.check_peer), data


def pinned_client(tmp_path, server_data, name="client"):
    """A client store that trusts (pins) the server's onboard certificate."""
    d = tmp_path / name
    manage.ensure_onboard(server_data)
    manage.add_ca(d, manage.server_path(server_data).read_bytes())
    return d


def test_detect_serves_50_plain_and_50_tls_stations_at_once(central, tmp_path):
    cs, data = server_with_certs(central, tmp_path, "tls = detect")
    ctx = client_context(pinned_client(tmp_path, data), config.load(None))  # verifies the server, host 127.0.0.1
    jobs = [gevent.spawn(connect, cs.url(f"P{i}")) for i in range(PLAIN)]
    jobs += [gevent.spawn(connect, cs.url(f"T{i}", "wss"), ctx) for i in range(TLS)]
    gevent.joinall(jobs, timeout=60, raise_error=True)
    conns = [j.value for j in jobs]
    try:
        wait_for(lambda: len(cs.server.sessions) == PLAIN + TLS, timeout=30, what="100 sessions")
        sessions = cs.server.sessions
        assert sorted(cid for cid, s in sessions.items() if s.tls) == sorted(f"T{i}" for i in range(TLS))
        assert all(not sessions[f"P{i}"].tls for i in range(PLAIN))
        gevent.joinall([gevent.spawn(heartbeat, ws) for ws in conns], timeout=60, raise_error=True)
        assert len(cs.server.sessions) == PLAIN + TLS  # all still connected together
    finally:
        for ws in conns:
            ws.close()


@pytest.fixture
def profile3(central, tmp_path):
    """Server with tls = detect and client_certs = required, trusting root A; clients for CP1 from A and
    from a foreign root B."""
    cs, data = server_with_certs(central, tmp_path, "tls = detect\nclient_certs = required")
    a, b = Pki("Site Root A"), Pki("Foreign Root B")
    manage.add_ca(data, a.pem)
    cfg = config.load(None)

    def client(pki, cn, name):
        d = pinned_client(tmp_path, data, name)
        if pki:
            manage.import_client(d, *pki.leaf(cn, usage="client", san=None))
        return client_context(d, cfg)
    return cs, {"good": client(a, "CP1", "good"), "foreign": client(b, "CP1", "foreign"), "none": client(None, "", "none")}


def test_profile3_client_certificate_with_matching_cn_accepted(profile3):
    cs, ctx = profile3
    ws = connect(cs.url("CP1", "wss"), ctx["good"])
    try:
        heartbeat(ws)
        assert cs.server.sessions["CP1"].tls
    finally:
        ws.close()


def test_profile3_refusals(profile3):
    cs, ctx = profile3
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        connect(cs.url("CP2", "wss"), ctx["good"])  # CN CP1 is not the chargeBoxId CP2
    assert e.value.status_code == 403
    with pytest.raises((ssl.SSLError, ConnectionError, websocket.WebSocketException)):
        connect(cs.url("CP1", "wss"), ctx["none"])  # no client certificate
    with pytest.raises((ssl.SSLError, ConnectionError, websocket.WebSocketException)):
        connect(cs.url("CP1", "wss"), ctx["foreign"])  # signed by an untrusted CA
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        connect(cs.url("CP1"))  # plain ws next to wss in detect mode
    assert e.value.status_code == 403
    assert cs.server.sessions == {}
    ws = connect(cs.url("CP1", "wss"), ctx["good"])  # and the server still serves the right station
    ws.close()
