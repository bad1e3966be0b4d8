"""`selftest`: is this box ready to run the appliance? Each check gives one line, ok or FAIL.

Checks: the configuration is valid; the web and OCPP ports are free or held by the running appliance;
every Modbus bus (TCP endpoint or serial device) of an active device is reachable; the data directory
and the database are writable; the server certificate is readable and valid.
"""
from __future__ import annotations

import errno
import os
import socket
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterator

from appliance import config as config_mod
from appliance.console import live

Result = tuple[bool, str]
CONNECT_TIMEOUT_S = 2.0


def run(config_path: str, data_dir: str) -> list[Result]:
    try:
        cfg = config_mod.load(config_path)
    except config_mod.ConfigError as e:
        return [(False, f"configuration: {e}")] + list(_data(Path(data_dir)))
    results = [(True, f"configuration: {config_path} is valid ({len(cfg.devices())} devices)")]
    results += list(_ports(cfg))
    results += list(_buses(cfg))
    results += list(_data(Path(data_dir)))
    results += list(_certificate(data_dir))
    return results


# -- ports ------------------------------------------------------------------------------------------

def _port_free(bind: str, port: int) -> bool | None:
    """True free, False in use, None when the address itself is unusable here."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the servers do: TIME_WAIT is no conflict
        try:
            s.bind((bind or "0.0.0.0", port))
            return True
        except OSError as e:
            return False if e.errno == errno.EADDRINUSE else None


def _ports(cfg: config_mod.Config) -> Iterator[Result]:
    web = cfg.section("web")
    ours = live.answers(web)
    for name, sec in (("web", web), ("OCPP", cfg.section("ocpp_server"))):
        where = f"{name} port {sec['bind']}:{sec['port']}"
        free = _port_free(sec["bind"], sec["port"])
        if free:
            yield True, f"{where}: free"
        elif free is None:
            yield False, f"{where}: the address {sec['bind']} is not on this host"
        elif ours:
            yield True, f"{where}: in use by the running appliance"
        else:
            yield False, f"{where}: in use by another program (the appliance is not answering)"


# -- Modbus buses -----------------------------------------------------------------------------------

def _buses(cfg: config_mod.Config) -> Iterator[Result]:
    from appliance.modbus.bus import parse_port

    links: dict[str, tuple[Any, list[str]]] = {}
    for name, dev in cfg.devices().items():
        if dev["type"] == "ocpp16" or not dev["active"]:
            continue
        try:
            link = parse_port(dev["port"])
        except ValueError as e:
            yield False, f"bus of {name}: {e}"
            continue
        links.setdefault(link.key, (link, []))[1].append(name)
    for key, (link, names) in links.items():
        problem = _tcp_problem(link.address, link.port) if link.kind == "tcp" else _serial_problem(link.address)
        yield (False, f"bus {key} ({', '.join(names)}): {problem}") if problem else \
            (True, f"bus {key} ({', '.join(names)}): reachable")


def _tcp_problem(host: str, port: int) -> str:
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        return ""
    except OSError as e:
        return f"cannot connect: {e.strerror or e}"


def _serial_problem(device: str) -> str:
    try:
        fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        os.close(fd)
        return ""
    except OSError as e:
        return f"cannot open: {e.strerror}"


# -- data directory, database, certificate ----------------------------------------------------------

def _data(data_dir: Path) -> Iterator[Result]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".selftest."):
            pass
        yield True, f"data directory {data_dir}: writable"
    except OSError as e:
        yield False, f"data directory {data_dir}: not writable: {e.strerror}"
        return
    db_path = data_dir / live.DB_FILE
    if not db_path.exists():
        yield True, f"database {db_path}: not made yet (the appliance makes it on first start)"
        return
    try:
        db = sqlite3.connect(str(db_path), timeout=5, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")   # takes the write lock, writes nothing
            db.execute("ROLLBACK")
        finally:
            db.close()
        yield True, f"database {db_path}: writable"
    except sqlite3.Error as e:
        yield False, f"database {db_path}: {e}"


def _certificate(data_dir: str) -> Iterator[Result]:
    from appliance.certs import manage

    if not manage.server_path(data_dir).exists():
        yield True, "server certificate: none yet (the onboard one is made when first needed)"
        return
    try:
        info = manage.server_info(data_dir)
    except manage.CertError as e:
        yield False, f"server certificate: {e}"
        return
    kind = "onboard" if info["onboard"] else "imported"
    if info["expires_in_days"] < 0:
        yield False, f"server certificate ({kind}, {info['subject']}): expired"
    else:
        yield True, f"server certificate ({kind}, {info['subject']}): {info['expires_in_days']} days left"
