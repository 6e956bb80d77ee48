# gala-gopher: the two commands that matter are `make run` and `make test`.
CARGO ?= cargo
CONFIG ?= config/gala-gopher.toml

.PHONY: run build test unit integration lint bench fmt clean

## Install what is missing, build, and run the agent on its default config.
run:
	scripts/deps.sh run
	$(CARGO) build --release -p gala-gopher
	./target/release/gala-gopher --config $(CONFIG)

build:
	$(CARGO) build --release -p gala-gopher

## Install what the tests need and run every test.
test:
	scripts/deps.sh test
	$(CARGO) build -p gala-gopher -p gopher-ffi
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Benchmarks: ratios against peers run in the same job (see bench/RESULTS.md).
bench:
	scripts/deps.sh bench
	bench/run.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
