GO      ?= go
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: build test vet
build:
	$(GO) build ./...
vet:
	$(GO) vet ./...
test: build vet
	$(GO) test -race -count=1 -timeout 25m ./...
