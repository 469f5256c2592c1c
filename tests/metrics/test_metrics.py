"""Metrics against MCAT's published per-patient predictions and summaries (real, bundled data)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.metrics.concordance import cindex, mean_std, select_epoch

REF = Path(__file__).resolve().parents[2] / "data" / "reference_results"


def test_cindex_reproduces_mcat_published_means():
    preds = pd.read_csv(REF / "mcat_iccv2021_val_predictions.csv.gz")
    checked = 0
    for config, rows in preds.groupby("config"):
        summary = pd.read_csv(REF / "cindex" / f"{config}.csv")
        for cohort, g in rows.groupby("cohort"):
            folds = [cindex(f.survival_months.to_numpy(), f.censorship.to_numpy(), f.risk.to_numpy())
                     for _, f in g.groupby("fold")]
            mean, _ = mean_std(folds)
            published = summary.loc[summary.iloc[:, 0] == cohort, "Val C-Index (Mean)"].iloc[0]
            assert mean == pytest.approx(published, abs=1e-9), (config, cohort)
            checked += 1
    assert checked == 55


def test_cindex_ties_and_direction():
    t = np.array([1.0, 2.0, 3.0])
    assert cindex(t, np.zeros(3), np.array([3.0, 2.0, 1.0])) == 1.0
    assert cindex(t, np.zeros(3), np.array([1.0, 2.0, 3.0])) == 0.0
    assert cindex(t, np.zeros(3), np.zeros(3)) == 0.5  # risk ties count one half
    assert np.isnan(cindex(t, np.ones(3), np.zeros(3)))  # no events: undefined


def test_protocols_and_tie_rules():
    per_epoch = pd.Series([0.6, 0.7, 0.65, 0.7, 0.62], index=[1, 2, 3, 4, 5])
    assert select_epoch(per_epoch, "last") == 5
    assert select_epoch(per_epoch, "best-val", "earliest") == 2
    assert select_epoch(per_epoch, "best-val", "latest") == 4
    assert mean_std([0.5, 0.7]) == pytest.approx((0.6, 0.1))  # population std


def test_seed_summary_averages_each_fold_over_seeds_first():
    from bench._core.errors import BenchError
    from bench.metrics.concordance import seed_summary

    # seed 0 folds (0.6, 0.8), seed 1 folds (0.8, 0.6): per-fold averages (0.7, 0.7) -> std 0 over folds,
    # although each seed alone has a fold std of 0.1; the seed means (0.7, 0.7) have no spread either
    assert seed_summary([[0.6, 0.8], [0.8, 0.6]]) == pytest.approx((0.7, 0.0, 0.0), abs=1e-15)
    mean, std, spread = seed_summary([[0.6, 0.8], [0.6, 1.0]])
    assert (mean, std, spread) == pytest.approx((0.75, 0.15, 0.05), abs=1e-15)
    one = seed_summary([[0.5, 0.7]])
    assert one[:2] == pytest.approx((0.6, 0.1), abs=1e-15) and one[2] is None
    with pytest.raises(BenchError, match="different numbers of folds"):
        seed_summary([[0.5, 0.7], [0.5]])
