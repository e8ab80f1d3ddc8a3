# Switchboard's build. `make run` and `make test` install what they need on a fresh machine.
#
# The browser bundle is built with cargo, wasm-bindgen (the CLI at exactly the version
# pinned in Cargo.toml), our split step (tools/wasm-split: the main module and one module
# per lazily loaded page) and npm's binaryen wasm-opt; then the server binary. cargo-leptos
# does the same for those who have it (`cargo leptos watch --split`), from
# [package.metadata.leptos].

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
SITE := target/site
PKG := $(SITE)/pkg
WASM_TARGET := wasm32-unknown-unknown
WASM_PROFILE := wasm-release
WASM_IN := target/$(WASM_TARGET)/$(WASM_PROFILE)/switchboard.wasm
WASM_BINDGEN_VERSION := $(shell sed -n 's/^wasm-bindgen = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
WASM_OPT := tools/node_modules/.bin/wasm-opt
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue
WASM_SPLIT := tools/wasm-split/target/release/switchboard-wasm-split
WASM_MAIN := target/wasm-split/switchboard.wasm
ATLAS := tools/node_modules/world-atlas/countries-110m.json
CHROMIUM ?= /usr/bin/chromium
SERVER := target/release/switchboard
SOURCES := $(shell find src style public migrations -type f) Cargo.toml Cargo.lock

.PHONY: build run cluster simulate test tools check-tools fmt-check clippy rust-test e2e e2e-deps bench bench-cluster bench-polls bench-docs bench-map bench-chart bench-ingest clean wasm-size services

## Install the wasm32 target, the wasm-bindgen CLI and wasm-opt when missing.
tools:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@if [ "$$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$(WASM_BINDGEN_VERSION)" ]; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
	  $(CARGO) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --locked \
	    || $(CARGO) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi
	@[ -x $(WASM_OPT) ] && [ -f $(ATLAS) ] && [ -d tools/node_modules/y-websocket ] \
	  || (cd tools && npm install --no-audit --no-fund)
	@command -v brotli >/dev/null || apt-get install -y brotli || (apt-get update && apt-get install -y brotli)
	@command -v zopfli >/dev/null || apt-get install -y zopfli || (apt-get update && apt-get install -y zopfli)
	@[ -x $(WASM_SPLIT) ] && [ $(WASM_SPLIT) -nt tools/wasm-split/src/main.rs ] \
	  || $(CARGO) build --release --locked --manifest-path tools/wasm-split/Cargo.toml

## Build the browser bundle and the server (release).
build: $(SERVER) $(PKG)/switchboard_bg.wasm $(PKG)/switchboard.css site-assets

$(PKG)/switchboard_bg.wasm: $(SOURCES) | tools
	$(CARGO) build --lib --target $(WASM_TARGET) --profile $(WASM_PROFILE) --no-default-features --features hydrate
	mkdir -p $(PKG)
	rm -f $(PKG)/split_*.wasm* $(PKG)/chunk_*.wasm* $(PKG)/__wasm_split*
	mkdir -p $(dir $(WASM_MAIN))
	$(WASM_SPLIT) $(WASM_IN) $(PKG) $(WASM_MAIN) > target/wasm-split/modules
	wasm-bindgen --target web --no-typescript --keep-lld-exports --out-dir $(PKG) --out-name switchboard $(WASM_MAIN)
	for module in $(PKG)/switchboard_bg.wasm $$(cat target/wasm-split/modules); do \
	  $(WASM_OPT) $(WASM_OPT_FLAGS) $$module -o $$module 2>&1 | { grep -v 'unknown name subsection' || true; }; \
	done
	# The compressed copies the server sends (see `server::bundle`): brotli to browsers that
	# take it (over HTTPS, all of them), gzip to the others. The gzip copies are zopfli's:
	# any gzip reader takes them, and they are 4-5 % smaller than `gzip -9`'s.
	# zopfli exits 0 even when it could not write a copy: none may be stale or cut short.
	rm -f $(PKG)/switchboard_bg.wasm.gz $(PKG)/switchboard.js.gz $(PKG)/__wasm_split.*.js.gz
	zopfli $(PKG)/switchboard_bg.wasm $(PKG)/switchboard.js $(PKG)/__wasm_split.*.js $$(cat target/wasm-split/modules)
	gzip -t $(PKG)/switchboard_bg.wasm.gz $(PKG)/switchboard.js.gz $(PKG)/__wasm_split.*.js.gz \
	  $$(sed 's/$$/.gz/' target/wasm-split/modules)
	brotli -q 11 -kf $(PKG)/switchboard_bg.wasm $(PKG)/switchboard.js $(PKG)/__wasm_split.*.js $$(cat target/wasm-split/modules)
	@tools/wasm_size.sh $(PKG)

$(PKG)/switchboard.css: style/main.css | tools
	mkdir -p $(PKG)
	cp style/main.css $@
	rm -f $@.gz
	zopfli $@
	gzip -t $@.gz
	brotli -q 11 -kf $@

.PHONY: site-assets
site-assets: | tools
	mkdir -p $(SITE)/world
	cp -r public/. $(SITE)/
	cp $(ATLAS) $(SITE)/world/countries-110m.json

$(SERVER): $(SOURCES)
	$(CARGO) build --release --bin switchboard --no-default-features --features ssr

## Build and serve on http://127.0.0.1:3000 with the embedded SQLite default.
run: build
	./$(SERVER)

## N nodes (3 unless N says) behind HAProxy on http://127.0.0.1:3000, on the machine's
## PostgreSQL and Redis (tools/cluster.sh). Ctrl-C stops them.
N ?= 3
cluster: build
	tools/cluster.sh $(N)

## Feed the server started by `make run` demo data: sensors and people walking on the map.
## Options go in ARGS, e.g. `make simulate ARGS="--sensors 8 --rate 5"`.
simulate: $(SERVER)
	./$(SERVER) simulate $(ARGS)

## The compressed size of the release WASM bundle (gzip, and brotli).
wasm-size: $(PKG)/switchboard_bg.wasm
	@tools/wasm_size.sh $(PKG)

## PostgreSQL and Redis for the cluster's tests: the machine's own where they answer, else private
## instances under target/services (tools/services.sh; `tools/services.sh stop` ends those).
services:
	tools/services.sh start

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: tools
	$(CARGO) clippy --no-default-features --features ssr --all-targets -- -D warnings
	$(CARGO) clippy --lib --target $(WASM_TARGET) --no-default-features --features hydrate -- -D warnings
	$(CARGO) clippy -p switchboard-bench --all-targets -- -D warnings

rust-test: tools
	tools/services.sh start
	$(CARGO) test --no-default-features --features ssr 2>&1 | tee target/rust-test.log
	# The features' suites again, each server on a PostgreSQL database of its own.
	SWITCHBOARD_TEST_ENGINE=postgres $(CARGO) test --no-default-features --features ssr \
	  --test accounts --test chat --test guests --test location --test sensors --test polls --test documents 2>&1 | tee -a target/rust-test.log
	$(CARGO) test -p switchboard-bench 2>&1 | tee -a target/rust-test.log

e2e-deps:
	@[ -x $(CHROMIUM) ] || (apt-get update && apt-get install -y chromium)
	@[ -d end2end/node_modules/@playwright/test ] || (cd end2end && npm ci --no-audit --no-fund)

e2e: build e2e-deps
	tools/services.sh start
	cd end2end && CHROMIUM=$(CHROMIUM) npx playwright test 2>&1 | tee ../target/e2e.log

## Every check: format, clippy for both targets, Rust tests, Playwright against the release build.
test:
	mkdir -p target
	$(MAKE) fmt-check
	$(MAKE) clippy
	$(MAKE) rust-test
	$(MAKE) e2e
	tools/wasm_size.sh $(PKG) --check 400
	@python3 tools/summary.py target/rust-test.log target/e2e.log

BENCH := target/release/switchboard-bench
INGEST_BENCH := target/release/switchboard-bench-ingest
POLLS_BENCH := target/release/switchboard-bench-polls
DOCS_BENCH := target/release/switchboard-bench-docs

$(BENCH) $(INGEST_BENCH) $(POLLS_BENCH) $(DOCS_BENCH) &: $(shell find bench/src -type f) bench/Cargo.toml $(SOURCES)
	$(CARGO) build --release -p switchboard-bench

## Switchboard against the Django Channels and Socket.IO baselines: fan-out, ramp, idle memory,
## broadcast, connect rate; one table with ratios (docs/benchmarks.md). Settings via environment,
## e.g. `make bench DURATION=20 CONNECTIONS=19000`.
bench: $(SERVER) $(BENCH)
	./tools/bench.sh

## Map frame time with 1,000 moving markers, against a baseline without markers.
bench-map: build e2e-deps
	./tools/page-bench.sh map.js "$${SECONDS_PER_RUN:-10}" $${MARKERS:-1000}

## Chart frame time: 10 sensors of 10,000 readings streaming at 10 Hz, against 1 of 1,000.
bench-chart: build e2e-deps
	./tools/page-bench.sh chart.js "$${SECONDS_PER_RUN:-10}"

## Several nodes on PostgreSQL and Redis: latency added by crossing nodes, throughput with the
## engines' CPU counted in, and 100,000 connections over six nodes (docs/benchmarks.md).
bench-cluster: $(SERVER) $(BENCH)
	./tools/cluster-bench.sh

## Live polls: 10,000 voters on one poll within 10 s, on one SQLite node and on three nodes on
## PostgreSQL and Redis: time until every voter has the final tally, CPU per vote, the store's
## share (docs/benchmarks.md).
bench-polls: $(SERVER) $(BENCH)
	./tools/polls-bench.sh

## Shared documents, on one SQLite node and on two nodes on PostgreSQL and Redis: 50 editors
## typing 5 characters a second each into one document for 60 s (keystroke to the other editors,
## CPU per update, every copy the same at the end), opening a 100,000-edit document before and
## after its snapshot, memory per open document (docs/benchmarks.md). Settings via environment,
## e.g. `make bench-docs EDITORS=20 TYPE_SECONDS=10`.
bench-docs: $(SERVER) $(DOCS_BENCH)
	./tools/docs-bench.sh

## Sensor readings ingested and made durable per second over HTTP, for a few batch sizes and
## connection counts, as ratios to one reading per request on one connection (docs/benchmarks.md).
bench-ingest: $(SERVER) $(INGEST_BENCH)
	./tools/ingest-bench.sh $(ARGS)

clean:
	$(CARGO) clean
