# Ampgate developer entry points. Everything installs into .venv from the package registries.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench fuzz soak screenshots venv system-deps clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ampgate run --config etc/ampgate.conf --data var

# Debian packages the tests use: socat (pty pairs), openssl (interop), chromium (browser tests).
system-deps:
	@command -v socat >/dev/null && command -v openssl >/dev/null && command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat openssl chromium >/dev/null; }

# Static checks first (seconds): ruff.toml's rules on all Python files, mypy.ini's typed core.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: $(STAMP) system-deps lint
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) bench/ocpp_server.py
	$(PY) bench/lm_reaction.py
	$(PY) bench/load_management.py
	$(PY) bench/modbus.py
	$(PY) bench/web_passwords.py

# >= 100,000 fuzzed frames against the running appliance (FUZZ_FRAMES=... for more or fewer)
fuzz: $(STAMP)
	$(PY) bench/fuzz.py

# SOAK_KILLS (30) kill -9s of the appliance during transactions; then every answer must be on disk once
soak: $(STAMP)
	$(PY) bench/soak_kill.py

screenshots: $(STAMP) system-deps
	$(PY) -m tests.screenshots docs/screenshots

clean:
	rm -rf $(VENV) var build *.egg-info
