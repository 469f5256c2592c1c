"""`bench run` end to end on a toy project: determinism, stored C-index, manifests, skip and stale logic."""

import json

import numpy as np
import pandas as pd
import pytest
from sksurv.metrics import concordance_index_censored

from bench._core.errors import BenchError
from bench.train.runner import execute, plan_run, summarize


def _plan(toy, **kw):
    kw.setdefault("epochs", 2)
    kw.setdefault("folds", [0, 1])
    return plan_run(toy.settings, "meanmil", "TOY", **kw)


def test_same_key_same_predictions(toy, tmp_path):
    a = _plan(toy, results=tmp_path / "a")
    b = _plan(toy, results=tmp_path / "b")
    execute(a)
    execute(b)
    for fold in (0, 1):
        pa = pd.read_csv(a.dir(fold) / "predictions.csv.gz")
        pb = pd.read_csv(b.dir(fold) / "predictions.csv.gz")
        pd.testing.assert_frame_equal(pa, pb)
    other_seed = _plan(toy, results=tmp_path / "c", seed=1)
    execute(other_seed)
    assert not pd.read_csv(other_seed.dir(0) / "predictions.csv.gz")["risk"].equals(pa["risk"])


def test_stored_cindex_matches_independent_computation(toy):
    plan = _plan(toy, epochs=3)
    execute(plan)
    summary = summarize(plan)
    for f in summary.folds:
        preds = pd.read_csv(plan.dir(f.fold) / "predictions.csv.gz")
        val = preds[(preds.split == "val") & (preds.epoch == 3)]
        c = concordance_index_censored(val.censorship.to_numpy() == 0, val.survival_months.to_numpy(),
                                       val.risk.to_numpy(), tied_tol=1e-8)[0]
        assert f.last_cindex == pytest.approx(c, abs=1e-12)
        per_epoch = [concordance_index_censored(g.censorship.to_numpy() == 0, g.survival_months.to_numpy(),
                                                g.risk.to_numpy(), tied_tol=1e-8)[0]
                     for _, g in preds[preds.split == "val"].groupby("epoch")]
        assert f.best_cindex == pytest.approx(max(per_epoch), abs=1e-12)
        # risk is minus the summed survival, survival the cumulative product of 1 - hazard
        h = val[[f"hazard_{k}" for k in range(4)]].to_numpy()
        s = np.cumprod(1 - h, axis=1)
        np.testing.assert_allclose(val[[f"surv_{k}" for k in range(4)]].to_numpy(), s, rtol=1e-6)
        np.testing.assert_allclose(val.risk.to_numpy(), -s.sum(1), rtol=1e-6)


def test_prediction_rows_and_manifest(toy):
    plan = _plan(toy, folds=[0])
    execute(plan)
    preds = pd.read_csv(plan.dir(0) / "predictions.csv.gz")
    split = plan.cohort.split(0)
    train_epochs = set(preds.loc[preds.split == "train", "epoch"])  # the last and each running-best epoch
    assert {2} <= train_epochs <= {1, 2}
    assert len(preds) == 2 * len(split.val) + len(train_epochs) * len(split.train)
    m = json.loads((plan.dir(0) / "manifest.json").read_text())
    assert m["status"] == "complete"
    assert m["key"] == {"method": "meanmil", "variant": "epochs=2", "config_hash": plan.chash,
                        "cohort": "tcga_toy", "fold": 0, "seed": 0}
    assert m["config"]["train"]["epochs"] == 2 and m["overrides"] == {"train.epochs": 2}
    assert m["data"]["pathology"]["synthetic"] is True
    assert len(m["data"]["table_sha256"]) == 64 and len(m["data"]["split_sha256"]) == 64
    assert {"torch", "numpy", "scikit-survival", "python", "survbench"} <= set(m["environment"])
    assert "commit" in m["environment"]["git"]
    assert [e["epoch"] for e in m["epochs"]] == [1, 2]
    assert m["predictions"]["rows"] == len(preds)
    assert not (plan.dir(0) / "checkpoint.pt").exists()


def test_complete_runs_are_skipped_and_stale_ones_refused(toy):
    plan = _plan(toy, folds=[0])
    assert [o.status for o in execute(plan)] == ["trained"]
    assert [o.status for o in execute(plan)] == ["skipped"]
    # another feature store under the same key: refuse rather than mix results silently
    other = _plan(toy, folds=[0])
    other.store.info.fingerprint = "0" * 16
    with pytest.raises(BenchError, match=r"holds a run made with another config or other data.*--force"):
        execute(other)
    assert [o.status for o in execute(other, force=True)] == ["trained"]


def test_variants_named_by_overrides(toy):
    assert _plan(toy, epochs=None).variant == "default"
    assert _plan(toy, epochs=None, sets={"hidden": 64, "lr": 1e-3}).variant == "hidden=64"  # lr=1e-3 is the default
    assert _plan(toy, epochs=None, sets={"train.lr": 0.01}).variant == "lr=0.01"
    with pytest.raises(BenchError, match="unknown key 'k' for method meanmil; valid keys"):
        _plan(toy, sets={"k": 9})
    with pytest.raises(BenchError, match=r"bad value 'x' for 'train\.lr': expected float"):
        _plan(toy, sets={"lr": "x"})


def test_resume_from_checkpoint_gives_same_predictions(toy, tmp_path):
    ref = _plan(toy, epochs=3, folds=[0], results=tmp_path / "ref")
    execute(ref)
    run = _plan(toy, epochs=3, folds=[0], results=tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        execute(run, stop_after_epoch=1)
    assert (run.dir(0) / "checkpoint.pt").exists() and not (run.dir(0) / "manifest.json").exists()
    assert [o.status for o in execute(run)] == ["resumed"]
    pd.testing.assert_frame_equal(pd.read_csv(ref.dir(0) / "predictions.csv.gz"),
                                  pd.read_csv(run.dir(0) / "predictions.csv.gz"))


@pytest.mark.slow
def test_parallel_folds_match_sequential(toy, tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # one torch thread per worker, as in this process
    par = _plan(toy, folds=[0, 1, 2], results=tmp_path / "par")
    outs = execute(par, workers=2)
    assert sorted(o.fold for o in outs) == [0, 1, 2] and {o.status for o in outs} == {"trained"}
    seq = _plan(toy, folds=[0, 1, 2], results=tmp_path / "seq")
    execute(seq)
    for fold in (0, 1, 2):
        pd.testing.assert_frame_equal(pd.read_csv(par.dir(fold) / "predictions.csv.gz"),
                                      pd.read_csv(seq.dir(fold) / "predictions.csv.gz"))


def test_a_named_variant_extended_by_sets_keeps_its_name():
    from pathlib import Path

    from bench._core.config import load_settings

    settings = load_settings(Path(__file__).resolve().parents[2])
    name = lambda **kw: plan_run(settings, "snn", "UCEC", load_store=False, **kw).variant  # noqa: E731
    assert name(variant="ccl-protocol") == "ccl-protocol"
    assert name(variant="ccl-protocol", sets={"selection": "inner"}) == "ccl-protocol,selection=inner"
    assert name(variant="ccl-protocol", sets={"lr": 1e-3, "selection": "inner"}) == "ccl-protocol,selection=inner"
    assert name(sets={"selection": "inner"}) == "selection=inner"  # no named variant contained
    assert name(variant="ccl-protocol", sets={"lr": 0.01}).startswith("cfg-")  # no longer contains it
