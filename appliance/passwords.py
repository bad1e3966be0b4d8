"""The web admin password's rules, shared by the web page and the serial console."""
from __future__ import annotations

from werkzeug.security import generate_password_hash

USER = "admin"
MIN_PASSWORD = 8
# 200k rounds: ~0.1 s here, about 1-2 s on an OpenWrt-class CPU, during which the hub is blocked
# (hashing in a thread would need one); the web page caches verified Basic-auth passwords.
HASH_METHOD = "pbkdf2:sha256:200000"


def make_hash(password: str) -> str:
    return generate_password_hash(password, method=HASH_METHOD)


__all__ = ["HASH_METHOD", "MIN_PASSWORD", "USER", "make_hash"]
