"""TLS contexts built from the certificate store: the OCPP server's (inbound, profiles 2 and 3) and the one
for outbound connections (gateway, wallbox mode).

Built with the stdlib `ssl` module; after gevent's patch_all() that is gevent's cooperative ssl.
Contexts that verify user-supplied CAs keep VERIFY_X509_STRICT off: the openssl recipe users follow makes
version-1 roots without a CA flag, which strict mode rejects. They set VERIFY_X509_PARTIAL_CHAIN so the
trusted list may hold a peer's own certificate (pinning) even when a CA signed it.
"""
from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import Any

from appliance.certs import manage
from appliance.certs.manage import CertError

log = logging.getLogger(__name__)


def _trust(ctx: ssl.SSLContext, bundle: str) -> None:
    ctx.load_verify_locations(cadata=bundle)
    ctx.verify_flags = (ctx.verify_flags & ~ssl.VERIFY_X509_STRICT) | ssl.VERIFY_X509_PARTIAL_CHAIN


def _load_chain(ctx: ssl.SSLContext, path: Path, password: str, what: str) -> None:
    # a callable, never None: with None OpenSSL would prompt on the terminal for an encrypted key
    try:
        ctx.load_cert_chain(str(path), password=lambda: password)
    except (ssl.SSLError, OSError) as e:
        raise CertError(f"cannot load the {what} {path}: {getattr(e, 'reason', None) or e}") from None


# TLS 1.2 suites: Python's default list (forward-secret ECDHE first) plus the two RSA key-exchange
# suites the OCPP security whitepaper requires for RSA certificates; stations that implement only
# those (TLS_RSA_WITH_AES_128_GCM_SHA256 / _256_GCM_SHA384) could not connect otherwise.
TLS12_CIPHERS = ("ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:AES128-GCM-SHA256:AES256-GCM-SHA384"
                 ":!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM")


def _new(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP 1.6 security whitepaper
    ctx.set_ciphers(TLS12_CIPHERS)
    return ctx


def peer_common_name(peercert: dict | None) -> str | None:
    """The CN from SSLSocket.getpeercert() (a dict of RDN tuples)."""
    for rdn in (peercert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return value
    return None


class ServerTls:
    """The OCPP server's TLS context, rebuilt when certificate files or settings change, so an import
    takes effect for the next connection without a restart. A broken change keeps the previous context."""

    def __init__(self, data_dir: str | os.PathLike, config: Any):
        self.data_dir = Path(data_dir)
        self.config = config
        self._ctx: ssl.SSLContext | None = None
        self._stamp: tuple | None = None
        self._failed_stamp: tuple | None = None

    def _settings(self) -> tuple[str, bool, str]:
        certs = self.config.section("certs")
        return (self.config.section("ocpp_server")["client_certs"], bool(certs["require_cn_match"]),
                certs["key_password"])

    def context(self) -> ssl.SSLContext:
        manage.ensure_onboard(self.data_dir)
        stamp = (manage.files_stamp(self.data_dir), self._settings())
        if self._ctx is not None and stamp == self._stamp:
            return self._ctx
        try:
            ctx = self._build(*stamp[1])
        except CertError as e:
            if self._ctx is None:
                raise
            if stamp != self._failed_stamp:
                log.error("TLS: keeping the previous server certificate: %s", e)
                self._failed_stamp = stamp
            return self._ctx
        self._ctx, self._stamp = ctx, stamp
        return ctx

    def _build(self, client_certs: str, _cn_match: bool, key_password: str) -> ssl.SSLContext:
        ctx = _new(ssl.PROTOCOL_TLS_SERVER)
        _load_chain(ctx, manage.server_path(self.data_dir), key_password, "server certificate")
        if client_certs == "required":
            ctx.verify_mode = ssl.CERT_REQUIRED
            bundle = manage.ca_bundle(self.data_dir)
            if bundle:
                _trust(ctx, bundle)
            else:
                log.warning("TLS: client_certs = required but no CA certificate is trusted: every station is refused")
        return ctx

    def check_peer(self, charge_box_id: str, peercert: dict | None) -> str | None:
        """None if the station may connect, else the reason (Security Profile 3). peercert is
        SSLSocket.getpeercert() (None or {} for a plain or unverified connection)."""
        client_certs, cn_match, _ = self._settings()
        if client_certs != "required":
            return None
        if not peercert:
            return "no client certificate (Security Profile 3 requires TLS with a client certificate)"
        cn = peer_common_name(peercert)
        if cn_match and cn is None:
            return f"client certificate has no CN to compare with the chargeBoxId {charge_box_id!r}"
        if cn_match and cn != charge_box_id:
            return f"client certificate CN {cn!r} is not the chargeBoxId {charge_box_id!r}"
        return None


def client_context(data_dir: str | os.PathLike, config: Any, server_hostname_check: bool = True) -> ssl.SSLContext:
    """For an outbound connection: without trusted CAs any server is accepted (encrypted, not
    authenticated); with them the server's chain and host name must verify (Security Profile 2); a
    client certificate, when present, is presented (Security Profile 3)."""
    ctx = _new(ssl.PROTOCOL_TLS_CLIENT)
    bundle = manage.ca_bundle(data_dir)
    if bundle:
        ctx.check_hostname = server_hostname_check
        ctx.hostname_checks_common_name = True  # openssl-recipe certificates have no SAN, only a CN
        _trust(ctx, bundle)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    path = manage.client_path(data_dir)
    if path.exists():
        _load_chain(ctx, path, config.section("certs")["client_key_password"], "client certificate")
    return ctx
