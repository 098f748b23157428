# Two commands on a fresh machine:
#   make demo   # environment if missing, demo uploads if the upload zone is empty; dagster dev (3000), API (8000), worker, web app (8501)
#   make test   # environment and Debian chromium if missing, the test suite (.ci/run calls this)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_COINS ?= 600
DEMO_DAYS ?= 3
export COIN_ASSETS_DATA_DIR ?= data
export DAGSTER_HOME ?= $(abspath $(COIN_ASSETS_DATA_DIR)/dagster_home)

.PHONY: env demo demo-data dagster-home headless test test-fast bench lint clean-data serve bench-serving browser bench-async cluster bench-reader pretrain tesseract bench-reading
PRETRAIN_MINUTES ?= 55
PRETRAIN_MINED_MINUTES ?= 60
LINE_READER_MINUTES ?= 30

# requirements-lock.txt: every package of the project and its dev extra (scale included), pinned with hashes,
# for CPython 3.11 on Linux x86_64; the project itself installs editable on top, without its dependencies.
LOCK := requirements-lock.txt
# `make lock` moves every package to the newest release pyproject.toml allows;
# `make lock LOCK_FLAGS=` keeps the pins already in the lock and only follows a change of pyproject.toml.
LOCK_FLAGS ?= --upgrade

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	@$(BIN)/python -m pip check || { echo "$(LOCK) does not satisfy pyproject.toml: make lock LOCK_FLAGS="; exit 1; }
	@touch $(STAMP)

env: $(STAMP)

# Regenerates the lock from pyproject.toml with uv (the release the lock pins, if uv is not in the venv yet);
# then `make test` installs it.
.PHONY: lock
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install -q "$$(grep -m1 -o '^uv==[^ ]*' $(LOCK) || echo uv)"
	UV_CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --no-strip-extras \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 $(LOCK_FLAGS) -o $(LOCK)

demo-data: env
	@if [ -z "$$(find $(COIN_ASSETS_DATA_DIR)/uploads -type f 2>/dev/null | head -n 1)" ]; then \
		$(BIN)/python -m coin_assets.synth --coins $(DEMO_COINS) --days $(DEMO_DAYS) --seed 0 --out $(COIN_ASSETS_DATA_DIR)/uploads; \
	else echo "upload zone not empty: no demo uploads written"; fi

dagster-home:
	@mkdir -p $(DAGSTER_HOME)
	@cp -n deploy/dagster.yaml $(DAGSTER_HOME)/dagster.yaml 2>/dev/null || true

# dagster dev (3000), the API (8000), the worker(s) and the web app (8501) in one process group;
# Ctrl-C stops them all within seconds.
demo: demo-data dagster-home
	$(BIN)/python -m coin_assets.devtools.launcher

headless: demo-data dagster-home
	$(BIN)/python -m coin_assets.cli headless

serve: env
	$(BIN)/python -m coin_assets.serving

bench-serving: env
	$(BIN)/python benchmarks/bench_serving.py

bench-async: env
	$(BIN)/python benchmarks/bench_async.py

# Debian's chromium for the browser tests (Playwright drives it; nothing is downloaded at test time).
browser:
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
		else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; fi; }

test: env browser
	$(BIN)/python -m pytest -n 2 --dist loadfile

# the unit and in-process tests: no servers, no other processes, no browser, no end-to-end training
test-fast: env
	$(BIN)/python -m pytest -n 2 -m "not slow and not servers"

bench: env
	$(BIN)/python benchmarks/bench_ingestion.py
	$(BIN)/python benchmarks/bench_training.py

# Postgres, Redis, moto S3, MLflow server, Dagster webserver + daemon, two Celery workers; Ctrl-C stops all
cluster: env
	$(BIN)/python deploy/cluster.py --dir .cluster --workers 2 --demo-coins $(DEMO_COINS)
bench-reader: env
	$(BIN)/python benchmarks/bench_reader.py

# The year reader's recogniser, as committed in coin_assets/ml/weights/ (the year_reader_pretraining asset runs
# the same code); writes the weights and their record (config, corpus hash, figures, sha256, this command).
# Two steps: generated strips from scratch, then strips mixed with the crops the reader's own detector cuts
# from 3000 generated photos (labelled by where the generator drew the year).
pretrain: env
	$(BIN)/python -m coin_assets.ml.recognizer_training --minutes $(PRETRAIN_MINUTES) \
		--checkpoint $(COIN_ASSETS_DATA_DIR)/year_reader_strips.ckpt --out $(COIN_ASSETS_DATA_DIR)/year_reader_strips
	$(BIN)/python -m coin_assets.ml.recognizer_training --minutes $(PRETRAIN_MINED_MINUTES) --mined-photos 3000 \
		--learning-rate 1e-3 --init $(COIN_ASSETS_DATA_DIR)/year_reader_strips.pt --cache-dir $(COIN_ASSETS_DATA_DIR)/reader_crops \
		--checkpoint $(COIN_ASSETS_DATA_DIR)/year_reader_mined.ckpt --out coin_assets/ml/weights/year_reader
	$(BIN)/python -m coin_assets.ml.line_reader_training --minutes $(LINE_READER_MINUTES) --photos 1500 \
		--lines $(COIN_ASSETS_DATA_DIR)/year_line_reader_lines.npz --checkpoint $(COIN_ASSETS_DATA_DIR)/year_line_reader.ckpt \
		--out coin_assets/ml/weights/year_line_reader.onnx

# Debian's tesseract-ocr: the benchmark's second OCR to compare with
tesseract:
	@command -v tesseract >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr; \
		else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr; fi; }

# Reading through the product: after `make headless`, photos of every placement to /predict, beside RapidOCR and Tesseract
bench-reading: env tesseract
	$(BIN)/python benchmarks/bench_reading.py

lint: env
	$(BIN)/ruff check .

clean-data:
	find $(COIN_ASSETS_DATA_DIR) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
