# salcli — set-up and checks. `make install` then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-all lint bench clean

install: $(BIN)/salcli

$(BIN)/salcli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray]'  # ray: the --ray tests (tests/test_cluster.py)
	@touch $@

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ''

lint: install
	$(BIN)/ruff check salcli tests benchmarks scripts
	$(BIN)/ruff format --check salcli tests benchmarks scripts

bench: install
	$(BIN)/python benchmarks/bench_predict.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
