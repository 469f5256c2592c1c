# survbench: `make reproduce` runs the main job on the bundled data, `make test` runs the tests.
# Both create .venv on first use. Without an NVIDIA GPU the locked CPU environment is installed
# (requirements/cpu.lock: exact versions with hashes, made by `make lock`).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements/cpu.lock

.PHONY: setup test test-fast reproduce lint lock clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing the default (CUDA) torch build and the package's version ranges"; \
		$(BIN)/pip install --quiet "torch>=2.2,<3" && $(BIN)/pip install --quiet -e ".[dev,slurm]"; \
	else \
		echo "no GPU: installing the locked CPU environment ($(LOCK))"; \
		$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK) && \
		$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . ; \
	fi
	$(BIN)/pip check
	touch $(STAMP)

setup: $(STAMP)

# TEST_THREADS: torch threads per test process (SURVBENCH_TEST_THREADS); it passes with 1 and with 2.
# TEST_WORKERS: pytest-xdist processes (auto: one per CPU core; 0: one process, no xdist). The tests are
# independent (each builds its own toy project in a temporary folder), so any value gives the same result;
# worksteal hands the long end-to-end tests out as workers free up.
TEST_THREADS ?= 1
TEST_WORKERS ?= auto
PYTEST := SURVBENCH_TEST_THREADS=$(TEST_THREADS) $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal
test: setup
	$(PYTEST)

# The inner loop: everything but the tests marked slow (end-to-end runs, worker processes, SIGKILL).
test-fast: setup
	$(PYTEST) -m "not slow"

# The main job: the runs behind the README's tables (already-stored runs are skipped), then
# Tables I-IV and Figs. 6-7 regenerated from the prediction store.
reproduce: setup
	$(BIN)/bench reproduce

# Regenerate the CPU lock file (exact versions and sha256 hashes) from pyproject.toml's ranges with uv
# (`pip install uv`); FIND_LINKS names a folder or page holding the CPU torch wheel of requirements/torch-cpu.txt.
FIND_LINKS ?=
lock:
	uv pip compile pyproject.toml --extra dev --extra slurm --override requirements/torch-cpu.txt \
		$(if $(FIND_LINKS),--find-links $(FIND_LINKS)) \
		--generate-hashes --python-version 3.11 --no-emit-find-links --custom-compile-command "make lock" -o $(LOCK)

lint: setup
	$(BIN)/ruff check bench methods tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
