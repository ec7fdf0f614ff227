# Targets named by the README. Each does its own set-up, idempotently.
SHELL := /bin/bash
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the host needs: QEMU, disk tools, payload build tools; then what the
# tests need on top (a real OCI registry, htpasswd for its basic auth, tmux for ttys).
APT_PACKAGES := qemu-system-x86 qemu-utils e2fsprogs mmdebstrap busybox-static cpio \
	kmod zstd python3-venv ca-certificates debian-archive-keyring
TEST_APT_PACKAGES := tmux docker-registry apache2-utils
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

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
