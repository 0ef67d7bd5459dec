# The two commands a newcomer needs: `make demo` and `make test`. Both install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PM := $(BIN)/patentminer
STAMP := $(VENV)/.installed

.PHONY: install demo test wheel-check lint typecheck bench clean neo4j-stop

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
	$(BIN)/ruff check patentminer etl cypher dataset training tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2 --dist loadfile

# The wheel as users get it: built, installed (not editable) into a fresh virtual environment whose other
# packages come from .venv (a .pth line, so nothing is downloaded twice), then run from there.
WHEEL_VENV := build/wheel-venv
wheel-check: install
	rm -rf build/dist $(WHEEL_VENV)
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w build/dist .
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -c "import site, sysconfig; open(sysconfig.get_paths()['purelib'] + '/deps.pth', 'w').write('$(CURDIR)/$(VENV)/lib/python' + sysconfig.get_python_version() + '/site-packages\n')"
	$(WHEEL_VENV)/bin/pip install -q --no-deps build/dist/patentminer-*.whl
	cd build && ./wheel-venv/bin/python -c "import patentminer, sys; assert 'wheel-venv' in patentminer.__file__, patentminer.__file__"
	cd build && ./wheel-venv/bin/patentminer --help > /dev/null
	cd build && ./wheel-venv/bin/patentminer cypher list | grep -q "citation-cpc@v5 *released"
	@echo "wheel-check: the installed wheel runs"

lint: install
	$(BIN)/ruff check patentminer etl cypher dataset training tests benchmarks

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/etl.py

neo4j-stop:
	-$(PM) neo4j stop

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
