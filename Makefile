# gala-gopher: the two commands that matter are `make run` and `make test`.
CARGO ?= cargo
CONFIG ?= config/gala-gopher.toml

.PHONY: run run-spider build test unit integration lint bench rpm fmt clean

## Install what is missing, build, and run the agent on its default config.
run:
	scripts/deps.sh run
	$(CARGO) build --release -p gala-gopher -p gopher-kafka
	./target/release/gala-gopher --config $(CONFIG)

## A topology on this one machine, without Kafka or Neo4j: gala-gopher with the
## eBPF tcp_link probe writing metric log files, and gala-spider following them;
## open http://127.0.0.1:11115/. The eBPF probe needs root (CAP_BPF, CAP_PERFMON).
## SPIDER_UI=neo4j also writes to the Neo4j of config/gala-spider.toml.
SPIDER_DIR ?= $(CURDIR)/target/run-spider
SPIDER_UI ?= none
run-spider:
	scripts/deps.sh run
	$(CARGO) build --release -p gala-gopher -p gala-spider
	@if [ "$$(id -u)" != 0 ]; then echo "run-spider: the eBPF tcp_link probe needs root (CAP_BPF, CAP_PERFMON): run it as root" >&2; exit 1; fi
	@mkdir -p $(SPIDER_DIR)
	@printf '%s\n' '[global]' 'meta_dir = "$(CURDIR)/meta"' 'state_dir = "$(SPIDER_DIR)/state"' \
		'[metric]' 'out_channel = "logs"' '[event]' 'out_channel = "logs"' '[meta]' 'out_channel = "logs"' \
		'[logs]' 'metric_dir = "$(SPIDER_DIR)/metrics"' 'event_dir = "$(SPIDER_DIR)/event"' \
		'meta_dir = "$(SPIDER_DIR)/meta"' 'debug_dir = "$(SPIDER_DIR)/debug"' \
		'[[probes]]' 'name = "tcp_link"' 'param = "-t 5"' 'switch = "on"' > $(SPIDER_DIR)/gala-gopher.toml
	@sed -e 's|^data_source = .*|data_source = "logfile"|' -e 's|^ui_source = .*|ui_source = "$(SPIDER_UI)"|' \
		-e 's|^metric_dir = .*|metric_dir = "$(SPIDER_DIR)/metrics"|' config/gala-spider.toml > $(SPIDER_DIR)/gala-spider.toml
	@./target/release/gala-gopher --config $(SPIDER_DIR)/gala-gopher.toml 2>$(SPIDER_DIR)/gala-gopher.log & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT INT TERM; \
	echo "gala-gopher: pid $$pid, log $(SPIDER_DIR)/gala-gopher.log; gala-spider: http://127.0.0.1:11115/ (Ctrl-C stops both)"; \
	./target/release/gala-spider --config $(SPIDER_DIR)/gala-spider.toml

## Build the agent (release). TAIL=<tail.conf> builds only what a legacy
## tail.conf leaves in (config/tail.conf; scripts/tail-features.sh). The Kafka
## exporter's librdkafka is libgopher_kafka.so (kafka/), built beside the agent
## unless the build leaves Kafka out.
build:
ifdef TAIL
	features=$$(scripts/tail-features.sh '$(TAIL)') && \
		echo "$(CARGO) build --release -p gala-gopher $$features" && \
		$(CARGO) build --release -p gala-gopher $$features && \
		case "$$features" in *kafka*) $(CARGO) build --release -p gopher-kafka ;; esac
else
	$(CARGO) build --release -p gala-gopher -p gopher-kafka
endif

## Install what the tests need and run every test.
test:
	scripts/deps.sh test
	$(CARGO) build -p gala-gopher -p gopher-ffi -p gala-spider -p gopher-ctl -p gopher-kafka
	$(CARGO) test --workspace --no-fail-fast

lint:
	scripts/web-vendor.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Benchmarks: ratios against peers run in the same job (see bench/RESULTS.md).
bench:
	scripts/deps.sh bench
	bench/run.sh

## The rpms gala-gopher, gala-gopher-devel and gala-spider and their source
## rpm, under target/rpm; built offline from vendored crates (docs/install.md).
## RPM_RELEASE=<n> sets the release (default 1).
rpm:
	scripts/rpm.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
