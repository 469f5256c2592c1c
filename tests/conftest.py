"""Shared fixtures: tiny synthetic projects (see bench/data/toy.py); nothing here reads the bundled data.

The folders mirror the packages (tests/core for bench._core, tests/api, tests/data, tests/metrics,
tests/store, tests/train, tests/report, tests/tools, tests/cli; tests/builtin_methods for methods/);
the checks of the whole package (layering, public API, deprecated paths) sit at the top. Tests that
train end to end to check learning, start worker processes, install a plugin, run ``bench`` end to end
in a subprocess (train, import, check a method) or send SIGKILL carry ``@pytest.mark.slow``:
``pytest -m "not slow"`` (``make test-fast``) is the inner loop; ``make test`` runs everything, over
one pytest-xdist process per core: no test may depend on another or on the order they run in.
"""

from __future__ import annotations

import os

import pytest
import torch

from bench.data.toy import ToyProject, make_toy_project

# Torch threads for the whole suite (and the `bench` subprocesses it starts): SURVBENCH_TEST_THREADS, default 1.
# Nothing may depend on it: `make test TEST_THREADS=2` must pass as `make test` does. Determinism tests compare
# runs inside one process configuration only.
THREADS = int(os.environ.get("SURVBENCH_TEST_THREADS", "1"))
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)


def pytest_report_header(config) -> str:
    return f"survbench: torch threads {torch.get_num_threads()} (SURVBENCH_TEST_THREADS)"


@pytest.fixture
def toy(tmp_path, monkeypatch) -> ToyProject:
    """A toy project (100 patients, 16 patches of dim 32 per slide, strong signal) as the working directory."""
    project = make_toy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_ROOT", str(tmp_path))
    return project


@pytest.fixture
def toy_factory(tmp_path_factory, monkeypatch):
    """Build toy projects with custom parameters: ``toy_factory(n_patients=150, signal=0.0)``."""

    def make(**kwargs) -> ToyProject:
        root = tmp_path_factory.mktemp("toy")
        project = make_toy_project(root, **kwargs)
        monkeypatch.chdir(root)
        monkeypatch.setenv("BENCH_ROOT", str(root))
        return project

    return make


# tests/builtin_methods/test_methods_contract.py is marked here, not in the file (its bodies are edited on
# another branch): the contract (it stores runs) and the known-answer learning tests train end to end.
SLOW_CONTRACT_TESTS = {"test_contract", "test_learns_pathology_signal", "test_learns_genomic_signal",
                       "test_no_signal_stays_near_half"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.path.name == "test_methods_contract.py" and item.originalname in SLOW_CONTRACT_TESTS:
            item.add_marker(pytest.mark.slow)
