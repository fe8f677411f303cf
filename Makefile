# drainhook — the commands the README names.
#   make demo   show it working on a local AWS emulator
#   make test   everything CI runs: fmt, clippy, the docs build, unit and integration tests
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
# Pinned: the emulator extension patches moto's internals, which move between releases.
MOTO_VERSION    := 5.2.5
CFN_LINT_VERSION := 1.58.0
# The portable build: cargo-zigbuild links against an old glibc with zig (both from PyPI).
ZIGBUILD_VERSION := 0.24.0
ZIGLANG_VERSION  := 0.17.1
GLIBC  ?= 2.17
# Where cargo builds: CARGO_TARGET_DIR when set (CI caches), else target/.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# aarch64 (Graviton) is built by Debian's rustc-web with its aarch64 standard library
# (libstd-rust-web-dev:arm64; .ci/run installs both), in a target directory of its own: another
# compiler than the x86_64 build's, and a build that may run beside it. With rustup's
# aarch64 target instead: make dist AARCH64_CARGO=cargo AARCH64_RUSTC=rustc.
AARCH64_CARGO ?= /usr/bin/cargo
AARCH64_RUSTC ?= /usr/bin/rustc
AARCH64_TARGET_DIR := $(TARGET_DIR)/aarch64
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

.PHONY: fuzz all build test-build release dist dist-x86_64 dist-aarch64 test-dist test-aarch64 test-boot boot-images test lint unit deploy-check eb-bundle agent-latency idle demo bench audit latency venv clean fleet fleet-smoke

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
	RUSTDOCFLAGS='-D warnings' cargo doc --no-deps --quiet

# Integration tests run against the real moto server (with our extension), started
# on a free loopback port for the duration of the run.
unit: venv
	tests/moto_ext/with_moto.sh $(PY) cargo test -- --test-threads=4

SHELL_SCRIPTS := .ci/run infra/install.sh infra/platform/hooks/postdeploy/50-drainhook.sh \
	systemd/sysvinit/drainhook tests/moto_ext/with_moto.sh \
	packaging/build-packages.sh packaging/scripts/postinst packaging/scripts/prerm packaging/scripts/postrm \
	tests/dist/drainhook-aarch64.sh

# Deployment files: shell scripts, CloudFormation and .ebextensions, IAM consistency.
# (Unit files, the SysV script and the installer are exercised by tests/deploy.rs.)
deploy-check: venv
	shellcheck $(SHELL_SCRIPTS)
	$(PY) tests/deploy/lint_infra.py

test: lint deploy-check unit fleet-smoke

# dist/drainhook-x86_64 and dist/drainhook-aarch64 (named by `uname -m`): release binaries
# linked against glibc $(GLIBC) (they start on Amazon Linux 1, 2 and 2023, and the aarch64 one
# on Graviton), and the RPM and DEB of each.
dist: dist-x86_64 dist-aarch64
	rm -f dist/drainhook dist/drainhook_*.deb dist/drainhook-*.rpm
	packaging/build-packages.sh dist/drainhook-x86_64 $(VERSION) dist x86_64
	packaging/build-packages.sh dist/drainhook-aarch64 $(VERSION) dist aarch64

dist-x86_64: $(VENV)/.dist-tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo zigbuild --release --target x86_64-unknown-linux-gnu.$(GLIBC)
	mkdir -p dist
	cp $(TARGET_DIR)/x86_64-unknown-linux-gnu/release/drainhook dist/drainhook-x86_64

dist-aarch64: $(VENV)/.dist-tools
	@libdir=$$($(AARCH64_RUSTC) --print target-libdir --target aarch64-unknown-linux-gnu 2>/dev/null); \
	if ! ls "$$libdir"/libstd-*.rlib >/dev/null 2>&1; then \
		echo "make dist: $(AARCH64_RUSTC) has no aarch64 standard library. On Debian 12:" >&2; \
		echo "  dpkg --add-architecture arm64 && apt-get update" >&2; \
		echo "  apt-get install --no-install-recommends rustc-web cargo-web libstd-rust-web-dev:arm64" >&2; \
		echo "or, with rustup: rustup target add aarch64-unknown-linux-gnu, then" >&2; \
		echo "  make dist AARCH64_CARGO=cargo AARCH64_RUSTC=rustc" >&2; \
		exit 1; \
	fi
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CARGO=$(AARCH64_CARGO) RUSTC=$(AARCH64_RUSTC) \
		CARGO_TARGET_DIR=$(AARCH64_TARGET_DIR) \
		cargo-zigbuild zigbuild --release --target aarch64-unknown-linux-gnu.$(GLIBC)
	mkdir -p dist
	cp $(AARCH64_TARGET_DIR)/aarch64-unknown-linux-gnu/release/drainhook dist/drainhook-aarch64

# An aarch64 program linked against a newer glibc (2.34, as any build without the bound gets):
# the control the glibc check must reject on that CPU.
$(TARGET_DIR)/glibc-control-aarch64: $(VENV)/.dist-tools
	mkdir -p $(TARGET_DIR)
	printf 'int main(void) { return 0; }\n' >$@.c
	$(PY) -m ziglang cc -target aarch64-linux-gnu.2.34 -o $@ $@.c

# The binaries' CPUs and glibc bound (the normal build and the aarch64 control must fail it:
# the check discriminates), the four packages, the bundle on either CPU; then the aarch64
# binary under qemu-user.
test-dist: dist eb-bundle test-build $(TARGET_DIR)/glibc-control-aarch64
	$(PY) tests/dist/check_dist.py dist --max-glibc $(GLIBC) --control $(TARGET_DIR)/debug/drainhook \
		--control-aarch64 $(TARGET_DIR)/glibc-control-aarch64 --bundle dist/eb
	$(MAKE) --no-print-directory test-aarch64

# dist/drainhook-aarch64 under qemu-user, driven by the x86_64 test programs through
# DRAINHOOK_TEST_BIN (tests/dist/drainhook-aarch64.sh): every CLI test (backlog, drain with
# the filebeat simulator, SIGTERM), the agent's end-to-end tests against the emulator
# (the SDK's HTTP stack, IMDS, inotify, signals on that build) and its calls over TLS.
AARCH64_BIN := $(CURDIR)/tests/dist/drainhook-aarch64.sh
test-aarch64: dist-aarch64 test-build venv
	DRAINHOOK_TEST_BIN=$(AARCH64_BIN) cargo test --test registry_formats --test drain_sim -- --test-threads=4
	DRAINHOOK_TEST_BIN=$(AARCH64_BIN) tests/moto_ext/with_moto.sh $(PY) cargo test --test agent --test tls -- --test-threads=4

# Real boots and shutdowns of Debian 12 guests under qemu (TCG): systemd and SysV, each with
# a negative control. The rootfs images are built once with mmdebstrap and cached in .boot/.
# The agent's guest reaches the emulator (and its IMDS stand-in) on the host through qemu's
# user network.
test-boot: dist venv
	tests/moto_ext/with_moto.sh $(PY) $(PY) tests/boot/boot_test.py

boot-images:
	python3 tests/boot/boot_test.py --images-only

# An Elastic Beanstalk bundle skeleton: copy dist/eb/* into your application bundle. Both
# binaries travel in it; the installer takes the one for the instance's CPU (`uname -m`).
# EB_VARIANT=ebextensions-queue for a queue as a second trigger (default: IMDS alone).
EB_VARIANT ?= ebextensions
eb-bundle: dist
	rm -rf dist/eb
	mkdir -p dist/eb/drainhook/systemd/sysvinit dist/eb/.ebextensions dist/eb/.platform/hooks/postdeploy
	cp dist/drainhook-x86_64 dist/drainhook-aarch64 infra/install.sh infra/filebeat/drainhook-report.yml dist/eb/drainhook/
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
