# Everything a fresh machine needs: Python >= 3.11 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo

.PHONY: install demo test lint typecheck bench bench-run bench-scale bench-spark bench-clv bench-mining bench-web clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tierwise.demo $(DEMO)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/mypy benchmarks
	$(BIN)/lint-imports

test: $(STAMP) lint
	$(BIN)/python -m pytest -q --durations=15  # the slowest tests, to keep the suite near 30 minutes

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ingest.py

bench-run: $(STAMP)
	$(BIN)/python benchmarks/bench_run.py --transactions 1000000 10000000

bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py --transactions 1000000 10000000

bench-spark: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py --engine spark --transactions 1000000 10000000

bench-clv: $(STAMP)
	$(BIN)/python benchmarks/bench_clv.py --customers 1000000 10000000

bench-mining: $(STAMP)
	$(BIN)/python benchmarks/bench_mining.py --customers 1000000

bench-web: $(STAMP)
	$(BIN)/python benchmarks/bench_web.py --customers 1000000

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
