"""Atomic writes: a failure never leaves partial files nor damages what was stored."""

import errno
import pathlib

import pandas as pd
import pytest

from bench._core import files as io
from bench._core.errors import BenchError
from bench.store.predictions import read_manifest, write_run


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    dest = tmp_path / "a.txt"
    io.write_text(dest, "old")
    with pytest.raises(RuntimeError), io.atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_disk_full_is_a_clear_error(tmp_path, monkeypatch):
    dest = tmp_path / "run"
    preds = pd.DataFrame({"case_id": ["a"], "epoch": [1], "split": ["val"], "survival_months": [1.0],
                          "censorship": [0], "bin": [0], "risk": [0.1]})
    write_run(dest, preds, {"key": {"fold": 0}})
    before = (dest / "predictions.csv.gz").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)  # the write of the predictions' temporary file
    with pytest.raises(BenchError, match="No space left on device; earlier files are intact"):
        write_run(dest, preds, {"key": {"fold": 0}})
    monkeypatch.undo()
    assert (dest / "predictions.csv.gz").read_bytes() == before
    assert not [p for p in dest.iterdir() if p.name.endswith(".tmp")]
    assert read_manifest(dest)["status"] == "complete"  # the stored run is untouched
