"""Which names the page answers to (against DNS rebinding).

A foreign web page can make a visitor's browser resolve its own name to this box's address and then
read the page as "same origin" — the API is open before a password is set, and a browser on the LAN
reaches the box. The browser still sends the foreign name in the Host header, so only requests
naming this box are served: an IP address, localhost, the machine's host name (also with .local,
.lan and .home.arpa, as mDNS and home routers add), and the names in `[web] hostnames`.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Iterable

LOCAL_SUFFIXES = ("", ".local", ".lan", ".home.arpa")


def own_names(configured: Iterable[str]) -> set[str]:
    """The names of this box: fixed ones plus `configured` ([web] hostnames)."""
    host = socket.gethostname().lower().rstrip(".")
    first = host.split(".", 1)[0]
    names = {"localhost", host} | {first + s for s in LOCAL_SUFFIXES}
    return names | {n.strip().lower().rstrip(".") for n in configured if n.strip()}


def split_host(header: str) -> str:
    """The name or address of a Host header, without port and brackets."""
    header = header.strip()
    if header.startswith("["):                       # [IPv6]:port
        return header[1:].split("]", 1)[0]
    name, sep, port = header.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else header


def allowed(header: str, names: Iterable[str]) -> bool:
    host = split_host(header)
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return host.lower().rstrip(".") in names
