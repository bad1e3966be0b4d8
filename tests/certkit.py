"""Helpers for the certificate tests: real keys and certificates, a real TLS server in a greenlet, and the
openssl CLI driven as a subprocess on 127.0.0.1 free ports with timeouts."""
from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import gevent
from gevent.server import StreamServer

from appliance.certs import issue
from appliance.certs.pem import cert_pem, key_pem
from conftest import free_port

OPENSSL = "/usr/bin/openssl"
TIMEOUT = 15
# Key generation (genrsa 4096 in the seed's recipe) searches random primes: seconds when the machine is
# idle, far longer on a busy one. The bound is only there to catch a hang.
KEYGEN_TIMEOUT = 180


class Pki:
    """A CA and leaves made with appliance.certs.issue (EC keys where size does not matter: fast)."""

    def __init__(self, name: str, kind: str = "ec"):
        self.key = issue.new_key(kind)
        self.cert = issue.make_ca(issue.parse_subject(f"/O=Test/CN={name}"), self.key, 90)

    def leaf(self, cn: str, usage: str = "server", san: str | None = "DNS:localhost,IP:127.0.0.1",
             kind: str = "ec", days: int = 90) -> tuple[bytes, bytes]:
        key = issue.new_key(kind)
        cert = issue.issue_cert(issue.parse_subject(f"/O=Test/CN={cn}"), key.public_key(), issue.parse_san(san),
                                days, usage, self.key, self.cert)
        return cert_pem(cert), key_pem(key)

    @property
    def pem(self) -> bytes:
        return cert_pem(self.cert)


def write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


class TlsServer:
    """Accepts on 127.0.0.1, wraps each connection with the context the provider returns at that moment
    (as the OCPP server will), records the peer certificate or the handshake error, answers b'ok'."""

    def __init__(self, context: Callable[[], ssl.SSLContext]):
        self.context = context
        self.peers: list[dict | None] = []
        self.errors: list[str] = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: socket.socket, _addr: tuple) -> None:
        sock.settimeout(TIMEOUT)
        try:
            tls = self.context().wrap_socket(sock, server_side=True)
            self.peers.append(tls.getpeercert())
            tls.sendall(b"ok")
            tls.recv(1)
            tls.close()
        except (OSError, ssl.SSLError) as e:
            self.errors.append(str(e))
            sock.close()

    def stop(self) -> None:
        self.server.stop()


@contextlib.contextmanager
def tls_server(context: Callable[[], ssl.SSLContext]) -> Iterator[TlsServer]:
    s = TlsServer(context)
    try:
        yield s
    finally:
        s.stop()


def handshake(ctx: ssl.SSLContext, port: int, hostname: str | None = "localhost") -> bytes:
    """Connect, complete the handshake and read the server's b'ok' (a refused client certificate shows up
    on this read under TLS 1.3). Raises ssl.SSLError / OSError when refused."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=hostname) as tls:
            data = tls.recv(2)
            if data != b"ok":
                raise ConnectionError(f"server closed the connection ({data!r})")
            return data


def openssl(*args: str | Path, input: bytes = b"", cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([OPENSSL, *map(str, args)], input=input, cwd=cwd, capture_output=True, timeout=KEYGEN_TIMEOUT)
    if check and r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed: {r.stderr.decode(errors='replace')}")
    return r


@contextlib.contextmanager
def s_server(*args: str | Path, cwd: Path | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    """`openssl s_server` on a free 127.0.0.1 port, ready when it prints ACCEPT; killed afterwards."""
    port = free_port()
    proc = subprocess.Popen([OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1", *map(str, args)],
                            cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with gevent.Timeout(TIMEOUT, AssertionError("openssl s_server did not start")):
            while b"ACCEPT" not in (line := proc.stdout.readline()):
                if not line:
                    raise AssertionError("openssl s_server exited")
        yield port, proc
    finally:
        proc.kill()
        proc.wait(TIMEOUT)


def s_server_output(proc: subprocess.Popen) -> str:
    """What s_server printed after the one connection (it exits after -naccept 1)."""
    proc.stdin.close()
    with gevent.Timeout(TIMEOUT, AssertionError("openssl s_server did not finish")):
        out = proc.stdout.read()
    return out.decode(errors="replace")


def s_client(port: int, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *map(str, args)],
                          cwd=cwd, input=b"", capture_output=True, timeout=TIMEOUT)
