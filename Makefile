# pmrun: `make run` builds and runs an 8-rank example; `make test` runs the suite.
GO      ?= go
GOFLAGS ?=
# pmrun's one version (VERSION), for the launcher and the Python package's library.
VERSION := $(shell cat VERSION)
LDFLAGS := -X github.com/pmrun/pmrun/internal/version.Version=$(VERSION)
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build examples python run test test-short bench fuzz vet clean wheel

all: build

build: examples python
	$(GO) build $(GOFLAGS) -ldflags "$(LDFLAGS)" -o bin/pmrun ./cmd/pmrun

# pmrun's Python package next to the launcher: the sources and the Go runtime
# as a shared library that they load with ctypes.
python:
	@rm -rf bin/python && mkdir -p bin/python
	cp -R python/pmrun python/compat bin/python/
	$(GO) build $(GOFLAGS) -ldflags "$(LDFLAGS)" -buildmode=c-shared -o bin/python/pmrun/libpmrun.so ./pybridge
	@rm -f bin/python/pmrun/libpmrun.h
	@# Compiled once here: every rank of every job would otherwise compile
	@# MPI.py again (30 ms each) when Python may not write its cache.
	@for py in python3 /usr/bin/python3; do \
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
# for FUZZTIME (their seed corpora run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeHeader -fuzztime $${FUZZTIME:-10m} ./internal/wire
	$(GO) test -run '^$$' -fuzz FuzzExtractBundle -fuzztime $${FUZZTIME:-10m} ./node

clean:
	rm -rf bin bench/bin dist
