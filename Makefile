# drainhook — the commands the README names.
#   make demo   show it working on a local AWS emulator
#   make test   everything CI runs: fmt, clippy, unit and integration tests
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
# Pinned: the emulator extension patches moto's internals, which move between releases.
MOTO_VERSION    := 5.2.5
CFN_LINT_VERSION := 1.58.0
# The portable build: cargo-zigbuild links against an old glibc with zig (both from PyPI).
ZIGBUILD_VERSION := 0.24.0
ZIGLANG_VERSION  := 0.17.1
TARGET ?= x86_64-unknown-linux-gnu
GLIBC  ?= 2.17
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

.PHONY: fuzz all build test-build release dist test-dist test-boot boot-images test lint unit deploy-check eb-bundle agent-latency idle demo bench audit latency venv clean fleet fleet-smoke

all: build

build:
	cargo build

# The debug binary as `cargo test` builds it (with the dev-dependencies' features): after
# `make unit` this is a no-op, where a plain `cargo build` would compile everything again.
test-build:
	cargo build --tests

release:
	cargo build --release

$(VENV)/.installed: Makefile
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		'moto[ec2,sqs,autoscaling,server]==$(MOTO_VERSION)' 'cfn-lint==$(CFN_LINT_VERSION)'
	touch $@

venv: $(VENV)/.installed

# Kept apart from the test venv's stamp: zig is large and only `make dist` needs it.
$(VENV)/.dist-tools: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		'cargo-zigbuild==$(ZIGBUILD_VERSION)' 'ziglang==$(ZIGLANG_VERSION)'
	touch $@

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

# Integration tests run against the real moto server (with our extension), started
# on a free loopback port for the duration of the run.
unit: venv
	tests/moto_ext/with_moto.sh $(PY) cargo test -- --test-threads=4

SHELL_SCRIPTS := .ci/run infra/install.sh infra/platform/hooks/postdeploy/50-drainhook.sh \
	systemd/sysvinit/drainhook tests/moto_ext/with_moto.sh \
	packaging/build-packages.sh packaging/scripts/postinst packaging/scripts/prerm packaging/scripts/postrm

# Deployment files: shell scripts, CloudFormation and .ebextensions, IAM consistency.
# (Unit files, the SysV script and the installer are exercised by tests/deploy.rs.)
deploy-check: venv
	shellcheck $(SHELL_SCRIPTS)
	$(PY) tests/deploy/lint_infra.py

test: lint deploy-check unit fleet-smoke

# dist/drainhook: the release binary linked against glibc $(GLIBC) (it starts on Amazon Linux
# 1, 2 and 2023), and the RPM and DEB built from it. TARGET=aarch64-unknown-linux-gnu for
# Graviton where that Rust target is installed (`rustup target add`).
dist: $(VENV)/.dist-tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo zigbuild --release --target $(TARGET).$(GLIBC)
	mkdir -p dist
	cp target/$(TARGET)/release/drainhook dist/drainhook
	rm -f dist/drainhook_*.deb dist/drainhook-*.rpm
	packaging/build-packages.sh dist/drainhook $(VERSION) dist $(firstword $(subst -, ,$(TARGET)))

# The glibc bound (the normal build must fail it: the check discriminates) and the packages.
test-dist: dist test-build
	$(PY) tests/dist/check_dist.py dist --max-glibc $(GLIBC) --control target/debug/drainhook

# Real boots and shutdowns of Debian 12 guests under qemu (TCG): systemd and SysV, each with
# a negative control. The rootfs images are built once with mmdebstrap and cached in .boot/.
# The agent's guest reaches the emulator (and its IMDS stand-in) on the host through qemu's
# user network.
test-boot: test-dist
	tests/moto_ext/with_moto.sh $(PY) $(PY) tests/boot/boot_test.py

boot-images:
	python3 tests/boot/boot_test.py --images-only

# An Elastic Beanstalk bundle skeleton: copy dist/eb/* into your application bundle.
# EB_VARIANT=ebextensions-queue for a queue as a second trigger (default: IMDS alone).
EB_VARIANT ?= ebextensions
eb-bundle: dist
	rm -rf dist/eb
	mkdir -p dist/eb/drainhook/systemd/sysvinit dist/eb/.ebextensions dist/eb/.platform/hooks/postdeploy
	cp dist/drainhook infra/install.sh dist/eb/drainhook/
	cp systemd/*.service dist/eb/drainhook/systemd/
	cp systemd/sysvinit/drainhook dist/eb/drainhook/systemd/sysvinit/
	cp infra/$(EB_VARIANT)/*.config dist/eb/.ebextensions/
	cp infra/platform/hooks/postdeploy/50-drainhook.sh dist/eb/.platform/hooks/postdeploy/
	@echo "dist/eb: copy drainhook/, .ebextensions/ and .platform/ into your application bundle"

SHIPPER ?= filebeat
demo: venv
	cargo build --release
	SHIPPER=$(SHIPPER) tests/moto_ext/with_moto.sh $(PY) $(PY) tests/demo.py

bench:
	cargo bench --bench registry --bench diskqueue

# Fuzzing (nightly, cargo-fuzz installed into .tools/): each target for FUZZ_SECONDS from a
# corpus seeded with the tests' inputs (fuzz/seeds/), kept in .fuzz/corpus between runs.
# A crash stops the run and leaves its input in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := message duration config registry_array memlog_log memlog_checkpoint diskqueue
.tools/bin/cargo-fuzz:
	cargo install --locked --root .tools cargo-fuzz
fuzz: .tools/bin/cargo-fuzz
	set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p .fuzz/corpus/$$t; cp -n fuzz/seeds/$$t/* .fuzz/corpus/$$t/ 2>/dev/null || true; \
		(cd fuzz && PATH="$(CURDIR)/.tools/bin:$$PATH" cargo +nightly fuzz run $$t ../.fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1); \
	done

# A fleet of N agents (one per instance, each with its own IMDS stand-in) and a 25 % scale-in,
# for each trigger mode; prints the figures and fails if a bar of the design is missed.
N ?= 200
MODES ?= imds,queue,both
fleet: venv release
	ulimit -n "$$(ulimit -Hn)" && tests/moto_ext/with_moto.sh $(PY) $(PY) tests/fleet/fleet.py --n $(N) --modes $(MODES)

# The same at N=8 with the default configuration, short idle: part of `make test`.
fleet-smoke: venv test-build
	tests/moto_ext/with_moto.sh $(PY) $(PY) tests/fleet/fleet.py --n 8 --modes both --idle 20 --binary target/debug/drainhook --out .fleet/smoke.json

# drain latency: median over 20 runs of (drain exit - last registry ack - settle)
latency:
	cargo test --release --test drain_latency -- --ignored --nocapture

# CompleteLifecycleAction latency: median over 20 runs (last ack + settle -> complete)
agent-latency: venv
	tests/moto_ext/with_moto.sh $(PY) cargo test --release --test agent -- --ignored --nocapture

# Idle agent: CPU, peak RSS, IMDS and SQS requests over one minute, IMDS alone and with a queue
idle: venv release
	tests/moto_ext/with_moto.sh $(PY) $(PY) tests/measure_idle.py

# Needs cargo-audit (cargo install cargo-audit) and the advisory snapshot beside the repo.
audit:
	@if [ -d ../shared/advisory-db ]; then \
		cargo audit --db ../shared/advisory-db --no-fetch; \
	else \
		cargo audit; \
	fi

clean:
	cargo clean
	rm -rf $(VENV) .demo .fleet .boot dist .fuzz fuzz/target
