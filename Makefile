# kwatt developer entry points. CI runs `make test` (.ci/run).
#   make demo [DEMO_ARGS="--nodes 5 --duration 60"]   the pipeline with private Mosquitto + InfluxDB
#   make test                                        lint, type check, test suite (real servers)
#   make lint                                        ruff + mypy only
#   make bench [BENCH_ARGS="--only codec"]            benchmarks → BENCHMARKS.md (bench/run.py)
#   make clean / make distclean                      caches / caches and .venv

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
BOOTSTRAP := bash scripts/bootstrap.sh
DEMO_ARGS ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help demo test lint checks pytest bench clean distclean

help:
	@sed -n '2,6p' Makefile | sed 's/^# *//'

demo:
	$(BOOTSTRAP) --for demo
	$(VENV)/bin/kwatt demo $(DEMO_ARGS)

test:
	$(BOOTSTRAP) --for test
	@$(MAKE) --no-print-directory checks pytest

lint:
	$(BOOTSTRAP) --venv-only
	@$(MAKE) --no-print-directory checks

# no bootstrap: called by test and lint after theirs
checks:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# pytest exits 5 when it collected no tests: that is a failure too (make fails on any non-zero)
pytest:
	@$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

# BENCH_ARGS="--only codec,analytics" or "--quick --output /tmp/B.md"; writes BENCHMARKS.md
bench:
	$(BOOTSTRAP) --for test
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist .state
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 \
	    | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
