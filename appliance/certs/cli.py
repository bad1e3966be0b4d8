"""`ampgate cert ...`: the command-line face of appliance.certs.manage and appliance.certs.issue.

Passwords: --key-password / --ca-key-password, else the environment (AMPGATE_KEY_PASSWORD,
AMPGATE_CA_KEY_PASSWORD), else a prompt when a key needs one and stdin is a terminal.
Exit 0 on success, 2 with one line on stderr for bad usage or bad input.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from appliance.certs import issue, manage
from appliance.fsutil import atomic_write
from appliance.certs.pem import (CertError, cert_pem, csr_pem, key_is_encrypted, key_matches, key_pem, load_certificates, load_csr,
                                 load_private_key)

HELP = "certificates: show, import, regenerate, CA list, client certificate, make CA/certificate/CSR, sign"
KEY_ENV, CA_KEY_ENV = "AMPGATE_KEY_PASSWORD", "AMPGATE_CA_KEY_PASSWORD"
SUBJECT_HELP = "subject, openssl style '/C=DE/O=Müller Ladetechnik GmbH/CN=CP1' or RFC 4514 'CN=CP1,O=...,C=DE'"
SAN_HELP = "subjectAltName entries, e.g. DNS:ampgate.local,DNS:*.example.com,IP:192.168.1.10 (repeatable)"


# -- argument parsing ---------------------------------------------------------------------------

def _parser(sub: argparse._SubParsersAction, name: str, helptext: str, func: Callable, **kw: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=helptext, description=helptext, **kw)
    # also accepted after the action; SUPPRESS keeps a value given before it (`cert --data X show`)
    p.add_argument("--config", default=argparse.SUPPRESS, help="configuration file")
    p.add_argument("--data", default=argparse.SUPPRESS, help="data directory")
    p.set_defaults(cert_func=func)
    return p


def _key_args(p: argparse.ArgumentParser, new_key: bool = True) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--key", metavar="FILE", help="use this existing private key")
    if new_key:
        src.add_argument("--key-out", metavar="FILE", help="make a new private key and write it here (mode 0600)")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--key-size", type=int, default=None, metavar="BITS", help="RSA key size: 2048, 3072 or 4096")
        g.add_argument("--ec", action="store_true", help="make an EC P-256 key instead of RSA")
    p.add_argument("--key-password", metavar="P",
                   help=f"password of --key, or to encrypt the new key (else ${KEY_ENV}; none = unencrypted)")


def _ca_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--ca-cert", metavar="FILE", required=required, help="the signing CA's certificate")
    p.add_argument("--ca-key", metavar="FILE", required=required, help="the signing CA's private key")
    p.add_argument("--ca-key-password", metavar="P", help=f"password of the CA key (else ${CA_KEY_ENV} or a prompt)")


def _usage_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--server", dest="usage", action="store_const", const="server", help="a TLS server certificate (default)")
    g.add_argument("--client", dest="usage", action="store_const", const="client", help="a TLS client certificate")
    g.add_argument("--both", dest="usage", action="store_const", const="both", help="usable as server and client")
    p.set_defaults(usage="server")


def _out_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--out", metavar="FILE", help=f"write the {what} here (PEM; default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="cert_command", metavar="ACTION", required=True)
    s = _parser(sub, "show", "the server certificate in use, the trusted CAs and the client certificate", cmd_show)
    s.add_argument("--json", action="store_true", help="print JSON")

    s = _parser(sub, "import", "check a certificate (+ chain) and its key, then make it the server certificate", cmd_import)
    s.add_argument("cert", metavar="CERT", help="PEM certificate, optionally followed by its chain")
    s.add_argument("key", metavar="KEY", help="PEM private key, optionally password-protected")
    s.add_argument("--key-password", metavar="P", help=f"the key's password (else ${KEY_ENV} or a prompt)")

    _parser(sub, "regenerate", "make a new onboard self-signed certificate and use it", cmd_regenerate)

    ca = _parser(sub, "ca", "trusted CA certificates (verify backends and stations' client certificates)", None)
    casub = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    s = _parser(casub, "add", "trust the certificates in FILE (a root, or a server's own certificate to pin)", cmd_ca_add)
    s.add_argument("file", metavar="FILE")
    s = _parser(casub, "remove", "stop trusting a CA certificate", cmd_ca_remove)
    s.add_argument("fingerprint", metavar="FINGERPRINT", help="SHA-256 fingerprint (or 8+ leading hex digits)")
    s = _parser(casub, "list", "the trusted CA certificates", cmd_ca_list)
    s.add_argument("--json", action="store_true", help="print JSON")

    s = _parser(sub, "client", "the client certificate + key presented to backends (Security Profile 3)", cmd_client)
    s.add_argument("cert", metavar="CERT", nargs="?", help="PEM certificate, optionally followed by its chain")
    s.add_argument("key", metavar="KEY", nargs="?", help="PEM private key")
    s.add_argument("--key-password", metavar="P", help=f"the key's password (else ${KEY_ENV} or a prompt)")
    s.add_argument("--remove", action="store_true", help="remove the client certificate instead")

    s = _parser(sub, "make-ca", "make a root CA certificate and key", cmd_make_ca)
    s.add_argument("--subject", required=True, help=SUBJECT_HELP)
    s.add_argument("--days", type=_days, default=3650, help="validity in days (default: %(default)s)")
    _key_args(s)
    _out_args(s, "CA certificate")

    s = _parser(sub, "make-cert", "make a server or client certificate, signed by a CA or self-signed", cmd_make_cert)
    s.add_argument("--subject", required=True, help=SUBJECT_HELP)
    s.add_argument("--san", action="append", help=SAN_HELP + "; a server certificate defaults to its CN")
    s.add_argument("--days", type=_days, default=825, help="validity in days (default: %(default)s)")
    _usage_args(s)
    _key_args(s)
    _ca_args(s, required=False)
    _out_args(s, "certificate")

    s = _parser(sub, "make-csr", "make a certificate signing request", cmd_make_csr)
    s.add_argument("--subject", required=True, help=SUBJECT_HELP)
    s.add_argument("--san", action="append", help=SAN_HELP)
    _key_args(s)
    _out_args(s, "request")

    s = _parser(sub, "sign", "sign a certificate signing request with a CA", cmd_sign)
    s.add_argument("csr", metavar="CSR", help="PEM certificate signing request")
    s.add_argument("--days", type=_days, default=365, help="validity in days (default: %(default)s)")
    s.add_argument("--san", action="append", help=SAN_HELP + " (default: copied from the request)")
    _usage_args(s)
    _ca_args(s, required=True)
    _out_args(s, "certificate")


# -- helpers ------------------------------------------------------------------------------------

def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CertError(f"cannot read {path}: {e.strerror}") from None


def _password(given: str | None, env: str, data: bytes, what: str) -> str | None:
    """The password for an existing key: the option, the environment, or a prompt if one is needed."""
    if given is not None:
        return given
    if os.environ.get(env):
        return os.environ[env]
    if key_is_encrypted(data) and sys.stdin.isatty():
        return getpass.getpass(f"password for {what}: ")
    return None


def _load_key(path: str, given: str | None, env: str) -> Any:
    data = _read(path)
    try:
        return load_private_key(data, _password(given, env, data, path))
    except CertError as e:
        raise CertError(f"{path}: {e}") from None


def _write(path: str | None, data: bytes, force: bool, mode: int = 0o644) -> None:
    if path is None:
        sys.stdout.write(data.decode())
        return
    if Path(path).exists() and not force:
        raise CertError(f"{path} exists; use --force to overwrite it")
    try:
        atomic_write(path, data, mode)
    except OSError as e:
        raise CertError(f"cannot write {path}: {e.strerror}") from None


def _subject_key(args: argparse.Namespace, default_bits: int) -> Any:
    """The subject's key: loaded from --key, or made new and written to --key-out."""
    if args.key:
        return _load_key(args.key, args.key_password, KEY_ENV)
    if Path(args.key_out).exists() and not args.force:
        raise CertError(f"{args.key_out} exists; use --force to overwrite it")
    key = issue.new_key("ec" if args.ec else "rsa", args.key_size or default_bits)
    password = args.key_password if args.key_password is not None else os.environ.get(KEY_ENV)
    _write(args.key_out, key_pem(key, password or None), True, 0o600)
    return key


def _ca(args: argparse.Namespace) -> tuple[Any, Any]:
    """The signing CA, checked before anything new (a key file) is written."""
    ca_cert = load_certificates(_read(args.ca_cert))[0]
    ca_key = _load_key(args.ca_key, args.ca_key_password, CA_KEY_ENV)
    if not key_matches(ca_cert, ca_key):
        raise CertError(f"{args.ca_key} is not the key of {args.ca_cert}")
    return ca_cert, ca_key


def _days(text: str) -> int:
    """argparse type: a validity in days, refused before any key is made."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 1 <= days <= 36500:
        raise argparse.ArgumentTypeError(f"{days}: use 1 to 36500 days")
    return days


def _print_info(title: str, info: dict[str, Any]) -> None:
    print(f"{title}:")
    rows = [("subject", info["subject"]), ("issuer", info["issuer"]), ("SAN", ", ".join(info["san"]) or "(none)"),
            ("valid", f"{info['not_before'][:16].replace('T', ' ')} .. {info['not_after'][:16].replace('T', ' ')} UTC ({info['expires_in_days']} days left)"),
            ("key", info["key"]), ("SHA-256", info["fingerprint_sha256"])]
    if info["warning"]:
        rows.append(("warning", info["warning"]))
    for k, v in rows:
        print(f"  {k + ':':9} {v}")


# -- actions ------------------------------------------------------------------------------------

def _print_cas(infos: list[dict[str, Any]]) -> None:
    for info in infos:
        _print_info("trusted CA", info)
    if not infos:
        print("trusted CAs: none (outbound connections accept any server)")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _import_pair(args: argparse.Namespace, importer: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    key_data = _read(args.key)
    return importer(args.data, _read(args.cert), key_data, _password(args.key_password, KEY_ENV, key_data, args.key))


def cmd_show(args: argparse.Namespace) -> None:
    state = manage.show(args.data)
    if args.json:
        _print_json(state)
        return
    _print_info("server certificate" + (" (onboard, self-signed)" if state["onboard"] else " (imported)"), state["server"])
    _print_cas(state["ca"])
    if state["client"]:
        _print_info("client certificate", state["client"])
    else:
        print("client certificate: none")


def cmd_import(args: argparse.Namespace) -> None:
    _print_info("server certificate imported", _import_pair(args, manage.import_server))


def cmd_regenerate(args: argparse.Namespace) -> None:
    _print_info("new onboard certificate", manage.regenerate(args.data))


def cmd_ca_add(args: argparse.Namespace) -> None:
    for info in manage.add_ca(args.data, _read(args.file)):
        _print_info("trusted", info)


def cmd_ca_remove(args: argparse.Namespace) -> None:
    manage.remove_ca(args.data, args.fingerprint)
    print(f"removed {args.fingerprint}")


def cmd_ca_list(args: argparse.Namespace) -> None:
    infos = manage.list_ca(args.data)
    if args.json:
        _print_json(infos)
    else:
        _print_cas(infos)


def cmd_client(args: argparse.Namespace) -> None:
    if args.remove:
        manage.remove_client(args.data)
        print("client certificate removed")
        return
    if not (args.cert and args.key):
        raise CertError("give CERT and KEY (or --remove)")
    _print_info("client certificate", _import_pair(args, manage.import_client))


def cmd_make_ca(args: argparse.Namespace) -> None:
    subject = issue.parse_subject(args.subject)
    cert = issue.make_ca(subject, _subject_key(args, 4096), args.days)
    _write(args.out, cert_pem(cert), args.force)


def cmd_make_cert(args: argparse.Namespace) -> None:
    subject = issue.parse_subject(args.subject)
    san = issue.parse_san(args.san) or (issue.default_san(subject) if args.usage != "client" else [])
    if bool(args.ca_cert) != bool(args.ca_key):
        raise CertError("give both --ca-cert and --ca-key (or neither, for a self-signed certificate)")
    ca_cert, ca_key = _ca(args) if args.ca_cert else (None, None)
    key = _subject_key(args, 2048)
    cert = issue.issue_cert(subject, key.public_key(), san, args.days, args.usage, ca_key or key, ca_cert)
    _write(args.out, cert_pem(cert), args.force)


def cmd_make_csr(args: argparse.Namespace) -> None:
    subject = issue.parse_subject(args.subject)
    csr = issue.make_csr(subject, _subject_key(args, 2048), issue.parse_san(args.san))
    _write(args.out, csr_pem(csr), args.force)


def cmd_sign(args: argparse.Namespace) -> None:
    csr = load_csr(_read(args.csr))
    ca_cert, ca_key = _ca(args)
    cert = issue.sign_csr(csr, ca_cert, ca_key, args.days, args.usage, issue.parse_san(args.san) if args.san else None)
    _write(args.out, cert_pem(cert), args.force)


def main(args: argparse.Namespace) -> int:
    try:
        args.cert_func(args)
    except CertError as e:
        print(f"ampgate cert: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the data directory is not writable
        print(f"ampgate cert: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 2
    return 0
