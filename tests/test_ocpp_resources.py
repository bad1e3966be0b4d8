"""What thousands of stations and one hostile LAN host cost the OCPP port: memory left behind by a
disconnect, connection limits, the whole-handshake deadline, ping phases, garbage collection."""
import gc
import json
import socket

import gevent
import pytest
import websocket

from appliance import gcpause
from appliance.ocpp.rpc import RpcEndpoint
from appliance.ocpp.session import StationSession
from appliance.ocpp.websocket import OcppWebSocket
from conftest import wait_for

BOOT = json.dumps([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}])


def station(url: str, source: str = "127.0.0.1") -> websocket.WebSocket:
    """A booted station connecting from `source` (any 127.x address is this machine)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", int(url.split(":")[2].split("/")[0])))
    ws = websocket.create_connection(url, timeout=5, subprotocols=["ocpp1.6"], socket=sock)
    ws.send(BOOT)
    assert json.loads(ws.recv())[2]["status"] == "Accepted"
    return ws


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_a_disconnected_station_leaves_no_reference_cycle(central):
    """Its objects are freed at once by reference counting: the collector (which may never look
    at them again once they are frozen) is not needed to reclaim a connection."""
    cs = central(server="ping_interval = 0")
    for n in range(3):
        station(cs.url(f"GONE{n}")).close()
    wait_for(lambda: not cs.server.sessions, what="the sessions to end")
    gevent.sleep(0.1)   # let the connection greenlets finish
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, (StationSession, RpcEndpoint, OcppWebSocket))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


def test_the_handshake_deadline_is_for_the_whole_handshake(central):
    """A client trickling its request one byte at a time (each byte within the per-read timeout)
    is cut at the deadline; a station after it still gets in."""
    cs = central(server="handshake_timeout = 1")
    request = ("GET /SLOW HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Protocol: ocpp1.6\r\n" + "X-Pad: y\r\n" * 20 + "\r\n").encode()
    slow = socket.create_connection(("127.0.0.1", cs.port))
    slow.settimeout(0.3)
    sent = 0
    cut = False
    for byte in request[:-2]:   # never complete: ~10 s of trickling at most
        try:
            slow.send(bytes([byte]))
            sent += 1
            cut = closed_by_server(slow)
        except socket.timeout:
            continue
        except OSError:
            cut = True
        if cut:
            break
    slow.close()
    assert cut and sent < len(request) - 2
    station(cs.url("AFTER")).close()


def test_connections_per_address_are_capped_and_others_still_get_in(central):
    cs = central(server="max_connections_per_address = 3")
    held = [socket.create_connection(("127.0.0.1", cs.port)) for _ in range(3)]   # idle, handshaking
    fourth = socket.create_connection(("127.0.0.1", cs.port))
    fourth.settimeout(5)
    assert closed_by_server(fourth)
    other = station(cs.url("ELSEWHERE"), source="127.0.0.2")   # another address is not affected
    other.close()
    for s in held + [fourth]:
        s.close()
    wait_for(lambda: not cs.server.guard.limits.open.get("127.0.0.1"), what="the held connections to be let go")
    station(cs.url("BACK")).close()


def test_pings_keep_a_phase_picked_at_random_per_station(central):
    cs = central(server="ping_interval = 60")
    clients = [station(cs.url(f"P{n}")) for n in range(12)]
    wait_for(lambda: len(cs.server.sessions) == 12, what="12 sessions")
    phases = sorted(s.last_ping % 60 for s in cs.server.sessions.values())
    assert phases[-1] - phases[0] > 10     # not one burst: 12 uniform phases span ~55 s
    for c in clients:
        c.close()


@pytest.fixture
def gc_restored():
    threshold = gc.get_threshold()
    yield
    gcpause.stop()
    gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.callbacks[:] = [cb for cb in gc.callbacks if cb != gcpause.pauses.callback]


def test_start_up_is_frozen_and_each_pass_freezes_what_is_new(gc_restored):
    gcpause.tune()
    assert gc.get_freeze_count() > 1000 and gc.get_threshold()[0] == gcpause.YOUNG
    frozen = gc.get_freeze_count()
    keep = [[n] for n in range(5000)]              # survivors of the next pass
    last = gcpause.keep_once((float("inf"), frozen))
    assert gc.get_freeze_count() >= frozen + 5000 and last == (float("inf"), frozen)
    assert gcpause.pauses.total >= 1 and "longest" in gcpause.pauses.summary()
    del keep


def test_a_complete_pass_runs_only_when_due_and_the_frozen_set_grew(gc_restored):
    gcpause.tune()
    frozen = gc.get_freeze_count()
    keep = [[n] for n in range(frozen)]
    gcpause.keep_once((float("inf"), frozen))       # not due: an ordinary pass
    when, count = gcpause.keep_once((-gcpause.COMPLETE_S, frozen))   # due, and grown: complete
    assert count >= 2 * frozen - 100 and when > 0
    del keep


def test_unknown_stations_are_bounded_and_forgotten_after_they_leave(monkeypatch):
    from appliance.ocpp import stations as stations_mod

    monkeypatch.setattr(stations_mod, "LISTED_MAX", 3)
    registry = stations_mod.Stations(None, {}, voltage=lambda: 230.0, limits_changed=lambda: None)
    for n in range(3):
        registry.note_unconfigured(f"U{n}", connected=True)
    registry.note_unconfigured("U3", connected=True)     # full of connected ones: not listed
    assert sorted(registry.unconfigured) == ["U0", "U1", "U2"] and len(registry.unconfigured) == 3
    registry.left(registry.get("U1"))
    registry.note_unconfigured("U3", connected=True)     # the one that left makes room
    assert sorted(registry.unconfigured) == ["U0", "U2", "U3"] and registry.find("U1") is None
    monkeypatch.setattr(stations_mod, "LISTED_KEEP_S", 0.0)
    registry.left(registry.get("U0"))
    assert sorted(registry.unconfigured) == ["U2", "U3"] and registry.find("U0") is None


def test_a_departed_unknown_station_leaves_the_status(central, monkeypatch):
    from appliance.ocpp import stations as stations_mod

    monkeypatch.setattr(stations_mod, "LISTED_KEEP_S", 0.0)
    cs = central()
    ws = station(cs.url("PASSING"))
    assert [u["charge_box_id"] for u in cs.runtime.status()["unconfigured"]] == ["PASSING"]
    ws.close()
    wait_for(lambda: not cs.runtime.status()["unconfigured"], what="the unknown station to be forgotten")
    assert cs.runtime.stations.find("PASSING") is None
