"""The stations' OCPP 1.6J endpoint: ws(s)://HOST:19520/<chargeBoxId>.

One pywsgi server; TLS `off`, `on`, or `detect` (ws and wss on one port: the first byte of a TLS
connection is a handshake record, 0x16). Every station check happens before the 101. A reconnect
with the same chargeBoxId replaces the old connection (stations reconnect before we notice the old
link died). One sweep greenlet pings and closes idle connections for all stations.
"""
from __future__ import annotations

import hmac
import logging
import random
import socket
import ssl
import time
from typing import Any, Callable

import gevent
from gevent.pywsgi import WSGIServer

from appliance.netguard import fd_budget
from appliance.ocpp.guard import Guard, HandshakeDeadline
from appliance.ocpp.session import StationSession
from appliance.ocpp.websocket import OcppHandler, basic_credentials
from appliance.throttle import FailureThrottle

log = logging.getLogger("ampgate.ocpp")
TLS_HANDSHAKE_RECORD = b"\x16"
SWEEP_S = 1.0    # idle check and ping turn, this often
BACKLOG = 4096   # connections the kernel queues for us (capped by net.core.somaxconn): a reconnect
                 # storm of a thousand stations must not overflow it (128 did)


def password_matches(configured: str, given: bytes | None) -> bool:
    """Accept the configured value literally; when it is 32-40 hex digits (a 16-20 byte
    AuthorizationKey), also its raw bytes and its hex text in any case (ocpp16.md §2)."""
    if given is None:
        return False
    want = configured.encode("utf-8")
    ok = hmac.compare_digest(given, want)
    text = configured.strip()
    if 32 <= len(text) <= 40 and len(text) % 2 == 0:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
        if raw is not None:
            ok |= hmac.compare_digest(given, raw)
            ok |= hmac.compare_digest(given.lower(), text.lower().encode())
    return ok


class DetectingServer(WSGIServer):
    """A WSGIServer that decides per connection whether to speak TLS.

    mode "off": plain only; "on": TLS only (a plain request is closed); "detect": both.
    The TLS context is fetched per connection, so an imported certificate applies without restart.
    With a `guard`, every connection is admitted by it first and its handshake has one deadline.
    """

    def __init__(self, listener: Any, application: Any, mode: str,
                 tls_context: Callable[[], ssl.SSLContext] | None, first_byte_timeout: float = 10.0,
                 guard: Guard | None = None, **kw: Any):
        super().__init__(listener, application, **kw)
        self.mode = mode
        self.tls_context = tls_context
        self.first_byte_timeout = first_byte_timeout
        self.guard = guard

    def handle(self, sock: socket.socket, address: Any) -> None:
        handshake = None
        if self.guard is not None:
            handshake = self.guard.admit(address[0])
            if handshake is None:
                sock.close()
                return
        try:
            if handshake is not None:
                handshake.begin()
            sock = self._negotiate(sock, address)
            if sock is not None:
                handler = self.handler_class(sock, address, self)
                handler.handshake = handshake
                handler.handle()
        finally:
            if handshake is not None:
                self.guard.leave(handshake)

    def _negotiate(self, sock: socket.socket, address: Any) -> socket.socket | None:
        """The socket to speak HTTP on (TLS-wrapped or not), or None when it was closed."""
        if self.mode == "off":
            return sock
        sock.settimeout(self.first_byte_timeout)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if not first:
                sock.close()
                return None
            if first == TLS_HANDSHAKE_RECORD:
                if self.guard is None:
                    return self.tls_context().wrap_socket(sock, server_side=True)
                tls = self.tls_context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                self.guard.tls_handshake(tls)
                return tls
            if self.mode == "on":
                log.info("%s: plain connection refused (TLS is on)", address[0])
                sock.close()
                return None
            return sock
        except HandshakeDeadline:   # logged by the guard, once a minute per address
            sock.close()
        except (OSError, ValueError) as e:   # timeouts and ssl.SSLError included
            log.info("%s: TLS handshake failed: %s", address[0], e)
            sock.close()
        return None


class OcppServer:
    """Accepts stations, keeps one live session per chargeBoxId, sweeps idle ones."""

    def __init__(self, runtime: Any, tls_context: Callable[[], ssl.SSLContext] | None = None,
                 check_peer: Callable[[str, dict | None], str | None] | None = None):
        from appliance.ocpp.central import CentralSystem

        self.runtime = runtime
        self.central = CentralSystem(runtime, self)
        self.sessions: dict[str, StationSession] = {}
        self.tls_context = tls_context
        self.check_peer = check_peer
        self.server: DetectingServer | None = None
        self.guard: Guard | None = None
        self._sweeper: gevent.Greenlet | None = None
        self.guessing = FailureThrottle()     # wrong passwords per station address

    @property
    def cfg(self) -> dict[str, Any]:
        """Read live: password, client certificates, timeouts and ping apply without a restart
        (port, bind, TLS mode, handshake timeout and frame size are fixed when the server starts)."""
        return self.runtime.config.section("ocpp_server")

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        handler = type("Handler", (OcppHandler,), {
            "gate": staticmethod(self.gate),
            "handshake_timeout": cfg["handshake_timeout"],
            "max_message": cfg["max_message_bytes"],
        })
        self.guard = Guard(fd_budget().ocpp, cfg["max_connections_per_address"], cfg["handshake_timeout"])
        self.server = DetectingServer((cfg["bind"], cfg["port"]), self.wsgi, cfg["tls"], self.tls_context,
                                      first_byte_timeout=cfg["handshake_timeout"], guard=self.guard,
                                      handler_class=handler, backlog=BACKLOG, log=None,
                                      error_log=logging.getLogger("ampgate.ocpp.http"))
        self.server.start()
        self._sweeper = gevent.spawn(self._sweep)
        scheme = {"off": "ws", "on": "wss", "detect": "ws+wss"}[cfg["tls"]]
        self.runtime.listeners.append(f"ocpp {scheme}://{cfg['bind']}:{self.port}/")
        log.info("OCPP 1.6J server listening on %s://%s:%s/<chargeBoxId>%s", scheme, cfg["bind"], self.port,
                 " (password required)" if cfg["password"] else "")

    @property
    def port(self) -> int:
        return self.server.server_port if self.server else self.cfg["port"]

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.kill()
        for s in list(self.sessions.values()):
            s.close(1001, "server shutting down")
        if self.server is not None:
            self.server.stop(timeout=2)

    # -- before the 101 ---------------------------------------------------------------------------
    def gate(self, cpid: str, env: dict) -> str | None:
        cfg = self.cfg
        peer = env.get("REMOTE_ADDR", "?")
        if not cpid or ":" in cpid:
            log.info("%s: refused: no usable chargeBoxId in path %r", peer, env.get("PATH_INFO"))
            return "404 Not Found"
        if cfg["client_certs"] == "required":
            if not env.get("ocpp.tls"):
                log.info("%s (%s): refused: a client certificate is required (plain ws)", cpid, peer)
                return "403 Forbidden"
            if self.check_peer is not None:
                problem = self.check_peer(cpid, env.get("ocpp.peercert"))
                if problem:
                    log.info("%s (%s): refused: %s", cpid, peer, problem)
                    return "403 Forbidden"
        wanted = self.passwords_for(cpid)
        if wanted:
            return self._check_password(cpid, peer, env, wanted)
        return None

    def passwords_for(self, cpid: str) -> list[str]:
        """A station's own `ocpp_password` (devices of that chargeBoxId) replaces the shared one: with
        one shared password, whoever has it could connect as any chargeBoxId."""
        sections = self.runtime.config.data["devices"].values()   # read in place: every handshake asks
        own = [d["ocpp_password"] for d in sections
               if d["type"] == "ocpp16" and d["address"] == cpid and d["ocpp_password"]]
        return own or ([self.cfg["password"]] if self.cfg["password"] else [])

    def _check_password(self, cpid: str, peer: str, env: dict, wanted: list[str]) -> str | None:
        if self.guessing.wait_s(peer) > 0:    # answered without looking: guessing costs the guesser time
            return "429 Too Many Requests"
        user, password = basic_credentials(env)
        if user == cpid and any(password_matches(w, password) for w in wanted):
            self.guessing.succeeded(peer)
            return None
        self.guessing.failed(peer)
        if self.guessing.failures(peer) <= self.guessing.free + 1:   # the rest would only flood the log
            log.info("%s (%s): refused: %s%s", cpid, peer, "no password given" if user is None else
                     "wrong user or password", "; this address now waits before each further try"
                     if self.guessing.failures(peer) > self.guessing.free else "")
        return "401 Unauthorized"

    # -- after the 101 ----------------------------------------------------------------------------
    def wsgi(self, environ: dict, start_response: Callable) -> list[bytes]:
        ws = environ.get("wsgi.websocket")
        if ws is None:
            start_response("426 Upgrade Required", [("Content-Type", "text/plain")])
            return [b"OCPP 1.6J endpoint: connect with a websocket to /<chargeBoxId>\n"]
        cpid = environ["ocpp.charge_box_id"]
        if environ.get("ocpp.subprotocol") is None:
            log.info("%s: closed: it did not offer subprotocol ocpp1.6 (offered %r)", cpid,
                     environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", ""))
            ws.close(1002, "subprotocol ocpp1.6 required")
            return []
        session = StationSession(cpid, ws, environ, self.cfg["call_timeout"])
        session.last_ping -= random.random() * self.cfg["ping_interval"]   # first ping at a random moment
        self._register(session)
        try:
            self.central.attach(session)
            session.run()
        finally:
            self._unregister(session)
        return []

    def _register(self, session: StationSession) -> None:
        old = self.sessions.get(session.cpid)
        self.sessions[session.cpid] = session
        if old is not None:
            log.info("%s: reconnected; the older connection is closed", session.cpid)
            old.close(1008, "replaced by a newer connection")

    def _unregister(self, session: StationSession) -> None:
        session.endpoint.release()
        if self.sessions.get(session.cpid) is session:
            del self.sessions[session.cpid]
            self.central.detach(session)
        log.info("%s: disconnected (%s)", session.cpid, session.close_text())

    def session(self, cpid: str) -> StationSession | None:
        return self.sessions.get(cpid)

    # -- liveness ---------------------------------------------------------------------------------
    def _sweep(self) -> None:
        """Once a second: close idle connections, ping those whose turn it is. Each station's
        pings keep the phase it got at random when it connected (see wsgi), so 10,000 stations
        are pinged a few hundred a second, not all at the same moment."""
        while True:
            cfg = self.cfg
            idle, ping = cfg["idle_timeout"], cfg["ping_interval"]
            gevent.sleep(SWEEP_S)
            now = time.monotonic()
            for s in list(self.sessions.values()):
                quiet = now - s.ws.last_rx
                if quiet > idle:
                    log.info("%s: closed after %.0f s without any frame", s.cpid, quiet)
                    s.close(1001, "idle timeout")
                elif ping and now - s.last_ping >= ping:
                    s.last_ping += ping * ((now - s.last_ping) // ping)   # keeps the phase
                    gevent.spawn(s.ping)


def start(runtime: Any) -> OcppServer:
    """STARTERS entry for `ampgate run`."""
    tls_mode = runtime.config.section("ocpp_server")["tls"]
    tls_context = check_peer = None
    if tls_mode != "off" or runtime.config.section("ocpp_server")["client_certs"] != "off":
        from appliance.certs.tls import ServerTls

        server_tls = ServerTls(runtime.data_dir, runtime.config)
        tls_context, check_peer = server_tls.context, server_tls.check_peer
        if tls_mode != "off":
            tls_context()   # make the onboard certificate now, not on the first station
    server = OcppServer(runtime, tls_context, check_peer)
    server.start()
    runtime.ocpp = server
    return server
