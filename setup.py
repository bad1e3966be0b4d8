"""Ampgate: charging manager appliance (OCPP 1.6J central system, Power Brain Modbus, load management)."""
import glob

from setuptools import find_packages, setup

# Versions tested together (see ../shared/docs/stack-pitfalls.md §9); pinned on purpose.
RUNTIME = [
    "flask==3.1.3",
    "werkzeug==3.1.9",
    "gevent==26.9.0",
    "greenlet==3.5.6",
    "gevent-websocket==0.10.1",
    "websocket-client==1.9.2",
    "pymodbus==3.16.1",
    "pyserial==3.5",
    "cryptography==50.0.2",
    "cffi==2.1.1",
    "configobj==5.0.9",
    "fastjsonschema==2.22.3",
    "ocpp==2.1.0",
    "jsonschema==4.26.0",
]
TEST = [
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "hypothesis==6.170.17",
    "websockets==17.4",
    "playwright==1.65.2",
    "ruff==0.17.5",
    "mypy==2.4.1",
]

setup(
    name="ampgate",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["appliance", "appliance.*"]),
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
