"""Training-fold predictions at every epoch a protocol can select (Table II's fold-safe threshold).

The extra training-fold passes must leave the run as it was without them: the validation and inner rows,
the last epoch's training rows, the epoch logs and the model's buffers are compared bit for bit with the
old code path (training rows after the last epoch only), reproduced by switching the extra passes off.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.data.cohort import load_cohort
from bench.data.inner_splits import write_inner_splits
from bench.metrics.concordance import fold_score
from bench.store.verify import check_run
from bench.train import engine
from bench.train.runner import execute, plan_run


def _run(toy, results, method="meanmil", epochs=4, sets=None, old=False, monkeypatch=None, **kw):
    if old:  # the code path before training rows were stored at every selectable epoch
        monkeypatch.setattr(engine, "selectable", lambda best, frame, split: False)
    plan = plan_run(toy.settings, method, toy.cohort, epochs=epochs, folds=[0], sets=sets, results=results, **kw)
    execute(plan)
    if old:
        monkeypatch.undo()
    d = plan.dir(0)
    preds = pd.read_csv(d / "predictions.csv.gz", dtype={"case_id": str})
    return d, preds, json.loads((d / "manifest.json").read_text())


def _same_except_extra_train_rows(a: pd.DataFrame, b: pd.DataFrame, last: int) -> None:
    """``b`` = ``a`` plus training rows at earlier epochs: every other row bit-for-bit equal."""
    keep = (b["split"] != "train") | (b["epoch"] == last)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b[keep].reset_index(drop=True), check_exact=True)


@pytest.mark.slow
@pytest.mark.parametrize("method,sets", [
    ("meanmil", {"patch_cap": 5, "patch_cap_eval": True}),  # eval passes draw from the patch generator
    ("ccl", None),  # k-means counters are buffers updated by eval passes
    ("dtfd", None),
])
def test_val_rows_identical_with_and_without_the_extra_train_passes(toy, tmp_path, monkeypatch, method, sets):
    _, old, old_m = _run(toy, tmp_path / "old", method, sets=sets, old=True, monkeypatch=monkeypatch)
    new_dir, new, new_m = _run(toy, tmp_path / "new", method, sets=sets)
    assert set(old.loc[old.split == "train", "epoch"]) == {4}
    assert len(set(new.loc[new.split == "train", "epoch"])) >= 2  # epoch 1 is always a running best
    _same_except_extra_train_rows(old, new, last=4)
    assert [e["val_cindex"] for e in old_m["epochs"]] == [e["val_cindex"] for e in new_m["epochs"]]
    assert old_m.get("model_stats") == new_m.get("model_stats")  # CCL: k-means bags counted by eval passes too
    assert method != "ccl" or old_m["model_stats"]["kmeans_bags"] > 0
    assert check_run(toy.settings, new_dir) is None


@pytest.mark.slow
def test_train_rows_at_every_epoch_a_protocol_selects(toy, tmp_path):
    _, preds, _ = _run(toy, tmp_path, epochs=6)
    train_epochs = set(preds.loc[preds.split == "train", "epoch"])
    for protocol in ("best-val", "last"):
        for tie in ("earliest", "latest"):
            assert fold_score(preds, protocol, tie)[0] in train_epochs
    # exactly the running-best epochs (ties included) and the last
    per_epoch = [fold_score(preds[preds.epoch <= e], "last")[1] for e in range(1, 7)]
    expected = {e + 1 for e, c in enumerate(per_epoch) if c >= max(per_epoch[:e + 1])} | {6}
    assert train_epochs == expected
    split = load_cohort(toy.settings, toy.cohort).split(0)
    for _, g in preds[preds.split == "train"].groupby("epoch"):
        assert len(g) == len(split.train)


@pytest.mark.slow
def test_inner_selection_stores_train_rows_at_the_inner_pick(toy, tmp_path):
    write_inner_splits(load_cohort(toy.settings, toy.cohort))
    d, preds, _ = _run(toy, tmp_path, epochs=5, sets={"selection": "inner"})
    train_epochs = set(preds.loc[preds.split == "train", "epoch"])
    for tie in ("earliest", "latest"):
        assert fold_score(preds, "inner", tie)[0] in train_epochs
        assert fold_score(preds, "best-val", tie)[0] in train_epochs
    assert check_run(toy.settings, d) is None


@pytest.mark.slow
def test_resume_keeps_the_extra_train_rows(toy, tmp_path):
    _, ref_preds, _ = _run(toy, tmp_path / "ref", epochs=4)
    plan = plan_run(toy.settings, "meanmil", toy.cohort, epochs=4, folds=[0], results=tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        execute(plan, stop_after_epoch=2)
    assert [o.status for o in execute(plan)] == ["resumed"]
    pd.testing.assert_frame_equal(ref_preds, pd.read_csv(plan.dir(0) / "predictions.csv.gz", dtype={"case_id": str}),
                                  check_exact=True)


def test_running_best_counts_ties_and_nan():
    frame = pd.DataFrame({"survival_months": [1.0, 2.0, 3.0], "censorship": [0, 0, 0], "risk": [3.0, 2.0, 1.0]})
    best = engine.running_best([])
    assert engine.selectable(best, frame, "val") and best["val"] == 1.0
    assert engine.selectable(best, frame, "val")  # a tie passes (tie rule "latest" may pick it)
    worse = frame.assign(risk=[1.0, 2.0, 3.0])
    assert not engine.selectable(best, worse, "val") and best["val"] == 1.0
    no_events = frame.assign(censorship=[1, 1, 1])  # C-index NaN counts as -inf, as in select_epoch
    fresh = engine.running_best([])
    assert engine.selectable(fresh, no_events, "val") and fresh["val"] == -np.inf
    restored = engine.running_best([frame.assign(epoch=1, split="val"), worse.assign(epoch=2, split="val")])
    assert restored == {"val": 1.0, "inner": -np.inf}
