"""The web admin password's rules, shared by the web page and the serial console."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from werkzeug.security import check_password_hash, generate_password_hash

USER = "admin"
MIN_PASSWORD = 8
# 200k rounds: ~0.1 s here, about 1-2 s on an OpenWrt-class CPU. The web server hashes off the
# gevent hub (see off_hub), so that time never stalls stations, Modbus or load management.
HASH_METHOD = "pbkdf2:sha256:200000"

T = TypeVar("T")
_pool: Any = None


def make_hash(password: str) -> str:
    return generate_password_hash(password, method=HASH_METHOD)


def off_hub(fn: Callable[..., T], *args: Any) -> T:
    """Run a key derivation in a thread while the calling greenlet waits and the hub runs on.

    This is the one place the appliance uses a thread (the developers' guide allows one where a
    library forces it): PBKDF2 is pure CPU for 0.1-2 s, and on the hub it would stop every station,
    Modbus poll and control cycle meanwhile (60 parallel guesses doubled the control cycle).
    hashlib's pbkdf2_hmac releases the GIL while OpenSSL works, so the hub really runs beside it.
    One thread only: parallel guesses queue instead of taking every core from the hub.
    """
    global _pool
    if _pool is None:
        from gevent.threadpool import ThreadPool

        _pool = ThreadPool(1)
    return _pool.apply(fn, args)


def verify(password_hash: str, password: str) -> bool:
    """The password against a stored hash, computed off the hub; a damaged hash matches nothing."""
    try:
        return bool(off_hub(check_password_hash, password_hash, password))
    except ValueError:
        return False


__all__ = ["HASH_METHOD", "MIN_PASSWORD", "USER", "make_hash", "off_hub", "verify"]
