# amperity-async: set-up, generation and checks. Every target bootstraps what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PATH := $(CURDIR)/$(BIN):$(PATH)

OVERLAYS := $(wildcard openapi/overlays/*.yaml)
TEMPLATES := $(wildcard openapi/templates/*.jinja)
PIPELINE := $(wildcard custom/specs/*.py)

.PHONY: install spec generate update-spec check-upstream test typecheck demo demo-distributed bench clean

install: $(VENV)/.installed

# Pinned tooling first (the generator and what the spec pipeline imports), then the package.
$(VENV)/.tools: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "openapi-python-client==0.29.1" "ruff==0.17.6" "python-jsonpath>=1.3" "PyYAML>=6" "attrs>=23.2"
	touch $@

openapi/upstream/.fetched: openapi/sources.lock.json | $(VENV)/.tools
	$(PY) -m custom.specs fetch
	touch $@

openapi/amperity.json: openapi/upstream/.fetched $(OVERLAYS) $(PIPELINE)
	$(PY) -m custom.specs normalize

amperity_async/__init__.py: openapi/amperity.json generator-config.yaml $(TEMPLATES) $(PIPELINE)
	$(PY) -m custom.specs generate

$(VENV)/.installed: amperity_async/__init__.py pyproject.toml setup.py
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

## spec: download the pinned upstream documents (from $$AMPERITY_SPEC_MIRROR when set), verify, normalize
spec: $(VENV)/.tools
	$(PY) -m custom.specs fetch
	touch openapi/upstream/.fetched
	$(PY) -m custom.specs normalize

## generate: regenerate amperity_async/ from openapi/amperity.json (strict, deterministic)
generate: openapi/amperity.json
	$(PY) -m custom.specs generate

## update-spec: accept what upstream (or the mirror) serves now: re-pin, regenerate, print what changed
update-spec: $(VENV)/.tools
	$(PY) -m custom.specs update

## check-upstream: compare the pins with upstream and the changelog; exit 0 only when nothing changed
check-upstream: $(VENV)/.tools
	$(PY) -m custom.specs check-upstream

test: $(VENV)/.installed
	$(BIN)/pytest -q

## demo: the main job, a concurrent bulk extraction of a fake tenant (real limits) into ./out/
demo: $(VENV)/.installed
	$(BIN)/amperity-async demo --out out

## demo-distributed: 4 worker processes extracting from one fake tenant through one Redis budget
demo-distributed: $(VENV)/.installed
	$(PY) benchmarks/distributed_demo.py

typecheck: $(VENV)/.installed
	$(BIN)/mypy

## bench: throughput, rate fidelity, token refresh and extraction under faults against the fake tenant
## (results in benchmarks/results/latest.md and .json, the shared Redis budget's in redis.json;
## BENCH_FLAGS=--quick for a shorter run)
bench: $(VENV)/.installed
	$(PY) benchmarks/run.py --profile $(BENCH_FLAGS)
	$(PY) benchmarks/redis_budget.py $(BENCH_FLAGS)

clean:
	rm -rf amperity_async openapi/upstream openapi/amperity.json .generate-staging*
