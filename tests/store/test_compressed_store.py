"""Gzipped predictions: new runs are stored compressed, byte-deterministic and value-exact; runs stored
plain before keep verifying, and `bench results compact` converts them without changing a value."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys

import numpy as np
import pandas as pd
import pytest
from store_builder import manifest, rows

from bench._core.errors import BenchError
from bench.store.predictions import (
    PREDICTIONS,
    PREDICTIONS_GZ,
    compact_run,
    predictions_path,
    read_manifest,
    read_predictions,
    run_dir,
    write_run,
)
from bench.store.verify import verify_store


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"TCGA-XX-{i:04d}" for i in range(30)]
    frames = [rows(ids, rng.uniform(1, 100, 30), rng.integers(0, 2, 30), rng.normal(size=30), epoch=e)
              for e in (1, 2, 3)]
    df = pd.concat(frames, ignore_index=True)
    df["hazard_0"] = rng.uniform(size=len(df)).astype(np.float32).astype(float)  # like torch's float32 outputs
    return df


def _plain_read(preds: pd.DataFrame) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(preds.to_csv(index=False)), dtype={"case_id": str, "split": str})


def test_new_runs_are_gzipped_deterministic_and_exact(tmp_path):
    preds = _frame()
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, preds, manifest("snn", "toy", 0))
    write_run(b, preds, manifest("snn", "toy", 0))
    assert not (a / PREDICTIONS).exists()
    data = (a / PREDICTIONS_GZ).read_bytes()
    assert data == (b / PREDICTIONS_GZ).read_bytes()  # no time stamp, no file name in the gzip header
    m = read_manifest(a)
    assert m["predictions"]["file"] == PREDICTIONS_GZ
    assert m["predictions"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert m["predictions"]["csv_sha256"] == hashlib.sha256(preds.to_csv(index=False).encode()).hexdigest()
    assert gzip.decompress(data) == preds.to_csv(index=False).encode()
    # what a reader gets is what it got from the plain CSV of earlier releases, to the bit
    pd.testing.assert_frame_equal(read_predictions(predictions_path(a, m)), _plain_read(preds), check_exact=True)


def test_a_rerun_in_the_other_format_leaves_one_predictions_file(tmp_path):
    d = tmp_path / "run"
    write_run(d, _frame(0), manifest("snn", "toy", 0), compress=False)
    assert (d / PREDICTIONS).is_file()
    write_run(d, _frame(1), manifest("snn", "toy", 0))
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", PREDICTIONS_GZ]
    pd.testing.assert_frame_equal(read_predictions(predictions_path(d)), _plain_read(_frame(1)), check_exact=True)


def _plain_store(toy) -> list:
    from bench.data.cohort import load_cohort

    co = load_cohort(toy.settings, toy.cohort)
    rng = np.random.default_rng(0)
    dirs = []
    for k, split in enumerate(co.splits):
        ids, t, c = [co.case_ids[i] for i in split.val], co.time[split.val], co.censorship[split.val].astype(int)
        preds = pd.concat([rows(ids, t, c, rng.normal(size=len(ids)), epoch=e) for e in (1, 2)], ignore_index=True)
        d = run_dir(toy.root / "results", "snn", "default", co.name, 0, k)
        write_run(d, preds, manifest("snn", co.name, k), compress=False)
        dirs.append(d)
    return dirs


def test_compact_keeps_every_value_and_the_store_verifies(toy, monkeypatch, capsys):
    from bench.cli import main

    dirs = _plain_store(toy)
    before = {d: (d / PREDICTIONS).read_bytes() for d in dirs}
    frames = {d: read_predictions(d / PREDICTIONS) for d in dirs}
    assert verify_store(toy.settings) == (5, [])
    monkeypatch.chdir(toy.root)
    monkeypatch.setattr(sys, "argv", ["bench", "results", "compact", "--dry-run"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    assert capsys.readouterr().out.startswith("5 run(s) hold a plain predictions.csv")
    assert all((d / PREDICTIONS).is_file() for d in dirs)  # --dry-run changes nothing
    monkeypatch.setattr(sys, "argv", ["bench", "results", "compact", str(dirs[1].parent / "fold1")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    assert capsys.readouterr().out.startswith("1 run(s) compacted")
    assert [d for d in dirs if (d / PREDICTIONS).exists()] == [dirs[0], *dirs[2:]]  # only the folder named
    monkeypatch.setattr(sys, "argv", ["bench", "results", "compact", "results/nope"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "no such folder: results/nope" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["bench", "results", "compact"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    assert capsys.readouterr().out.startswith("4 run(s) compacted")
    for d in dirs:
        assert sorted(p.name for p in d.iterdir()) == ["manifest.json", PREDICTIONS_GZ]
        assert gzip.decompress((d / PREDICTIONS_GZ).read_bytes()) == before[d]
        m = json.loads((d / "manifest.json").read_text())
        assert m["predictions"]["csv_sha256"] == hashlib.sha256(before[d]).hexdigest()
        pd.testing.assert_frame_equal(read_predictions(predictions_path(d, m)), frames[d], check_exact=True)
        assert compact_run(d) is False  # nothing left to do
    assert verify_store(toy.settings) == (5, [])


def test_compact_refuses_a_plain_file_that_does_not_match_its_manifest(toy):
    d = _plain_store(toy)[0]
    (d / PREDICTIONS).write_bytes((d / PREDICTIONS).read_bytes() + b"\n")
    with pytest.raises(BenchError, match=r"predictions\.csv does not match its manifest's sha256"):
        compact_run(d)
    assert not (d / PREDICTIONS_GZ).exists()
