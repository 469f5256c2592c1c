"""The `inner` fold-score protocol: epochs chosen on held-out training patients, never on the reported fold."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from store_builder import RISKS, TIMES, add_run, rows

from bench._core.config import config_hash
from bench._core.errors import BenchError
from bench._core.files import sha256_file, sha256_json
from bench.data.cohort import load_cohort
from bench.data.inner_splits import read_inner, write_inner_splits
from bench.metrics.concordance import fold_score
from bench.report.evaluation import Evaluation
from bench.report.tables import Options, table1
from bench.store.verify import check_run
from bench.train.runner import execute, plan_run


def _inner_fold(results, method, fold, val_cs, inner_cs, seed=0):
    """A hand-built selection=inner run: epoch e has val C val_cs[e-1] and inner C inner_cs[e-1]."""
    ids = [f"V{fold}-{i}" for i in range(4)]
    held = [f"I{fold}-{i}" for i in range(4)]
    frames = [rows(ids, TIMES, [0] * 4, RISKS[c], epoch=e + 1) for e, c in enumerate(val_cs)]
    frames += [rows(held, TIMES, [0] * 4, RISKS[c], epoch=e + 1, split="inner") for e, c in enumerate(inner_cs)]
    return add_run(results, method, "tcga_blca", fold, frames, seed, {"train.selection": "inner"})


def test_inner_picks_the_epoch_the_inner_rows_favour(tmp_path):
    # outer val is best at epoch 3 (C = 1), the inner split at epoch 2: inner reports epoch 2's val C (2/3)
    d = _inner_fold(tmp_path, "snn", 0, [0.5, 2 / 3, 1.0], [0.5, 1.0, 5 / 6])
    preds = pd.read_csv(d / "predictions.csv.gz", dtype={"case_id": str})
    assert fold_score(preds, "inner") == (2, pytest.approx(2 / 3))
    assert fold_score(preds, "best-val") == (3, pytest.approx(1.0))
    assert fold_score(preds, "last") == (3, pytest.approx(1.0))
    # ties on the inner split follow the method's rule, like best-val
    d = _inner_fold(tmp_path / "tie", "snn", 0, [0.5, 2 / 3, 1.0], [1.0, 1.0, 5 / 6])
    preds = pd.read_csv(d / "predictions.csv.gz", dtype={"case_id": str})
    assert fold_score(preds, "inner", "earliest")[0] == 1 and fold_score(preds, "inner", "latest")[0] == 2


def test_inner_tables_read_the_selection_inner_runs(tmp_path):
    for k in range(5):
        _inner_fold(tmp_path, "snn", k, [0.5, 2 / 3, 1.0], [0.5, 1.0, 5 / 6])
    ev = Evaluation(tmp_path)
    cell = ev.cell("snn", "tcga_blca", protocol="inner")
    assert cell is not None and cell.summary().mean == pytest.approx(2 / 3)
    assert ev.cell("snn", "tcga_blca", protocol="best-val") is None  # no default-variant runs stored
    t = table1(ev, Options(protocol="inner", compare_paper=True))
    frame = t.frame[(t.frame["method"] == "snn") & (t.frame["cohort"] == "BLCA")].iloc[0]
    assert frame["mean"] == pytest.approx(2 / 3)
    assert frame["optimism"] == pytest.approx(1.0 - 2 / 3)  # best-val minus inner, same runs
    assert any("Protocol inner" in n for n in t.notes)


def test_inner_asked_of_runs_without_inner_rows(tmp_path):
    ids = [f"V-{i}" for i in range(4)]
    d = add_run(tmp_path, "snn", "tcga_blca", 0, [rows(ids, TIMES, [0] * 4, RISKS[1.0], epoch=1)], 0,
                {"train.selection": "inner"})
    preds = pd.read_csv(d / "predictions.csv.gz", dtype={"case_id": str})
    with pytest.raises(BenchError, match="selection=inner"):
        fold_score(preds, "inner")


def test_selection_inner_end_to_end(toy):
    co = load_cohort(toy.settings, toy.cohort)
    with pytest.raises(BenchError, match="bench data inner-splits"):
        plan_run(toy.settings, "snn", toy.cohort, epochs=2, folds=[0], sets={"selection": "inner"})
    write_inner_splits(co)
    plan = plan_run(toy.settings, "snn", toy.cohort, epochs=2, folds=[0], sets={"selection": "inner"})
    assert plan.variant == "epochs=2,selection=inner"
    execute(plan)
    d = plan.dir(0)
    assert check_run(toy.settings, d) is None
    preds = pd.read_csv(d / "predictions.csv.gz", dtype={"case_id": str})
    manifest = json.loads((d / "manifest.json").read_text())
    split = co.split(0)
    rest, inner = read_inner(split.path.parent / "inner_0.csv", [co.case_ids[i] for i in split.train])
    assert manifest["data"]["inner_patients"] == inner
    assert manifest["data"]["inner_sha256"] == sha256_file(split.path.parent / "inner_0.csv")
    for e in (1, 2):
        assert sorted(preds[(preds["split"] == "inner") & (preds["epoch"] == e)]["case_id"]) == inner
    train_rows = preds[(preds["split"] == "train") & (preds["epoch"] == 2)]
    assert sorted(train_rows["case_id"]) == sorted(rest)  # trained without the inner split
    assert manifest["data"]["n_train"] == len(rest)
    epoch, c = fold_score(preds, "inner")
    assert epoch in (1, 2) and 0.0 <= c <= 1.0
    # the default run's key is unchanged by the new setting: its config hash leaves selection out
    default = plan_run(toy.settings, "snn", toy.cohort, epochs=2, folds=[0])
    hashed = json.loads(json.dumps(default.config))
    del hashed["train"]["selection"]
    del hashed["data"]["splits"]  # nor the split family at its default (fixed)
    assert default.chash == config_hash(default.config) == sha256_json(hashed)[:12]
    assert plan.chash != default.chash
