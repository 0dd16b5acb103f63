# nativekit developer commands. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: help install lint typecheck docs test test-fast test-faults shop shop-cluster bench clean

help:
	@echo "make shop   - run the example shop (orders, payments, inventory) on http://127.0.0.1:8000"
	@echo "make shop-cluster - the shop as three processes on :8001-8003 with Redis + Kafka"
	@echo "make test   - lint, type-check, build docs, run all tests on real Redis + Kafka"
	@echo "make test-faults - the shop under production faults, long version (docs/reliability.md)"
	@echo "make docs   - build the documentation site into site/"
	@echo "make bench  - run the benchmarks (see benchmarks/README.md)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

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

test: lint typecheck docs
	rm -f .coverage .coverage.*
	$(PY) -m nativekit.testing.servers -- \
		$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile \
		--cov --cov-report= $(PYTEST_ARGS)
	$(PY) -m coverage report

test-fast: $(STAMP)
	$(PY) -m nativekit.testing.servers -- $(PY) -m pytest -q -x $(PYTEST_ARGS)

# The fault suite with more load around each fault (make test runs the quick version).
# It starts its own Redis, Tansu and proxies on 127.0.0.1 and stops them at the end;
# FAULTS_RESULTS names a JSON-lines file for the figures (tests/faults/report.py).
FAULTS_RESULTS ?= faults-results.jsonl

test-faults: $(STAMP)
	NATIVEKIT_TEST_FAULTS=long NATIVEKIT_TEST_FAULTS_RESULTS=$(abspath $(FAULTS_RESULTS)) \
		$(PY) -m pytest -q -p no:cacheprovider tests/faults $(PYTEST_ARGS)

SHOP_STAMP := $(VENV)/.installed-shop

$(SHOP_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[shop]'
	@touch $@

# The whole shop in one process on memory backends (see docs/shop.md).
shop: $(SHOP_STAMP)
	@echo "Shop on http://127.0.0.1:8000  (try: curl http://127.0.0.1:8000/inventory/products)"
	$(PY) -m uvicorn examples.shop.app:app --host 127.0.0.1 --port 8000

# Three processes on :8001-8003 against Redis + Kafka (started when missing); Ctrl-C stops all.
shop-cluster: $(STAMP)
	$(PY) -m examples.shop.cluster

# Each script prints a table and, last, one JSON line; see benchmarks/README.md.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/http_overhead.py
	$(PY) -m nativekit.testing.servers -- $(PY) benchmarks/cache_hit.py
	$(PY) -m nativekit.testing.servers -- $(PY) benchmarks/saga_throughput.py
	$(PY) -m nativekit.testing.servers -- $(PY) benchmarks/consumer_throughput.py
	$(PY) -m nativekit.testing.servers -- $(PY) benchmarks/saga_command_reply.py
	$(PY) -m nativekit.testing.servers -- $(PY) benchmarks/shop_load.py

clean:
	rm -rf $(VENV) site .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
