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


def test_logrank_excess_is_the_observed_minus_expected_deaths():
    from lifelines.statistics import logrank_test

    from bench.metrics.survival import logrank_excess

    # hand case: times 1 2 2 3 4, high = {0, 1}; event at 1 (5 at risk, 2 high): E += 2/5;
    # two deaths at 2 (4 at risk, 1 high): E += 2/4; death at 4 (1 at risk, 0 high). O_high = 2.
    time = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    cens = np.array([0, 0, 0, 1, 0])
    high = np.array([True, True, False, False, False])
    assert logrank_excess(time, cens, high) == pytest.approx(2 - (2 / 5 + 2 / 4), abs=1e-15)
    assert logrank_excess(time, cens, ~high) == pytest.approx(-(2 - (2 / 5 + 2 / 4)), abs=1e-15)
    # its square over the hypergeometric variance is lifelines' log-rank statistic on random data
    rng = np.random.default_rng(3)
    t, c, h = rng.integers(1, 30, 80).astype(float), (rng.random(80) < 0.4).astype(int), rng.random(80) < 0.5
    ev = c == 0
    times = np.unique(t[ev])
    n = (t[None, :] >= times[:, None]).sum(1)
    nh = ((t[None, :] >= times[:, None]) & h[None, :]).sum(1)
    d = ((t[None, :] == times[:, None]) & ev[None, :]).sum(1)
    var = np.sum(d * (nh / n) * (1 - nh / n) * (n - d) / np.maximum(n - 1, 1))
    stat = logrank_test(t[h], t[~h], ev[h], ev[~h]).test_statistic
    assert logrank_excess(t, c, h) ** 2 / var == pytest.approx(stat, rel=1e-10)
