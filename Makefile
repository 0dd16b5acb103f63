# nativekit developer commands. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REPLICAS ?= 1
STAMP := $(VENV)/.installed-dev

.PHONY: help install bytecode lint typecheck docs test test-long test-shop-postgres test-fast test-scale test-faults test-faults-quick shop shop-cluster bench clean vendor-swagger-ui

help:
	@echo "make shop   - run the example shop (orders, payments, inventory) on http://127.0.0.1:8000"
	@echo "make shop-cluster - the shop as three processes on :8001-8003 with Redis + Kafka"
	@echo "make shop-cluster REPLICAS=3 - 3 orders, 2 payments, 2 inventory on a Redis Cluster"
	@echo "                    (SHOP_DATABASE_URL=postgresql://...: inventory on PostgreSQL)"
	@echo "make test   - lint, type-check, build docs, run all tests on real Redis + Kafka"
	@echo "make test-long - the checks too long for make test (shop on PostgreSQL, ...)"
	@echo "make test-scale - shop replicas and command/reply processes on a Redis Cluster"
	@echo "make test-faults - the shop under production faults, long version (docs/reliability.md)"
	@echo "make test-faults-quick - only the quick version make test runs (3 s outages)"
	@echo "make docs   - build the documentation site into site/"
	@echo "make bench  - run the benchmarks (see benchmarks/README.md)"

# Installs this checkout with extras $(1) into the venv. uv installs the dev set in about
# 7 s where pip took 58-79 s on a fresh machine (it resolves, downloads and unpacks in
# parallel); pip installs uv itself and is the fallback where uv cannot run.
# --compile-bytecode: unlike pip, uv leaves the installed modules uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set (this project's machines and CI) Python never caches what
# it compiles, so every process (each pytest worker, each service and CLI call a test
# starts) compiled every module it imported from source again: about 1 s of CPU per
# process (a shop service was live after 1.6 s of CPU instead of 0.5 s).
define install_into_venv
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv \
		&& $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[$(1)]' \
		|| { $(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet -e '.[$(1)]'; }
	@touch $@
endef

$(STAMP): pyproject.toml
	$(call install_into_venv,dev)

install: $(STAMP)

# The checkout's own modules compiled too, for the same reason (0.3 s; compileall skips
# what is up to date, and Python ignores a compiled file older than its source).
bytecode: $(STAMP)
	$(PY) -m compileall -q nativekit examples >/dev/null

lint: $(STAMP)
	$(VENV)/bin/ruff check $(wildcard nativekit tests docs benchmarks examples)
	$(VENV)/bin/ruff format --check nativekit

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict nativekit

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

# Reuses a running Redis / Kafka (or NATIVEKIT_TEST_REDIS_URL / NATIVEKIT_TEST_KAFKA_URL),
# else starts them on free ports for the run and stops them afterwards.
# Test files run in TEST_WORKERS processes (pytest-xdist, a file per worker at a time):
# most tests wait on brokers, leases and subprocesses, not on the CPU.
TEST_WORKERS ?= 4

# promtool for the alert rule tests (tests/deploy): the one on PATH, else unpacked from
# Debian's 'prometheus' package into the venv (apt-get download: no root, no server
# installed or started; as root, apt-get update first when the package lists are empty).
# Without apt the tests say how to get promtool and skip.
PROMTOOL := $(VENV)/bin/promtool

$(PROMTOOL): | $(STAMP)
	@command -v promtool >/dev/null 2>&1 || { \
		tmp=$$(mktemp -d) && (cd $$tmp && { apt-get download prometheus >/dev/null 2>&1 \
			|| { [ "$$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 \
				&& apt-get download prometheus >/dev/null 2>&1; }; } \
			&& dpkg-deb -x prometheus_*.deb root && cp root/usr/bin/promtool $(CURDIR)/$@) \
		|| echo "promtool unavailable (no apt-get/dpkg-deb): the alert rule tests will skip"; \
		rm -rf $$tmp; }

test: lint typecheck docs bytecode $(PROMTOOL)
	rm -f .coverage .coverage.*
	$(PY) -m nativekit.testing.servers -- \
		$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder -m "not scale and not shop_postgres and not long_check" --cov --cov-report= $(PYTEST_ARGS)
	$(PY) -m coverage report

# Replicas of the shop and the command/reply processes on a Redis Cluster (~3 min)
test-scale: bytecode
	$(PY) -m nativekit.testing.servers -- \
		$(PY) -m pytest -q -p no:cacheprovider -m scale $(PYTEST_ARGS) tests/scale

# The shop on PostgreSQL (tests/shop/test_cluster_postgres.py: 50 s and 47 CPU-seconds
# alone at load 4): out of make test until a full run on a quiet machine shows make test
# still ends within 10 minutes with it. Its failures under load (a sale's stock cached from
# before its commit; the test clients' keep-alive race with uvicorn's 5 s idle timeout)
# are fixed (issue 16).
# The checks too long for make test's 10 minutes: the shop on PostgreSQL, the wheel of a
# generated project (and its mypy --strict), a quick consumer benchmark's cleanup and the million-key Redis check
# (~6 min; CI runs it).
test-long: bytecode
	$(PY) -m nativekit.testing.servers -- \
		$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile \
		-m "shop_postgres or long_check" $(PYTEST_ARGS) tests

test-shop-postgres: bytecode
	$(PY) -m nativekit.testing.servers -- \
		$(PY) -m pytest -q -p no:cacheprovider -m shop_postgres $(PYTEST_ARGS) tests/shop

test-fast: bytecode
	$(PY) -m nativekit.testing.servers -- $(PY) -m pytest -q -x $(PYTEST_ARGS)

# The fault suite. make test runs its quick version (3 s outages, a shop per file, the files
# spread through the run by tests/conftest.py); make test-faults the long one (10 s outages,
# more load, ~11 min). Each file starts its own Redis, Tansu and proxies on 127.0.0.1 and
# stops them at the end; FAULTS_RESULTS names a JSON-lines file for the figures
# (tests/faults/report.py).
FAULTS_RESULTS ?= faults-results.jsonl

test-faults-quick: bytecode
	NATIVEKIT_TEST_FAULTS_RESULTS=$(abspath $(FAULTS_RESULTS)) \
		$(PY) -m pytest -q -p no:cacheprovider tests/faults $(PYTEST_ARGS)

test-faults: bytecode
	NATIVEKIT_TEST_FAULTS=long NATIVEKIT_TEST_FAULTS_RESULTS=$(abspath $(FAULTS_RESULTS)) \
		$(PY) -m pytest -q -p no:cacheprovider tests/faults $(PYTEST_ARGS)

SHOP_STAMP := $(VENV)/.installed-shop

$(SHOP_STAMP): pyproject.toml
	$(call install_into_venv,shop)

# The whole shop in one process on memory backends (see docs/shop.md).
shop: $(SHOP_STAMP)
	@echo "Shop on http://127.0.0.1:8000  (try: curl http://127.0.0.1:8000/inventory/products)"
	$(PY) -m uvicorn examples.shop.app:app --host 127.0.0.1 --port 8000

# Three processes on :8001-8003 against Redis + Kafka (started when missing); Ctrl-C stops all.
shop-cluster: bytecode
	$(PY) -m examples.shop.cluster --replicas $(REPLICAS)

# Each script prints a table and, last, one JSON line (benchmarks/harness.py); the
# output of each goes to benchmarks/results/<script>.log, and benchmarks/table.py puts
# the last lines into the table at the top of benchmarks/README.md. Run it alone on
# the machine: every line records the load average at its end.
BENCH_LOG = benchmarks/results
bench: SHELL := /bin/bash
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	mkdir -p $(BENCH_LOG)
	set -o pipefail; $(PY) benchmarks/http_overhead.py | tee $(BENCH_LOG)/http_overhead.log
	set -o pipefail; $(PY) -m nativekit.testing.servers -- $(PY) benchmarks/cache_hit.py | tee $(BENCH_LOG)/cache_hit.log
	set -o pipefail; $(PY) -m nativekit.testing.servers -- sh -c '$(PY) benchmarks/saga_throughput.py --postgres "$$NATIVEKIT_TEST_DATABASE_URL"' | tee $(BENCH_LOG)/saga_throughput.log
	set -o pipefail; $(PY) -m nativekit.testing.servers -- $(PY) benchmarks/consumer_throughput.py --postgres | tee $(BENCH_LOG)/consumer_throughput.log
	set -o pipefail; $(PY) -m nativekit.testing.servers -- $(PY) benchmarks/saga_command_reply.py | tee $(BENCH_LOG)/saga_command_reply.log
	set -o pipefail; $(PY) -m nativekit.testing.servers -- $(PY) benchmarks/shop_load.py --private-redis | tee $(BENCH_LOG)/shop_load.log
	$(PY) benchmarks/table.py --write

# The docs page's Swagger UI, shipped inside the package (services often run without
# internet access): the swagger-ui-dist files it needs, from the npm registry, with their
# licence. Run to move to another version, then commit the files.
SWAGGER_UI_VERSION ?= 5.35.0
SWAGGER_UI_DIR := nativekit/_http/openapi/assets
vendor-swagger-ui:
	rm -rf .swagger-ui && mkdir .swagger-ui
	cd .swagger-ui && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null && tar xzf swagger-ui-dist-*.tgz
	for f in swagger-ui-bundle.js swagger-ui.css; do \
		grep -v 'sourceMappingURL=' .swagger-ui/package/$$f > $(SWAGGER_UI_DIR)/$$f; done
	cp .swagger-ui/package/LICENSE .swagger-ui/package/NOTICE \
		.swagger-ui/package/swagger-ui-bundle.js.LICENSE.txt .swagger-ui/package/favicon-32x32.png \
		$(SWAGGER_UI_DIR)/
	echo "swagger-ui-dist $(SWAGGER_UI_VERSION) from the npm registry (make vendor-swagger-ui)" \
		> $(SWAGGER_UI_DIR)/SOURCE.txt
	rm -rf .swagger-ui

clean:
	rm -rf $(VENV) site .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
