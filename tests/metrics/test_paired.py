"""Paired comparisons: Harrell's C as a pair sum, the corrected t-test, the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sksurv.metrics import concordance_index_censored

from bench._core.errors import BenchError
from bench.metrics.paired import (
    FoldPair,
    corrected_ttest,
    pair_matrices,
    paired_bootstrap,
    verdict,
    weighted_cindex,
)


def _sksurv_c(time, cens, risk) -> float:
    return float(concordance_index_censored(np.asarray(cens) < 0.5, np.asarray(time, float),
                                            np.asarray(risk, float), tied_tol=1e-8)[0])


def _tied_cohort(rng, n):
    # rounded times and risks: ties in time (event/event, event/censored) and in risk
    time = np.round(rng.exponential(10.0, n), 0) + 1.0
    cens = (rng.random(n) < 0.4).astype(float)
    risk = np.round(rng.standard_normal(n), 1)
    return time, cens, risk


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_sum_equals_sksurv_with_ties(seed):
    rng = np.random.default_rng(seed)
    time, cens, risk = _tied_cohort(rng, 60)
    comp, score = pair_matrices(time, cens, risk)
    assert weighted_cindex(comp, score, np.ones((1, 60)))[0] == pytest.approx(_sksurv_c(time, cens, risk), abs=1e-14)


def test_weighted_cindex_equals_sksurv_on_expanded_resamples():
    rng = np.random.default_rng(3)
    time, cens, risk = _tied_cohort(rng, 40)
    comp, score = pair_matrices(time, cens, risk)
    weights = rng.multinomial(40, np.full(40, 1 / 40), size=5).astype(float)
    got = weighted_cindex(comp, score, weights)
    for w, c in zip(weights, got, strict=True):
        idx = np.repeat(np.arange(40), w.astype(int))
        assert c == pytest.approx(_sksurv_c(time[idx], cens[idx], risk[idx]), abs=1e-14)


def test_weighted_cindex_without_comparable_pairs_is_nan():
    comp, score = pair_matrices(np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([0.0, 1.0]))
    assert math.isnan(weighted_cindex(comp, score, np.ones((1, 2)))[0])


def test_corrected_ttest_hand_computation():
    d = [0.02, 0.05, -0.01, 0.04, 0.03]
    res = corrected_ttest(d, test_train_ratio=0.25)
    # mean 0.026; squared deviations sum to 2.12e-3, s² = 5.3e-4; variance (1/5 + 1/4) s² = 2.385e-4
    t = 0.026 / math.sqrt(2.385e-4)
    assert res.mean == pytest.approx(0.026, abs=1e-15)
    assert res.t == pytest.approx(t, rel=1e-12)
    assert res.df == 4
    assert res.correction == pytest.approx(1 + 5 * 0.25, abs=1e-15)
    assert res.p_greater == pytest.approx(stats.t.sf(t, 4), rel=1e-12)
    assert res.p_two_sided == pytest.approx(2 * stats.t.sf(t, 4), rel=1e-12)
    assert res.p_greater + res.p_less == pytest.approx(1.0, abs=1e-15)
    # the naive t-test is the special case of a zero ratio
    naive = stats.ttest_1samp(d, 0.0)
    assert corrected_ttest(d, 1e-300).t == pytest.approx(naive.statistic, rel=1e-12)


def test_corrected_ttest_constant_differences_and_bad_input():
    assert corrected_ttest([0.1, 0.1, 0.1], 0.25).p_greater == 0.0
    assert corrected_ttest([0.0, 0.0], 0.25).p_two_sided == 1.0
    with pytest.raises(BenchError, match="at least two"):
        corrected_ttest([0.1], 0.25)
    with pytest.raises(BenchError, match="positive"):
        corrected_ttest([0.1, 0.2], 0.0)


def test_bootstrap_of_a_method_against_itself_is_exactly_zero():
    rng = np.random.default_rng(0)
    time, cens, risk = _tied_cohort(rng, 30)
    res = paired_bootstrap([FoldPair(0, time, cens, risk, risk)], n_resamples=200)
    assert (res.mean, res.low, res.high) == (0.0, 0.0, 0.0)


def test_bootstrap_is_seeded_and_symmetric_in_a_and_b():
    rng = np.random.default_rng(1)
    folds = []
    for k in range(3):
        time, cens, _ = _tied_cohort(rng, 30)
        folds.append(FoldPair(k, time, cens, rng.standard_normal((2, 30)), rng.standard_normal((2, 30))))
    ab = paired_bootstrap(folds, n_resamples=300, seed=5)
    again = paired_bootstrap(folds, n_resamples=300, seed=5)
    ba = paired_bootstrap([FoldPair(f.fold, f.time, f.censorship, f.risk_b, f.risk_a) for f in folds],
                          n_resamples=300, seed=5)
    np.testing.assert_array_equal(ab.replicates, again.replicates)
    np.testing.assert_allclose(ba.replicates, -ab.replicates, atol=1e-15)
    # the observed difference: mean over folds of the mean over seeds of C_A - C_B
    want = np.mean([np.mean([_sksurv_c(f.time, f.censorship, a) - _sksurv_c(f.time, f.censorship, b)
                             for a, b in zip(f.risk_a, f.risk_b, strict=True)]) for f in folds])
    assert ab.mean == pytest.approx(want, abs=1e-14)


def test_bootstrap_rejects_mismatched_seeds():
    t = np.arange(1.0, 6.0)
    with pytest.raises(BenchError, match="same seeds and patients"):
        paired_bootstrap([FoldPair(2, t, np.zeros(5), np.zeros((2, 5)), np.zeros((1, 5)))])


def _population_c(noise_sd: float, time_sd: float) -> float:
    # log T = -z + time_sd e, risk = z + noise_sd u (all standard normal): for a random pair, the
    # risk difference and the (negated) log-time difference are bivariate normal with correlation
    # rho, and C = P(risk_i > risk_j | T_i < T_j) = 1/2 + arcsin(rho) / pi.
    rho = 1.0 / math.sqrt((1 + noise_sd**2) * (1 + time_sd**2))
    return 0.5 + math.asin(rho) / math.pi


def test_bootstrap_interval_covers_a_known_difference_at_95_percent():
    sd_a, sd_b, sd_t = 0.5, 1.5, 0.5
    truth = _population_c(sd_a, sd_t) - _population_c(sd_b, sd_t)
    rng = np.random.default_rng(2024)
    reps, covered = 200, 0
    for r in range(reps):
        folds = []
        for k in range(5):
            z = rng.standard_normal(80)
            time = np.exp(-z + sd_t * rng.standard_normal(80))
            folds.append(FoldPair(k, time, np.zeros(80), z + sd_a * rng.standard_normal(80),
                                  z + sd_b * rng.standard_normal(80)))
        res = paired_bootstrap(folds, n_resamples=1000, seed=r)
        covered += res.low <= truth <= res.high
    assert 0.91 <= covered / reps <= 0.99, f"coverage {covered}/{reps} of the true difference {truth:.4f}"


def _ttest(mean, p):
    return corrected_ttest([mean - 0.01, mean + 0.01], 0.25).__class__(mean, 0.0, 1, p, p, p, 1.0, 2)


def test_verdict_needs_both_tests():
    boot = lambda lo, hi: type("B", (), {"low": lo, "high": hi})()  # noqa: E731
    assert verdict(_ttest(0.05, 0.01), boot(0.01, 0.09)) == "A better"
    assert verdict(_ttest(-0.05, 0.01), boot(-0.09, -0.01)) == "B better"
    assert verdict(_ttest(0.05, 0.20), boot(0.01, 0.09)) == "not distinguishable"
    assert verdict(_ttest(0.05, 0.01), boot(-0.01, 0.09)) == "not distinguishable"
