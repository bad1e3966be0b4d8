"""Interop: a wallbox built with the `ocpp` package from PyPI boots, starts and stops a
transaction against our central system, plain and over TLS."""
import json
import sys

import gevent
import pytest
from gevent.subprocess import PIPE, Popen

from conftest import ROOT, wait_for

PEER = ROOT / "tests" / "peers" / "ocpp_pkg_wallbox.py"
CONF = "[devices]\n[[garage]]\ntype = ocpp16\naddress = PYPI1\n"


class Peer:
    """The ocpp-package wallbox in its own process, driven line by line."""

    def __init__(self, url: str, *extra: str):
        self.proc = Popen([sys.executable, str(PEER), url, *extra], stdin=PIPE, stdout=PIPE, text=True, bufsize=1)
        self.events: list[dict] = []
        self._reader = gevent.spawn(self._read)

    def _read(self):
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_event(self, name: str, timeout: float = 15) -> dict:
        return wait_for(lambda: next((e for e in self.events if e["event"] == name), None), timeout, what=name)

    def close(self) -> None:
        try:
            self.send("quit")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


def run_session(cs, url: str, *extra: str) -> None:
    peer = Peer(url, *extra)
    try:
        assert peer.wait_event("connected")["subprotocol"] == "ocpp1.6"
        peer.send("boot")
        assert peer.wait_event("boot")["status"] == "Accepted"
        # our baseline: the box must not charge until load management allows it
        assert peer.wait_event("limit")["limit"] == 0.0
        peer.send("start TAG1")
        started = peer.wait_event("started")
        assert started["status"] == "Accepted" and started["transaction_id"] == 1
        peer.send("meter 12.5")
        peer.wait_event("meter")
        dev = cs.runtime.devices["garage"]
        wait_for(lambda: dev.currents == (12.5, 12.5, 12.5), what="currents from MeterValues")
        peer.send("stop")
        peer.wait_event("stopped")
        tx = cs.runtime.store.get_transaction(1)
        assert tx["state"] == "stopped" and tx["id_tag"] == "TAG1" and tx["meter_start"] == 1000
        assert tx["meter_stop"] == 2000 and tx["device"] == "garage"
        assert len(cs.runtime.store.meter_values(1)) == 4
    finally:
        peer.close()


def test_ocpp_package_wallbox_plain(central):
    cs = central(CONF)
    run_session(cs, cs.url("PYPI1"))


@pytest.mark.parametrize("mode", ["on", "detect"])
def test_ocpp_package_wallbox_over_tls(central, tmp_path, mode):
    """wss with the onboard certificate, verified by the peer against it (host name included)."""
    from appliance import config
    from appliance.certs import manage
    from appliance.certs.tls import ServerTls

    data = tmp_path / "var"
    manage.ensure_onboard(data)
    server_tls = ServerTls(data, config.load(None))
    cs = central(CONF, server=f"tls = {mode}", tls_context=server_tls.context, check_peer=server_tls.check_peer)
    run_session(cs, cs.url("PYPI1", "wss"), "--ca", str(manage.server_path(data)))
