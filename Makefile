# The two commands a newcomer needs: `make demo` and `make test`. Both install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PM := $(BIN)/patentminer
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck bench clean neo4j-stop

install: $(STAMP)

# Re-install when the package metadata changes; the Neo4j jars go to $PATENTMINER_HOME (~/.patentminer).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-cache-dir --upgrade pip
	$(BIN)/pip install -q --no-cache-dir -e '.[dev,demo]'
	$(PM) neo4j install
	touch $(STAMP)

demo: install
	$(PM) demo

test: install
	$(BIN)/ruff check patentminer etl cypher training tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check patentminer etl cypher training tests benchmarks

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/etl.py

neo4j-stop:
	-$(PM) neo4j stop

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
