# Ampgate developer entry points. Everything installs into .venv from the package registries.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint ipk bench bench-scale fuzz soak screenshots translations venv system-deps clean

# setup.py says which versions the code supports; constraints.txt pins the ones tested here.
$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ampgate run --config etc/ampgate.conf --data var

# Debian packages the tests use: socat (pty pairs), openssl (interop), chromium (browser tests),
# shellcheck (OpenWrt scripts), binutils (ar, to unpack the .ipk).
system-deps:
	@command -v socat >/dev/null && command -v openssl >/dev/null && command -v chromium >/dev/null && \
	  command -v shellcheck >/dev/null && command -v ar >/dev/null && command -v npm >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat openssl chromium \
	    shellcheck binutils nodejs npm >/dev/null; }

# Independent OCPP stacks from npm (ocpp-rpc in strict mode), pinned by tests/peers/package-lock.json.
PEERS := tests/peers/node_modules/.installed
$(PEERS): tests/peers/package.json tests/peers/package-lock.json | system-deps
	cd tests/peers && npm ci --no-audit --no-fund --loglevel=error
	touch $(PEERS)

# Static checks first (seconds): ruff.toml's rules on all Python files, mypy.ini's typed core.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: $(STAMP) system-deps $(PEERS) lint
	$(PY) -m pytest -q -p no:cacheprovider tests

# The OpenWrt package, architecture-independent: build/ampgate_<version>-r1_all.ipk (docs/openwrt.md).
ipk: $(STAMP)
	$(PY) openwrt/build_ipk.py

bench: $(STAMP)
	$(PY) bench/ocpp_server.py
	$(PY) bench/lm_reaction.py
	$(PY) bench/load_management.py
	$(PY) bench/modbus.py
	$(PY) bench/openwrt_rss.py
	$(PY) bench/web_passwords.py
	$(PY) bench/gateway.py
	$(PY) bench/abuse.py
	# last: scripts read its last line (site_day: ... % of the oracle ..., violations: N)
	$(PY) bench/site_day.py

# 10,000 idle stations over ws and wss, twice each (appliance and echo): several minutes
bench-scale: $(STAMP)
	$(PY) bench/scale.py

# >= 100,000 fuzzed frames against the running appliance (FUZZ_FRAMES=... for more or fewer)
fuzz: $(STAMP)
	$(PY) bench/fuzz.py

# SOAK_KILLS (30) kill -9s of the appliance during transactions; then every answer must be on disk once
soak: $(STAMP)
	$(PY) bench/soak_kill.py

screenshots: $(STAMP) system-deps
	$(PY) -m tests.screenshots docs/screenshots

# German catalogue: collect the marked strings, update appliance/locale/de/.../ampgate.po, compile the .mo
# (both committed; tests/test_i18n.py fails while a string lacks its German text)
translations: $(STAMP)
	$(PY) -m tests.i18n_catalog

clean:
	rm -rf $(VENV) var build *.egg-info
