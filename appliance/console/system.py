"""The host around the appliance: network settings (OpenWrt uci), reboot, restarting the service.

Only on the appliance itself (OpenWrt, with `uci` and the procd service) does the console change
the host. Anywhere else it says so in one line and leaves the machine alone.
"""
from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

OPENWRT_RELEASE = Path("/etc/openwrt_release")
SERVICE = Path("/etc/init.d/ampgate")          # installed by the OpenWrt package (openwrt/files/ampgate.init)
NETWORK_SERVICE = Path("/etc/init.d/network")
NET_IFACE = "lan"                              # the uci interface the appliance is reached on
NET_KEYS = ("proto", "ipaddr", "netmask", "gateway", "dns")
NOT_HERE = "network configuration is only available on the appliance (OpenWrt with uci); this machine is left alone"


class HostError(Exception):
    """One line for the user."""


def on_appliance() -> bool:
    return OPENWRT_RELEASE.is_file()


def _run(argv: list[str], timeout: float = 30) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HostError(f"{' '.join(argv)}: {e}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise HostError(f"{' '.join(argv)} failed: {why[-1] if why else f'exit {done.returncode}'}")
    return done.stdout


# -- network (uci) ----------------------------------------------------------------------------------

def _uci() -> str:
    path = shutil.which("uci")
    if path is None:
        raise HostError(NOT_HERE)
    return path


def _uci_get(uci: str, key: str) -> str:
    done = subprocess.run([uci, "-q", "get", f"network.{NET_IFACE}.{key}"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def net_show() -> list[str]:
    uci = _uci()
    lines = [f"{NET_IFACE}: " + "  ".join(f"{k}={_uci_get(uci, k) or '-'}" for k in NET_KEYS)]
    ip = shutil.which("ip")
    if ip:
        for row in _run([ip, "-o", "-4", "addr", "show"]).splitlines():
            parts = row.split()
            if len(parts) > 3 and parts[1] != "lo":
                lines.append(f"  {parts[1]}: {parts[3]}")
    return lines


def _apply_network(uci: str) -> str:
    _run([uci, "commit", "network"])
    if NETWORK_SERVICE.exists():
        _run([str(NETWORK_SERVICE), "reload"])
        return "saved and applied"
    return "saved (no network service here to reload)"


def net_dhcp() -> str:
    uci = _uci()
    _run([uci, "set", f"network.{NET_IFACE}.proto=dhcp"])
    for key in NET_KEYS[1:]:
        subprocess.run([uci, "-q", "delete", f"network.{NET_IFACE}.{key}"], capture_output=True)
    return f"{NET_IFACE}: address by DHCP, {_apply_network(uci)}"


def parse_static(words: list[str]) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv4Address | None,
                                              list[ipaddress.IPv4Address]]:
    """ADDRESS/PREFIX [GATEWAY [DNS ...]] -> checked values, or HostError naming the bad word."""
    if not words:
        raise HostError("usage: net static ADDRESS/PREFIX [GATEWAY [DNS ...]], e.g. net static 192.168.1.50/24 192.168.1.1")
    try:
        iface = ipaddress.IPv4Interface(words[0])
    except ValueError:
        raise HostError(f"{words[0]!r} is not an IPv4 address with prefix, e.g. 192.168.1.50/24") from None
    if "/" not in words[0]:
        raise HostError(f"{words[0]}: give the prefix too, e.g. {words[0]}/24")
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address) and iface.network.prefixlen < 31:
        raise HostError(f"{words[0]}: that is the network's own or broadcast address")
    addrs = []
    for w in words[1:]:
        try:
            addrs.append(ipaddress.IPv4Address(w))
        except ValueError:
            raise HostError(f"{w!r} is not an IPv4 address") from None
    gateway = addrs[0] if addrs else None
    if gateway is not None and gateway not in iface.network:
        raise HostError(f"gateway {gateway} is not in {iface.network}")
    return iface, gateway, addrs[1:]


def net_static(words: list[str]) -> str:
    iface, gateway, dns = parse_static(words)
    uci = _uci()
    sec = f"network.{NET_IFACE}"
    _run([uci, "set", f"{sec}.proto=static"])
    _run([uci, "set", f"{sec}.ipaddr={iface.ip}"])
    _run([uci, "set", f"{sec}.netmask={iface.netmask}"])
    for key, value in (("gateway", gateway), ("dns", None)):
        subprocess.run([uci, "-q", "delete", f"{sec}.{key}"], capture_output=True)
        if value is not None:
            _run([uci, "set", f"{sec}.{key}={value}"])
    for server in dns:
        _run([uci, "add_list", f"{sec}.dns={server}"])
    return f"{NET_IFACE}: {iface.with_prefixlen}" + (f" via {gateway}" if gateway else "") + \
        (f", DNS {' '.join(map(str, dns))}" if dns else "") + f", {_apply_network(uci)}"


# -- the service and the box ------------------------------------------------------------------------

def restart_service() -> bool:
    """Restart `ampgate run` through procd when installed as a service; False when there is none."""
    if not SERVICE.exists():
        return False
    _run([str(SERVICE), "restart"], timeout=60)
    return True


def reboot() -> None:
    """Only call on the appliance (`on_appliance()`): the caller asks the user first."""
    _run(["reboot"])
