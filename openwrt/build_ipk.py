"""Build the OpenWrt package ampgate_<version>-r<release>_all.ipk from this checkout, without the OpenWrt SDK.

Nothing in it is compiled, so one architecture-independent package serves every box: the program and the
pure-Python packages the feeds lack go to /usr/lib/ampgate, the compiled ones (gevent, cryptography, ...)
are dependencies on the feed's packages. The OCPP 1.6 JSON schemas are taken from the installed `ocpp`
package (the only part of it the appliance reads). See docs/openwrt.md.

An .ipk is an ar archive of debian-binary, control.tar.gz and data.tar.gz, as opkg reads it.
Usage: python openwrt/build_ipk.py [--out DIR] [--wheels DIR]   (make ipk)
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "openwrt"
FILES = HERE / "files"
LIB = "usr/lib/ampgate"
RELEASE = 1

# Feed packages (OpenWrt 24.10 and 25.12 ship all of them; docs/openwrt.md lists their versions). The
# feed's python3-gevent does not depend on python3-zope-event although gevent imports it.
DEPENDS = ["python3 (>= 3.11)", "python3-flask", "python3-werkzeug", "python3-gevent", "python3-greenlet",
           "python3-zope-event", "python3-zope-interface", "python3-cffi", "python3-cryptography",
           "python3-websocket-client", "python3-pyserial"]
CONFFILES = ["/etc/ampgate/ampgate.conf", "/etc/config/ampgate"]

# (source, path in the package, mode)
STATIC = [
    (FILES / "ampgate", "usr/bin/ampgate", 0o755),
    (FILES / "ampgate-console", "usr/sbin/ampgate-console", 0o755),
    (FILES / "ampgate.init", "etc/init.d/ampgate", 0o755),
    (FILES / "ampgate.config", "etc/config/ampgate", 0o644),
    (FILES / "ampgate.uci-defaults", "etc/uci-defaults/90-ampgate-console", 0o755),
    (FILES / "ampgate.keep", "lib/upgrade/keep.d/ampgate", 0o644),
    (ROOT / "etc/ampgate.conf", "etc/ampgate/ampgate.conf", 0o600),   # passwords go in here
    (ROOT / "etc/ampgate.spec", f"{LIB}/etc/ampgate.spec", 0o644),   # the schema is code, not configuration
]
CONTROL_SCRIPTS = ["postinst", "prerm"]


def version() -> str:
    text = (ROOT / "appliance" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def tree(src: Path, dest: str) -> list[tuple[Path, str, int]]:
    """Every file below src as (source, package path, mode); no byte-code (postinst compiles it) and no
    translation sources (the compiled .mo catalogues are what gettext reads)."""
    return [(p, f"{dest}/{p.relative_to(src).as_posix()}", 0o644) for p in sorted(src.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".po")]


def download_wheels(wheels: Path) -> list[Path]:
    """The bundled wheels, exactly as vendor-requirements.txt names them (sha256-checked by pip)."""
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                    "--require-hashes", "-d", str(wheels), "-r", str(HERE / "vendor-requirements.txt")], check=True)
    names = [re.split(r"[=\s]", line)[0] for line in (HERE / "vendor-requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    found = []
    for name in names:
        stem = name.replace("-", "_").lower()
        match = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(stem + "-")]
        assert len(match) == 1, f"expected one wheel for {name} in {wheels}, found {match}"
        found.append(match[0])
    return found


def wheel_members(wheel: Path) -> list[tuple[bytes, str, int]]:
    """A pure-Python wheel installed by hand: its files under /usr/lib/ampgate (the .dist-info too, for
    licence and version), without console scripts (`.data/`)."""
    with zipfile.ZipFile(wheel) as z:
        return [(z.read(n), f"{LIB}/{n}", 0o644) for n in sorted(z.namelist())
                if not n.endswith("/") and ".data/" not in n]


def ocpp_schemas() -> list[tuple[Path, str, int]]:
    spec = importlib.util.find_spec("ocpp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the ocpp package is not installed (make venv): its OCPP 1.6 schemas go into the package")
    schemas = Path(list(spec.submodule_search_locations)[0]) / "v16" / "schemas"
    # no ocpp/__init__.py: a namespace package holding just the schemas, as importlib.resources reads them
    return tree(schemas, f"{LIB}/ocpp/v16/schemas")


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int, mtime: int, dirs: set[str]) -> None:
    parts = name.split("/")
    for i in range(1, len(parts)):
        d = "/".join(parts[:i])
        if d not in dirs:
            dirs.add(d)
            info = tarfile.TarInfo(f"./{d}/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
    info = tarfile.TarInfo(f"./{name}")
    info.size, info.mode, info.mtime = len(data), mode, mtime
    tar.addfile(info, io.BytesIO(data))


def targz(members: list[tuple[bytes, str, int]], mtime: int) -> bytes:
    """A reproducible tar.gz: root-owned, fixed time, sorted, with every parent directory."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()
        for data, name, mode in sorted(members, key=lambda m: m[1]):
            _add(tar, name, data, mode, mtime, dirs)
    return gzip.compress(raw.getvalue(), mtime=mtime)


def ar(members: list[tuple[str, bytes]], mtime: int) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        out.append(f"{name + '/':<16}{mtime:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def control(installed_size: int) -> str:
    return (f"Package: ampgate\nVersion: {version()}-r{RELEASE}\nDepends: {', '.join(DEPENDS)}\n"
            "Source: ampgate\nSection: utils\nArchitecture: all\n"
            f"Installed-Size: {installed_size}\n"
            "Description: Ampgate charging manager: OCPP 1.6J central system, Power Brain wallboxes over\n"
            " Modbus RTU/TCP, load management within the grid connection's limits, local web page and\n"
            " a maintenance shell on the serial console.\n")


def build(out: Path, wheels: Path) -> Path:
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH") or _commit_time())
    files = STATIC + tree(ROOT / "appliance", f"{LIB}/appliance") + tree(ROOT / "web", f"{LIB}/web") + ocpp_schemas()
    data = [(src.read_bytes(), name, mode) for src, name, mode in files]
    for wheel in download_wheels(wheels):
        data += wheel_members(wheel)
    ctrl = [(control(sum(len(d) for d, _, _ in data)).encode(), "control", 0o644),
            ("".join(c + "\n" for c in CONFFILES).encode(), "conffiles", 0o644)]
    ctrl += [((FILES / s).read_bytes(), s, 0o755) for s in CONTROL_SCRIPTS]
    ipk = ar([("debian-binary", b"2.0\n"), ("control.tar.gz", targz(ctrl, mtime)),
              ("data.tar.gz", targz(data, mtime))], mtime)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ampgate_{version()}-r{RELEASE}_all.ipk"
    path.write_bytes(ipk)
    return path


def _commit_time() -> int:
    done = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(done.stdout.strip() or time.time())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "build", help="where the .ipk goes (default: build/)")
    p.add_argument("--wheels", type=Path, default=ROOT / "build" / "wheels",
                   help="download cache for the bundled wheels (default: build/wheels)")
    args = p.parse_args()
    path = build(args.out, args.wheels)
    print(f"{path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
