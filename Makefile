# golf: `make run` trains, exports and evaluates the smoke experiment; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(or $(GOLF_DATA_DIR),./data)
SHARED := ../shared/data
# The challenge's default tokenizer and a local FineWeb sample, used when the HF hub is unreachable.
FALLBACK_DOCS := $(SHARED)/fineweb/docs_sample_200.jsonl
FALLBACK_TOKENIZER := $(SHARED)/tokenizers/fineweb_1024_bpe.model
export GOLF_DATA_DIR := $(DATA_DIR)
export WANDB_MODE ?= offline

.PHONY: run test test-fast install data lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU wheel range, so no multi-GB CUDA build is pulled in.
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0+cpu" 2>/dev/null || \
		$(PY) -m pip install -q "torch>=2.6,<2.14" --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e ".[dev]"
	@# lrzip (ZPAQ) for quant.codec=pergroup (2026-04-27 record); optional: without it pergroup uses brotli-11.
	@command -v lrzip >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		apt-get install -y -q lrzip >/dev/null 2>&1; } || \
		echo "install: lrzip not available; quant.codec=pergroup will fall back to brotli-11"
	touch $@

install: $(VENV)/.installed

data: install
	@if ls $(DATA_DIR)/datasets/fineweb10B_sp1024/fineweb_val_*.bin >/dev/null 2>&1; then \
		echo "data: using shards under $(DATA_DIR)"; \
	else \
		$(PY) -m golf.data.download --variant sp1024 --train-shards 1 --root $(DATA_DIR) || \
		( test -f $(FALLBACK_DOCS) && echo "data: hub unreachable; preparing shards from $(FALLBACK_DOCS)" && \
		  $(PY) -m golf.data.prepare --input $(FALLBACK_DOCS) --tokenizer $(FALLBACK_TOKENIZER) \
		      --out $(DATA_DIR)/datasets/fineweb10B_sp1024 --val-docs 50 && \
		  mkdir -p $(DATA_DIR)/tokenizers && cp $(FALLBACK_TOKENIZER) $(DATA_DIR)/tokenizers/ ); \
	fi

run: data
	export GOLF_RUN_ID=smoke_$$(date +%Y%m%d_%H%M%S) && \
	$(PY) train.py experiment=smoke && \
	$(PY) export.py run_dir=outputs/$${GOLF_RUN_ID}_smoke && \
	$(PY) eval.py path=outputs/$${GOLF_RUN_ID}_smoke/model.golf eval.max_tokens=65536

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m golf.bench

clean:
	rm -rf outputs .pytest_cache
