# survbench: `make reproduce` runs the main job on the bundled data, `make test` runs the tests.
# Both create .venv on first use. Without an NVIDIA GPU the CPU build of torch is installed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test reproduce lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing the default (CUDA) torch build"; \
		$(BIN)/pip install --quiet "torch>=2.2,<3"; \
	else \
		echo "no GPU: installing the CPU build of torch"; \
		$(BIN)/pip install --quiet torch==2.13.0 || \
		$(BIN)/pip install --quiet "torch>=2.2,<3" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/pip install --quiet -e ".[dev,slurm]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(BIN)/pytest

# The main job: the runs behind the README's tables (already-stored runs are skipped), then
# Tables I-IV and Figs. 6-7 regenerated from the prediction store.
reproduce: setup
	$(BIN)/bench reproduce

lint: setup
	$(BIN)/ruff check bench methods tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
