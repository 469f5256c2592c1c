"""Shared fixtures: tiny synthetic projects (see bench/toy.py); nothing here reads the bundled data."""

from __future__ import annotations

import os

import pytest
import torch

from bench.toy import ToyProject, make_toy_project

# Two cores: keep torch single-threaded in tests so parallel workers do not oversubscribe the CPU.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


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
