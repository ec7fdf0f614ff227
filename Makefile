# Targets named by the README. Each does its own set-up, idempotently.
SHELL := /bin/bash
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the host needs: QEMU, disk tools, payload build tools; then what the
# tests need on top (a real OCI registry, htpasswd for its basic auth, tmux for ttys,
# openssl for a TLS registry's certificate).
APT_PACKAGES := qemu-system-x86 qemu-utils e2fsprogs mmdebstrap busybox-static cpio \
	kmod zstd gcc libc6-dev python3-venv ca-certificates debian-archive-keyring
TEST_APT_PACKAGES := tmux docker-registry apache2-utils openssl
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test payload deps apt test-apt venv lint clean-payload

demo: payload
	$(VENV)/bin/boxlite run --rm localhost/debian:bookworm \
		python3 -c 'import platform; print("hello from a box:", platform.uname().release)'

test: payload test-apt
	$(PY) -m pytest $(PYTEST_ARGS)

payload: deps
	$(PY) images/build.py

deps: apt venv

# $(call apt_install,PACKAGES): install those not installed yet, quietly.
apt_install = @missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

apt:
	$(call apt_install,$(APT_PACKAGES))

test-apt:
	$(call apt_install,$(TEST_APT_PACKAGES))

# The package is byte-compiled on every run (quick when up to date): an editable
# install writes no .pyc, and with PYTHONDONTWRITEBYTECODE set (CI images often do)
# every boxlite command and every shim would compile ~50 modules from source.
venv: $(STAMP)
	@$(PY) -m compileall -q -j 0 boxlite_cli

# Editable install in "compat" mode: a plain path .pth, where the default import hook
# costs every python start ~20 ms. (setuptools warns the mode is transitional: its
# version is pinned <85 in pyproject.toml, and the warning is silenced.)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	PYTHONWARNINGS=ignore $(PY) -m pip install -q --disable-pip-version-check -e '.[test]' \
		--config-settings editable_mode=compat
	touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
