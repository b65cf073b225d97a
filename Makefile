# qga-passthrough: the front door.  See README.md.
#
#   make demo     build what is missing, boot the tiny guest, talk to its agent
#   make check    build what is missing and run every check
#
# BASE=10.2 (default 10.0) does every step for the series on QEMU 10.2
# (patches-10.2/, build/qemu-10.2, build/guest-10.2).
#
# Steps (each builds what it needs first):
#   make deps          install build/test dependencies (root, apt; idempotent)
#   make source        download the pinned Debian qemu source package (cached)
#   make tree          build/qemu: the source as git, tagged 'upstream', + our series
#   make build         configure (once) and build QEMU in build/qemu/build
#   make guest         the tiny guests (our qemu-ga; Debian bookworm's 7.2)
#   make export        regenerate patches/ from the tree's commits upstream..HEAD
#   make export-check  fail when the tree holds work that patches/ does not
#   make build-each    build every patch of the series on its own (slow;
#                      FIRST=N starts at patch N)
#   make check-mutants break the series on purpose, one small change at a
#                      time, and check that the tests notice
#   make build-fuzz    the fuzz target, with clang, libFuzzer, ASan and UBSan,
#                      in build/qemu/build-fuzz
#   make fuzz          fuzz the guest agent channel for FUZZ_TIME seconds
#                      (default 180); corpus and crashes in build/fuzz
#   make fuzz-fast     the same without ASan, for long campaigns
#                      (FUZZ_JOBS=N processes)
#   make fuzz-record   record the real qemu-ga's replies for the seeds
#   make check-disabled  QEMU configured with --disable-qga-passthrough
#                      (build/qemu/build-noqga) builds and lacks it
#   make check-sanitizers  QEMU built with ASan + UBSan (build/qemu/build-san):
#                      the series' qtests and unit tests, the fuzz
#                      regression inputs and the end-to-end suites
#   make clean         remove QEMU's build directory (the tree and caches stay)
#   make distclean     remove build/ entirely (downloads and ccache stay cached)

SHELL := /bin/bash
# BASE: the QEMU the series is for: 10.0 (Debian trixie's package; the
# series in patches/, the tree in build/qemu) or 10.2 (Debian unstable's;
# patches-10.2/, build/qemu-10.2).  make BASE=10.2 check
BASE ?= 10.0
ifeq ($(BASE),10.0)
TREE    := build/qemu
PATCHES := patches
GUESTS  := build/guest
else
TREE    := build/qemu-$(BASE)
PATCHES := patches-$(BASE)
GUESTS  := build/guest-$(BASE)
endif
export QGA_BASE := $(BASE)
export QGA_PATCHES := $(CURDIR)/$(PATCHES)
export QGA_TREE := $(CURDIR)/$(TREE)
export QGA_GUESTS := $(CURDIR)/$(GUESTS)
QEMU  := $(TREE)/build/qemu-system-x86_64
QGA   := $(TREE)/build/qga/qemu-ga
PYTHON := /usr/bin/python3
# make check T=agent: only the checks whose name contains 'agent'
T ?=
FIRST ?= 1

.PHONY: all deps source tree build build-each guest export export-check check check-mutants demo clean distclean bench build-fuzz fuzz build-fuzz-fast fuzz-fast fuzz-record build-sanitizers check-sanitizers check-disabled

all: build

deps:
	@scripts/deps.sh

source: deps
	@scripts/source.sh >/dev/null

tree: source
	@scripts/tree.sh $(TREE)

build: tree
	@scripts/build.sh $(TREE)

guest: build
	@guest/make-guest.sh $(GUESTS)/current $(QGA)
	@guest/make-guest.sh $(GUESTS)/bookworm bookworm

build-each: tree
	@scripts/build-each.sh $(TREE) $(FIRST)

export:
	@scripts/export.sh $(TREE)

export-check:
	@scripts/export.sh --check $(TREE)

check: guest build-fuzz
	@$(PYTHON) tests/run.py $(if $(T),-k $(T))

build-fuzz: tree
	@QGA_FLAVOUR=fuzz QGA_NINJA_TARGETS=tests/fuzz/qga-channel-fuzz \
		scripts/build.sh $(TREE)

FUZZ_TIME ?= 180
fuzz: build-fuzz
	@$(PYTHON) scripts/fuzz.py --time $(FUZZ_TIME)

# long campaigns: LeakSanitizer only (about 4x the executions per second of
# make fuzz), FUZZ_JOBS processes
FUZZ_JOBS ?= 1
build-fuzz-fast: tree
	@QGA_FLAVOUR=fuzz-fast QGA_NINJA_TARGETS=tests/fuzz/qga-channel-fuzz \
		scripts/build.sh $(TREE)

fuzz-fast: build-fuzz-fast
	@$(PYTHON) scripts/fuzz.py --fast --jobs $(FUZZ_JOBS) --time $(FUZZ_TIME)

fuzz-record: guest
	@$(PYTHON) scripts/fuzz-record.py

build-sanitizers: tree
	@QGA_FLAVOUR=sanitizers scripts/build.sh $(TREE)

# QEMU configured with --disable-qga-passthrough builds and lacks it
check-disabled: build
	@QGA_FLAVOUR=disabled QGA_NINJA_TARGETS=qemu-system-x86_64 \
		scripts/build.sh $(TREE)
	@$(PYTHON) scripts/check-disabled.py

check-sanitizers: guest build-fuzz build-sanitizers
	@$(PYTHON) scripts/check-sanitizers.py $(if $(T),-k $(T))

# make check-mutants K=event: only mutants whose name contains 'event'
K ?=
check-mutants: guest
	@$(PYTHON) scripts/check-mutants.py $(if $(K),-k $(K))

# make bench BENCH_ARGS="--scale 0.2": options of scripts/bench.py (--help)
BENCH_ARGS ?=
bench: guest
	@$(PYTHON) scripts/bench-boot.py
	@$(PYTHON) scripts/bench.py $(BENCH_ARGS)

demo: guest
	@$(PYTHON) scripts/demo.py

clean:
	rm -rf $(TREE)/build

distclean:
	rm -rf build
