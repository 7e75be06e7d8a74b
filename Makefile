# kgmm — the two quickstart commands are `make demo` and `make test`.
# Each creates .venv (Python ≥ 3.11) and installs what it needs on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kgmm-installed

.PHONY: demo test lint bench neo4j-build neo4j clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/kgmm demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/kg_ops.py --json docs/kg_ops.json

neo4j-build: $(STAMP)
	$(PY) scripts/neo4j_server.py build

neo4j: $(STAMP)
	$(PY) scripts/neo4j_server.py start --port 7687

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache scripts/neo4j/target
