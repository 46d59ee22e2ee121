# The two commands of the README: `make demo` and `make test`.
# Both create what they need: Debian packages (when root and missing) and a venv in .venv; the
# demo installs only pulpinit and the fakes' mongomock, the tests the whole test extra.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp
# Test processes: the suite waits on real processes and servers much of the time, so three share
# two cores well. Tests are dealt out one by one, except the groups that must share a worker: the
# differential tier and the RabbitMQ tests start their brokers once (xdist_group).
JOBS   ?= 3
PYTEST_PARALLEL := -n $(JOBS) --dist loadgroup
# SecantusDB, the independent MongoDB-wire server the tests run against, needs a newer pymongo
# than pulpinit supports: it gets its own venv (tests/secantus.py finds it there).
PEERS       := .venv-peers
PEERS_STAMP := $(PEERS)/.installed-stamp
SECANTUSDB  := secantusdb==0.7.0b3

# Build deps of python-augeas and python-qpid-proton (with Cyrus SASL and OpenSSL), augparse
# for the lens tests, and the real peers of the integration tests and benchmarks.
APT_PACKAGES := python3-venv gcc libaugeas-dev augeas-lenses augeas-tools libsasl2-dev \
	libsasl2-modules sasl2-bin libssl-dev util-linux passwd procps rabbitmq-server tini dumb-init faketime openssl

# The container tier (`make test-containers`, tests/containers): rootful podman with runc, a Debian
# root filesystem made by mmdebstrap, network namespaces (ip), and podman-compose from PyPI in a
# venv of the tier's cache directory (outside the work tree, with the images' other caches).
CONTAINER_APT_PACKAGES := podman runc mmdebstrap iproute2
CONTAINER_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pulpinit/containers
PODMAN_COMPOSE_VERSION := 1.6.0
PODMAN_COMPOSE := $(CONTAINER_CACHE)/podman-compose-$(PODMAN_COMPOSE_VERSION)/bin/podman-compose

.PHONY: demo test test-fast test-containers oracle lint bench docs venv system-deps container-deps clean

# The virtual environment alone (the README's "Try it by hand").
venv: $(STAMP)

# What the demo needs of APT_PACKAGES: the build dependencies of python-augeas and python-qpid-proton.
DEMO_APT_PACKAGES := python3-venv gcc libaugeas-dev augeas-lenses libsasl2-dev libsasl2-modules sasl2-bin \
	libssl-dev util-linux passwd procps

demo: $(DEMO_STAMP)
	$(BIN)/python -m pulpinit.testing.demo

# Lint, then every tier but the container one: the unit tests, the fakes, PID namespaces, SecantusDB,
# RabbitMQ and the differential tier.
test: lint $(PEERS_STAMP)
	$(BIN)/pytest $(PYTEST_PARALLEL)

# For developers: the unit tier only (no real peers, no PID namespaces or other users, no RabbitMQ,
# nothing that takes seconds).
test-fast: $(STAMP)
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not (slow or root or rabbitmq or oracle or peers)"

# pulpinit's images under podman; the images are built once and cached by content. A test's
# timeout covers the first build (about a minute here, the root filesystem included).
test-containers: $(STAMP) $(PEERS_STAMP) $(PODMAN_COMPOSE)
	PODMAN_COMPOSE=$(PODMAN_COMPOSE) $(BIN)/pytest -o timeout=900 tests/containers

# The differential tier alone (it is part of `make test` too), rewriting docs/oracle.md's table.
oracle: $(STAMP) $(PEERS_STAMP)
	PULPINIT_ORACLE_WRITE=1 $(BIN)/pytest -m oracle tests/test_oracle.py

# The same checks as .pre-commit-config.yaml: ruff (complexity included), ruff-format, mypy --strict
# on the package, and mypy (default rules) on the tests and benchmarks.
lint: $(STAMP)
	$(BIN)/ruff check pulpinit tests benchmarks
	$(BIN)/ruff format --check pulpinit tests benchmarks
	$(BIN)/mypy pulpinit
	$(BIN)/mypy --config-file tests/mypy.ini tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# The tables of docs/ generated from pulpinit's own (every variable, knob and failure class);
# tests/test_docs.py fails when they are out of date.
docs: $(STAMP)
	PYTHONPATH=tests $(BIN)/python -m helpers.doctables

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
		| grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing Debian packages (install them as root):" $$missing >&2; \
	fi

container-deps:
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(CONTAINER_APT_PACKAGES)"

$(PODMAN_COMPOSE): | container-deps
	$(PYTHON) -m venv $(dir $(@D))
	$(dir $@)pip install -q 'podman-compose==$(PODMAN_COMPOSE_VERSION)'

$(STAMP): setup.cfg pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(DEMO_STAMP)

# The demo's venv: pulpinit and the demo extra only (a venv made for the tests has them already).
$(DEMO_STAMP): setup.cfg pyproject.toml
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(DEMO_APT_PACKAGES)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

$(PEERS_STAMP): Makefile | system-deps
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q '$(SECANTUSDB)'
	touch $@

clean:
	rm -rf $(VENV) $(PEERS) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
