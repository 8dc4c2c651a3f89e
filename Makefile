# amperity-async: set-up, generation and checks. Every target bootstraps what it needs.
# `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PATH := $(CURDIR)/$(BIN):$(PATH)

LOCK := openapi/sources.lock.json
# Documents written by hand (the Real-time API), pinned by the documentation pages they follow.
WRITTEN := openapi/realtime.json
OVERLAYS := $(wildcard openapi/overlays/*.yaml)
# Templates may sit in subfolders (property_templates/).
TEMPLATES := $(shell find openapi/templates -type f -name "*.jinja")
PIPELINE := $(wildcard tools/specs/*.py)
BACKEND := tools/build_backend.py tools/editable_wheel.py
# Written by every generation: what the package was made from.
GENERATED := amperity_async/.generated-from
# Set-up that every check needs: the editable install and an up-to-date generated package.
READY := $(VENV)/.installed $(GENERATED)
PYTEST_FLAGS ?=

.DEFAULT_GOAL := install
.PHONY: help install spec generate update-spec check-upstream test typecheck lint dist demo demo-distributed bench clean

## help: list these targets
help:
	@awk '/^## / { line = substr($$0, 4); \
	  if (match(line, /^[a-z-]+: /)) printf "  %-17s %s\n", substr(line, 1, RLENGTH - 2), substr(line, RLENGTH + 1); \
	  else printf "  %-17s %s\n", "", line }' $(MAKEFILE_LIST)

## install: .venv with the package installed editable (by the same build backend as a wheel) and
## the development tools; run by every target below
install: $(READY)

# The build backend's requirements (the generator, ruff, the overlay tooling, setuptools) go into
# .venv first, so that make and the editable install run the same pinned tools, without isolation.
$(VENV)/.tools: pyproject.toml tools/build_requirements.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) tools/build_requirements.py > $(VENV)/build-requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/build-requirements.txt
	touch $@

$(GENERATED): $(LOCK) $(WRITTEN) $(OVERLAYS) $(TEMPLATES) $(PIPELINE) generator-config.yaml openapi/resource-names.yaml custom/client.py pyproject.toml | $(VENV)/.tools
	$(PY) -m tools.specs build
	touch $@

# The editable install reads the sources in place, so a regeneration needs no reinstall.
$(VENV)/.installed: pyproject.toml setup.py $(BACKEND) | $(GENERATED)
	$(PY) -m pip install --quiet --no-build-isolation -e ".[dev]"
	touch $@

## spec: download the pinned upstream documents (from $AMPERITY_SPEC_MIRROR when set) and the pages the
## hand-written documents follow (from $AMPERITY_DOCS_MIRROR when set), verify, normalize
spec: $(VENV)/.tools
	$(PY) -m tools.specs fetch
	$(PY) -m tools.specs normalize

## generate: fetch what is missing, normalize, and regenerate amperity_async/ when anything it is
## made from changed (strict, deterministic)
generate: $(VENV)/.tools
	$(PY) -m tools.specs build

## update-spec: accept what upstream (or the mirror) serves now: re-pin, regenerate, print what changed
update-spec: $(VENV)/.tools
	$(PY) -m tools.specs update

## check-upstream: compare the pins with upstream and the changelog; exit 0 only when nothing changed
check-upstream: $(VENV)/.tools
	$(PY) -m tools.specs check-upstream

## test: the whole suite, packaging checks included (PYTEST_FLAGS="-m 'not packaging'" skips those)
test: $(READY)
	$(BIN)/pytest -q $(PYTEST_FLAGS)

## typecheck: mypy --strict on the hand-written code, the tooling and tests/typing
typecheck: $(READY)
	$(BIN)/mypy

## lint: ruff check and ruff format --check (reports only; changes no file)
lint: $(VENV)/.tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## dist: the sdist and the wheel in dist/, built as `python -m build` builds them from a clone
dist: $(READY)
	$(PY) -m build --outdir dist .

## demo: the main job, a concurrent bulk extraction of a fake tenant (real limits) into ./out/
demo: $(READY)
	$(BIN)/amperity-async demo --out out

## demo-distributed: 4 worker processes extracting from one fake tenant through one Redis budget
demo-distributed: $(READY)
	$(PY) benchmarks/distributed_demo.py

## bench: throughput, rate fidelity, token refresh and extraction under faults against the fake tenant
## (results in benchmarks/results/latest.md and .json, the shared Redis budget's in redis.json;
## BENCH_FLAGS=--quick for a shorter run)
bench: $(READY)
	$(PY) benchmarks/run.py --profile $(BENCH_FLAGS)
	$(PY) benchmarks/redis_budget.py $(BENCH_FLAGS)
	$(PY) benchmarks/realtime.py $(BENCH_FLAGS)

## clean: remove everything built from the pins (downloads, normalized spec, package, build output);
## the next target reinstalls (the editable install's link lives in build/)
clean:
	rm -rf amperity_async openapi/upstream openapi/amperity.json .generate-staging* build dist
	rm -f $(VENV)/.installed
