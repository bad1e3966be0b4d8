"""Ampgate: charging manager appliance (OCPP 1.6J central system, Power Brain Modbus, load management)."""
import glob

from setuptools import find_packages, setup

# Ranges: from the oldest version a supported OpenWrt feed ships (docs/openwrt.md; 24.10 has cryptography 41,
# Flask 2.3, gevent 25.9, greenlet 3.0) to the next major release. The exact versions `make test` installs are
# in constraints.txt (see ../shared/docs/stack-pitfalls.md §7 for why they are pinned there).
RUNTIME = [
    "flask>=2.3.3,<4",
    "werkzeug>=2.3.8,<4",
    "gevent>=25.9.1",
    "greenlet>=3.0.2,<4",
    "gevent-websocket>=0.10.1,<0.11",
    "websocket-client>=1.7.0,<2",
    "pymodbus>=3.16.1,<3.17",        # its API moves between minor releases; bundled in the ipk at this version
    "pyserial>=3.5,<4",
    "cryptography>=41.0.7",
    "configobj>=5.0.9,<6",
    "fastjsonschema>=2.22.3,<3",
    "ocpp>=2.1.0,<3",                 # only its OCPP 1.6 JSON schemas are read at run time
]
TEST = [
    "pytest>=9.2",
    "pytest-timeout>=2.4",
    "hypothesis>=6.170",
    "websockets>=17.4",
    "playwright>=1.65.2",
    "ruff>=0.17.5",
    "mypy>=2.4.1",
    "babel>=2.19",                    # extracts and compiles the translations (make translations, tests)
]

setup(
    name="ampgate",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11",
    packages=find_packages(include=["appliance", "appliance.*"]),
    package_data={"appliance": ["locale/*/LC_MESSAGES/*.mo"]},
    # Installed copies of the spec, default config and web assets; the code also finds them in a checkout.
    data_files=[
        ("share/ampgate/etc", ["etc/ampgate.spec", "etc/ampgate.conf"]),
        ("share/ampgate/web/templates", sorted(glob.glob("web/templates/*"))),
        ("share/ampgate/web/static", sorted(glob.glob("web/static/*"))),
    ],
    install_requires=RUNTIME,
    extras_require={"test": TEST},
    entry_points={"console_scripts": ["ampgate = appliance.cli:main"]},
)
