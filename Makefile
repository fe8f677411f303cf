# drainhook — the commands the README names.
#   make demo   show it working on a local AWS emulator
#   make test   everything CI runs: fmt, clippy, unit and integration tests
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
# Pinned: the emulator extension patches moto's internals, which move between releases.
MOTO_VERSION    := 5.2.5
CFN_LINT_VERSION := 1.58.0

.PHONY: all build release test lint unit demo bench audit latency venv clean

all: build

build:
	cargo build

release:
	cargo build --release

$(VENV)/.installed: Makefile
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		'moto[ec2,sqs,autoscaling,server]==$(MOTO_VERSION)' 'cfn-lint==$(CFN_LINT_VERSION)'
	touch $@

venv: $(VENV)/.installed

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

# Integration tests run against the real moto server (with our extension), started
# on a free loopback port for the duration of the run.
unit: venv
	tests/moto_ext/with_moto.sh $(PY) cargo test -- --test-threads=4

test: lint unit

demo: venv
	cargo build --release
	tests/moto_ext/with_moto.sh $(PY) $(PY) tests/demo.py

bench:
	cargo bench --bench registry

# drain latency: median over 20 runs of (drain exit - last registry ack - settle)
latency:
	cargo test --release --test drain_latency -- --ignored --nocapture

# Needs cargo-audit (cargo install cargo-audit) and the advisory snapshot beside the repo.
audit:
	@if [ -d ../shared/advisory-db ]; then \
		cargo audit --db ../shared/advisory-db --no-fetch; \
	else \
		cargo audit; \
	fi

clean:
	cargo clean
	rm -rf $(VENV) .demo
