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

.PHONY: run test test-fast test-kernels install data lint bench clean preflight

# torch build: CUDA wheels chosen from the NVIDIA driver where one is present, the CPU wheel elsewhere
# (tools/install_torch.py; override with TORCH_VARIANT=cpu|cu118|cu126|cu128|cu130 or TORCH_INDEX=<url>).
# SYSTEM_TORCH=1 reuses the torch already installed in the system python (venv with system site packages).
SYSTEM_TORCH ?=
VENV_FLAGS := $(if $(filter 1 true yes,$(SYSTEM_TORCH)),--system-site-packages,)
INSTALL_FLAGS := $(if $(filter 1 true yes,$(SYSTEM_TORCH)),--system,)

$(VENV)/.installed: pyproject.toml tools/install_torch.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PYTHON) tools/install_torch.py --venv $(VENV) $(INSTALL_FLAGS)
	@# lrzip (ZPAQ) for quant.codec=pergroup (2026-04-27 record); optional: without it pergroup uses brotli-11.
	@command -v lrzip >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		apt-get install -y -q lrzip >/dev/null 2>&1; } || \
		echo "install: lrzip not available; quant.codec=pergroup will fall back to brotli-11"
	touch $@
	@echo "install: done. Activate once per shell with: source $(VENV)/bin/activate"

install: $(VENV)/.installed

data: install
	@if ls $(DATA_DIR)/datasets/fineweb10B_sp1024/fineweb_val_*.bin >/dev/null 2>&1; then \
		echo "data: using shards under $(DATA_DIR)"; \
	else \
		$(PY) -m golf.data.download --variant sp1024 --train-shards 1 --root $(DATA_DIR) --offline-ok; rc=$$?; \
		if [ $$rc -eq 3 ] && [ -f $(FALLBACK_DOCS) ]; then \
		  echo "data: notice: preparing shards from the local FineWeb sample $(FALLBACK_DOCS)" && \
		  $(PY) -m golf.data.prepare --input $(FALLBACK_DOCS) --tokenizer $(FALLBACK_TOKENIZER) \
		      --out $(DATA_DIR)/datasets/fineweb10B_sp1024 --val-docs 50 && \
		  mkdir -p $(DATA_DIR)/tokenizers && cp $(FALLBACK_TOKENIZER) $(DATA_DIR)/tokenizers/; \
		elif [ $$rc -ne 0 ]; then \
		  echo "error: no data: the hub is unreachable and $(FALLBACK_DOCS) is missing; see README 'Data'" >&2; exit 1; \
		fi; \
	fi

run: data
	export GOLF_RUN_ID=smoke_$$(date +%Y%m%d_%H%M%S) && \
	$(PY) train.py experiment=smoke && \
	$(PY) export.py run_dir=outputs/$${GOLF_RUN_ID}_smoke && \
	$(PY) eval.py path=outputs/$${GOLF_RUN_ID}_smoke

# Two pytest workers (pytest-xdist), one torch thread each: the suite is mostly single-threaded Python
# (subprocess start-up, Hydra, file generation, tiny models), so two workers fill a 2-core machine where two
# threads per process would oversubscribe it. A test file stays on one worker (its module fixtures are built once).
TEST_JOBS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

test: install
	$(PYTEST) --durations=25

test-fast: install
	$(PYTEST) -m "not slow"

# The Triton kernels (golf/model/kernels.py) on CPU under Triton's interpreter (TRITON_INTERPRET=1), for machines
# without a GPU: Triton (a CPU-usable wheel, ~170 MB) goes into $(TRITON_SITE), never into the venv (`make test`
# stays Triton-free there and its kernel tests skip). numpy<2.4 beside it: Triton 3.5's interpreter calls int()
# on 1-element arrays, an error since numpy 2.4 (triton-lang/triton#9171).
TRITON_SITE ?= .triton-interp
TRITON_VERSION ?= 3.5.0
test-kernels: install
	@test -d $(TRITON_SITE)/triton || $(PY) -m pip install -q --no-deps --target $(TRITON_SITE) \
		triton==$(TRITON_VERSION) "numpy<2.4"
	TRITON_INTERPRET=1 PYTHONPATH=$(abspath $(TRITON_SITE)) OMP_NUM_THREADS=1 \
		$(PY) -m pytest -q -W ignore::DeprecationWarning tests/test_kernels.py

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m golf.bench

clean:
	rm -rf outputs .pytest_cache

EXPERIMENT ?= baseline
preflight: install
	$(PY) -m golf.preflight experiment=$(EXPERIMENT)
