# Two commands on a fresh machine:
#   make demo   # environment if missing, demo uploads if the upload zone is empty, dagster dev on 127.0.0.1:3000
#   make test   # environment if missing, the test suite (.ci/run calls this)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_COINS ?= 600
DEMO_DAYS ?= 3
export COIN_ASSETS_DATA_DIR ?= data
export DAGSTER_HOME ?= $(abspath $(COIN_ASSETS_DATA_DIR)/dagster_home)

.PHONY: env demo demo-data dagster-home headless test bench lint clean-data

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

env: $(STAMP)

demo-data: env
	@if [ -z "$$(find $(COIN_ASSETS_DATA_DIR)/uploads -type f 2>/dev/null | head -n 1)" ]; then \
		$(BIN)/python -m coin_assets.synth --coins $(DEMO_COINS) --days $(DEMO_DAYS) --seed 0 --out $(COIN_ASSETS_DATA_DIR)/uploads; \
	else echo "upload zone not empty: no demo uploads written"; fi

dagster-home:
	@mkdir -p $(DAGSTER_HOME)
	@cp -n deploy/dagster.yaml $(DAGSTER_HOME)/dagster.yaml 2>/dev/null || true

demo: demo-data dagster-home
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

headless: demo-data dagster-home
	$(BIN)/python -m coin_assets.cli headless

test: env
	$(BIN)/python -m pytest

bench: env
	$(BIN)/python benchmarks/bench_ingestion.py
	$(BIN)/python benchmarks/bench_training.py

bench-reader: env
	$(BIN)/python benchmarks/bench_reader.py

lint: env
	$(BIN)/ruff check .

clean-data:
	find $(COIN_ASSETS_DATA_DIR) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
