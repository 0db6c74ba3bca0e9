# The two commands a user needs: `make demo` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck imports unit e2e bench bench-quick fuzz clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/interlock demo

lint: $(STAMP)
	$(BIN)/ruff check interlock tests bench
	$(BIN)/ruff format --check interlock tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

test: lint typecheck imports
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

# More generated policy documents than `make test` runs (what the API accepts, Envoy accepts).
fuzz: $(STAMP)
	INTERLOCK_FUZZ_EXAMPLES=$${INTERLOCK_FUZZ_EXAMPLES:-2000} INTERLOCK_FUZZ_RANDOM=1 \
		PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -n 0 tests/api/test_generated_policies.py

bench: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m bench.run

bench-quick: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
