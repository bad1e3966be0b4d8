"""OCPP passwords: a guessing address is slowed down while every other station gets in, and a station
can have a password of its own that the shared one does not replace. Real server, real handshakes
from several loopback addresses (127.0.0.2 stands for another host on the LAN)."""
import base64
import json
import socket

from appliance.ocpp.client import basic_auth_header
from appliance.sim.ocpp_wallbox import SimWallbox
from appliance.throttle import FREE_FAILURES
from conftest import wait_for

GUESSER = "127.0.0.2"
SITE = """[devices]
[[bay1]]
type = ocpp16
address = CP1
ocpp_password = own-secret-1
[[bay1b]]
type = ocpp16
address = CP1
connector = 2
ocpp_password = own-secret-1
[[bay2]]
type = ocpp16
address = CP2
"""


def handshake(port: int, cpid: str, password: str | None, source: str = "127.0.0.1") -> int:
    """The HTTP status a websocket handshake gets (101 = accepted)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    try:
        auth = f"Authorization: {basic_auth_header(cpid, password)}\r\n" if password is not None else ""
        s.sendall((f"GET /{cpid} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Protocol: ocpp1.6\r\n{auth}\r\n").encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1])
    finally:
        s.close()


def test_a_guessing_address_waits_while_stations_elsewhere_get_in(central):
    cs = central(SITE, server='password = "shared-secret"')
    for i in range(FREE_FAILURES + 1):
        assert handshake(cs.port, "CP2", f"guess-{i}", GUESSER) == 401
    # now even the right password from there waits: the guesser learns nothing and costs nothing
    assert handshake(cs.port, "CP2", "shared-secret", GUESSER) == 429
    assert handshake(cs.port, "CP2", "guess-x", GUESSER) == 429
    # every station at another address is not affected
    assert handshake(cs.port, "CP2", "shared-secret") == 101
    box = SimWallbox(cs.url("CP2"), password="shared-secret", meter_interval=3600)
    box.connect()
    assert "currentTime" in box.client.call("Heartbeat", {})
    box.close()
    # and the waiting address gets in again once its wait is over: delayed, never locked out
    wait_for(lambda: handshake(cs.port, "CP2", "shared-secret", GUESSER) == 101, 10,
             what="the right password accepted again from the address that guessed")


def test_a_station_password_of_its_own_is_not_replaced_by_the_shared_one(central):
    cs = central(SITE, server='password = "shared-secret"')
    assert handshake(cs.port, "CP1", "shared-secret") == 401        # the shared one no longer opens CP1
    assert handshake(cs.port, "CP1", None) == 401
    assert handshake(cs.port, "CP2", "own-secret-1") == 401         # nor does CP1's open another id
    assert handshake(cs.port, "NEW-BOX", "shared-secret") == 101    # unconfigured: shared (so it can be adopted)
    box = SimWallbox(cs.url("CP1"), connectors=2, password="own-secret-1", meter_interval=3600)
    box.connect()
    box.start(1)
    wait_for(lambda: cs.runtime.devices["bay1"].tx_id is not None, what="CP1's transaction")
    box.close()


def test_a_station_password_works_without_a_shared_one_and_changes_live(central):
    cs = central(SITE)
    assert handshake(cs.port, "CP2", None) == 101                   # no password anywhere: open as before
    assert handshake(cs.port, "CP1", None) == 401
    assert handshake(cs.port, "CP1", "own-secret-1") == 101
    text = cs.runtime.config.path.read_text().replace("own-secret-1", "renewed-2")
    cs.runtime.config.path.write_text(text)
    cs.runtime.config.refresh()
    assert handshake(cs.port, "CP1", "own-secret-1") == 401
    assert handshake(cs.port, "CP1", "renewed-2") == 101


def test_the_station_password_is_never_shown(central):
    from appliance.webapp.fields import public_values

    cs = central(SITE)
    shown = json.dumps(public_values(cs.runtime.config.devices()["bay1"]))
    assert "own-secret-1" not in shown and '"ocpp_password_set": true' in shown
    assert base64.b64encode(b"own-secret-1").decode() not in shown


def test_a_wallbox_built_with_the_ocpp_package_gets_in_with_its_own_password(central):
    """Interop: the `ocpp` package's wallbox over the `websockets` client, credentials in the URL."""
    from test_ocpp_interop import run_session

    conf = "[devices]\n[[garage]]\ntype = ocpp16\naddress = PYPI1\nocpp_password = pypi-own-secret\n"
    cs = central(conf, server='password = "shared-secret"')
    assert handshake(cs.port, "PYPI1", "shared-secret") == 401
    run_session(cs, f"ws://PYPI1:pypi-own-secret@127.0.0.1:{cs.port}/PYPI1")
