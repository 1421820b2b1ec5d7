# pmrun: `make run` builds and runs an 8-rank example; `make test` runs the suite.
GO      ?= go
GOFLAGS ?=
CC      ?= gcc
# The interpreters that pmrun._fast is built for (each one found).
PYTHONS ?= python3 /usr/bin/python3
# pmrun's one version (VERSION), for the launcher and the Python package's library.
VERSION := $(shell cat VERSION)
LDFLAGS := -X github.com/pmrun/pmrun/internal/version.Version=$(VERSION)
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build examples python run test test-short bench fuzz soak faults vet clean wheel

all: build

build: examples python
	$(GO) build $(GOFLAGS) -ldflags "$(LDFLAGS)" -o bin/pmrun ./cmd/pmrun

# pmrun's Python package next to the launcher: the sources, the Go runtime
# as a shared library that they load with ctypes, and pmrun._fast.
python:
	@rm -rf bin/python && mkdir -p bin/python
	cp -R python/pmrun python/compat bin/python/
	$(GO) build $(GOFLAGS) -ldflags "$(LDFLAGS)" -buildmode=c-shared -o bin/python/pmrun/libpmrun.so ./pybridge
	@rm -f bin/python/pmrun/libpmrun.h bin/python/pmrun/_fast.c
	@# pmrun._fast, the hot calls without ctypes, for each interpreter found
	@# (one build per ABI tag); where gcc or an interpreter's headers are
	@# missing, pmrun.MPI calls the library through ctypes alone.
	@for py in $(PYTHONS); do \
	  command -v $$py >/dev/null 2>&1 || continue; \
	  set -- $$($$py -c 'import sysconfig as s; print(s.get_config_var("EXT_SUFFIX"), s.get_paths()["include"])' 2>/dev/null); \
	  if [ -z "$$2" ] || [ ! -f "$$2/Python.h" ] || ! command -v $(CC) >/dev/null 2>&1; then \
	    echo "pmrun._fast not built for $$py (no $(CC) or no Python headers: apt-get install python3-dev); pmrun.MPI uses ctypes"; continue; \
	  fi; \
	  [ -f bin/python/pmrun/_fast$$1 ] && continue; \
	  $(CC) -O2 -Wall -shared -fPIC -I"$$2" -o bin/python/pmrun/_fast$$1 python/pmrun/_fast.c -lpthread \
	    || echo "pmrun._fast not built for $$py; pmrun.MPI uses ctypes"; \
	done
	@# Compiled once here: every rank of every job would otherwise compile
	@# MPI.py again (30 ms each) when Python may not write its cache.
	@for py in $(PYTHONS); do \
	  if command -v $$py >/dev/null 2>&1; then $$py -m compileall -q bin/python >/dev/null || true; fi; \
	done

# pmrun as a wheel for pip: the Python package, libpmrun.so, the mpi4py
# package and the launcher, with the pmrun command
# (pip install dist/pmrun-*.whl, offline).
wheel: build
	$(GO) run ./internal/wheel/mkwheel -bin bin -version $(VERSION) -out dist

examples:
	@mkdir -p bin/examples
	$(GO) build $(GOFLAGS) -o bin/examples/ ./examples/mpi/...

run: build
	./bin/pmrun -np 8 ./bin/examples/pi

vet:
	$(GO) vet ./...

test: build vet
	PMRUN_BIN=$(CURDIR)/bin/pmrun $(GO) test -race -count=1 -timeout 25m ./...

test-short: build
	PMRUN_BIN=$(CURDIR)/bin/pmrun $(GO) test -race -short -count=1 ./...

bench: build
	bash bench/run.sh

# Longer fuzzing runs of the decoders of bytes from other processes, each
# for FUZZTIME on one core (their seed corpora, testdata/fuzz and the seeds
# in the tests, run in `make test`), then the Python side's decoders with
# PMRUN_FUZZ_COUNT mutated inputs. docs/security.md lists them.
FUZZ_TARGETS = \
	internal/wire:FuzzDecodeHeader internal/wire:FuzzAcceptHandshake internal/wire:FuzzDialHandshake \
	internal/rendezvous:FuzzServeStream internal/rendezvous:FuzzReadTable \
	node:FuzzReadRequest node:FuzzJobEvents node:FuzzNodeMeta node:FuzzExtractBundle node:FuzzRelayFrames \
	comm:FuzzLinkParse

fuzz: build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== $${t#*:} (./$${t%%:*})"; \
	  $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $${FUZZTIME:-10m} -parallel 1 ./$${t%%:*}; \
	done
	PMRUN_FUZZ_COUNT=$${PMRUN_FUZZ_COUNT:-200000} ./bin/pmrun -np 1 --python $${PMRUN_PYTHON:-/usr/bin/python3} python/tests/test_fuzz.py

# soak: 30 minutes (SOAK_DURATION) of mixed traffic at np 8 (SOAK_NP), sampling
# each rank's memory, goroutines and descriptors, then a flood of one rank;
# exits non-zero if anything grew after warm-up or the flood broke its bound.
soak: build
	$(GO) build -o bench/bin/soak ./bench/soak
	bin/pmrun -np $${SOAK_NP:-8} bench/bin/soak -duration $${SOAK_DURATION:-30m}

# The fault-injection campaign (docs/faults.md): RUNS random workloads,
# each with one random fault, from SEED; Docker runs when an engine answers.
SEED ?= 1
RUNS ?= 500
faults: build
	$(GO) run ./internal/faults/campaign -bin bin/pmrun -seed $(SEED) -runs $(RUNS)

clean:
	rm -rf bin bench/bin dist
