"""The onboard self-signed server certificate: this host's names and addresses as subjectAltName, so
stations that dial the appliance by name or IP can verify it once they trust (pin) it."""
from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

from cryptography import x509
from cryptography.x509.oid import NameOID

from appliance.certs import issue
from appliance.certs.pem import PrivateKey

ONBOARD_DAYS = 3650  # 10 years: nobody renews a certificate on a box in a cellar
ONBOARD_ORG = "Ampgate"
_SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


def host_name() -> str:
    return socket.gethostname() or "ampgate"


def host_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Loopback plus every IPv4 address of an interface and every global-scope IPv6 address (Linux);
    link-local IPv6 addresses are left out, they need a zone and change with the interface."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ipaddress.ip_address("127.0.0.1"),
                                                                   ipaddress.ip_address("::1")]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in socket.if_nameindex():
                try:
                    req = struct.pack("256s", name.encode()[:15])
                    found.append(ipaddress.ip_address(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24]))
                except OSError:
                    continue  # an interface without IPv4
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                addr = ipaddress.ip_address(bytes.fromhex(line.split()[0]))
                if not (addr.is_link_local or addr.is_loopback):
                    found.append(addr)
    except (OSError, ValueError, IndexError):
        pass
    return list(dict.fromkeys(found))


def host_san() -> list[x509.GeneralName]:
    name = host_name()
    dns = [name] + ([f"{name}.local"] if "." not in name else []) + ["localhost"]
    return ([x509.DNSName(n) for n in dict.fromkeys(dns)]
            + [x509.IPAddress(a) for a in host_addresses()])


def make_onboard() -> tuple[x509.Certificate, PrivateKey]:
    """RSA 2048 (OCPP 1.6's limit for the station-facing key), serverAuth, SAN = this host."""
    key = issue.new_key("rsa", 2048)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ONBOARD_ORG),
                         x509.NameAttribute(NameOID.COMMON_NAME, host_name()[:64])])
    cert = issue.issue_cert(subject, key.public_key(), host_san(), ONBOARD_DAYS, "server", key)
    return cert, key
