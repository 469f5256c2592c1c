"""Known-answer tests of bench.metrics.horizon, each against an independent implementation:
scikit-survival called directly, lifelines, or a hand computation on a tiny case (worked in comments)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test
from matplotlib.text import Text
from scipy import stats
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.util import Surv

from bench._core.errors import BenchError
from bench.metrics import horizon as mh
from bench.metrics import survival as survival_metrics


def _y(time, cens):
    return Surv.from_arrays(event=np.asarray(cens) < 0.5, time=np.asarray(time, dtype=float))


def _lifelines_km(time, cens, at):
    return KaplanMeierFitter().fit(time, 1 - np.asarray(cens)).survival_function_at_times(at).to_numpy()


def _cohort(rng, n, scale=30.0, cens_rate=0.6):
    """Exponential event times, independent exponential censoring; rounded to 0.1 month (some ties)."""
    event_t = rng.exponential(scale, n)
    cens_t = rng.exponential(scale / cens_rate * (1 - cens_rate) * 2, n)
    time = np.round(np.minimum(event_t, cens_t), 1) + 0.1
    cens = (cens_t < event_t).astype(float)
    return time, cens


# Training fold of the tiny hand cases. Its censoring Kaplan–Meier G (events leave the risk set
# before the censorings at the same time):
#   t=2: n=7, d=1, c=0 -> G = 1
#   t=3: n=6, d=1, c=1 -> G = 1 - 1/(6-1) = 0.8
#   t=5: n=4, d=0, c=1 -> G = 0.8 * (1 - 1/4) = 0.6
#   t=6: n=3, d=1, c=0 -> G = 0.6
#   t=8: n=2, d=0, c=1 -> G = 0.6 * (1 - 1/2) = 0.3
#   t=9: n=1, d=1, c=0 -> G = 0.3
TRAIN_T = np.array([2.0, 3.0, 3.0, 5.0, 6.0, 8.0, 9.0])
TRAIN_C = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])


def _hand_g(t: float) -> float:
    """The censoring KM of TRAIN_T/TRAIN_C by its product-limit definition, written out in loops."""
    g = 1.0
    for s in sorted(set(TRAIN_T)):
        if s > t:
            break
        n = sum(1 for x in TRAIN_T if x >= s)
        d = sum(1 for x, c in zip(TRAIN_T, TRAIN_C, strict=True) if x == s and c == 0)
        c = sum(1 for x, c in zip(TRAIN_T, TRAIN_C, strict=True) if x == s and c == 1)
        if c:  # 0/0 at the last time (n = d) is no censoring
            g *= 1 - c / (n - d)
    return g


def test_hand_censoring_distribution():
    assert [_hand_g(t) for t in (1, 2, 3, 4, 5, 7, 8, 9)] == pytest.approx([1, 1, 0.8, 0.8, 0.6, 0.6, 0.3, 0.3],
                                                                            abs=1e-15)


# ----------------------------------------------------------------------------------------------
# Horizon


def test_horizon_is_type7_quantile_of_followup():
    t = np.array([10.0, 1.0, 3.0, 2.0, 4.0])
    c = np.array([1.0, 0.0, 1.0, 0.0, 0.0])
    # sorted 1, 2, 3, 4, 10; h = 4 * 0.8 = 3.2 -> 4 + 0.2 * (10 - 4) = 5.2
    assert mh.horizon(t, c) == pytest.approx(5.2, abs=1e-12)
    # event times 1, 2, 4; h = 2 * 0.5 = 1 -> 2
    assert mh.horizon(t, c, 0.5, of="events") == 2.0
    assert mh.horizon(t, c, 1.0) == 10.0
    with pytest.raises(BenchError):
        mh.horizon(t, c, 0.0)
    with pytest.raises(BenchError):
        mh.horizon(t, np.ones(5), of="events")


# ----------------------------------------------------------------------------------------------
# Uno's C at tau

VAL_T = np.array([1.0, 3.0, 4.0, 4.0, 7.0, 10.0])
VAL_C = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0])
VAL_R = np.array([5.0, 3.0, 4.0, 2.0, 2.0, 1.0])


def _hand_uno(time, cens, risk, tau):
    """Uno's C written as its O(n^2) double sum with scikit-survival's comparability rule."""
    num = den = 0.0
    for i in range(len(time)):
        if cens[i] == 1 or time[i] >= tau:
            continue
        w = 1.0 / _hand_g(time[i]) ** 2
        for j in range(len(time)):
            if time[j] > time[i] or (time[j] == time[i] and cens[j] == 1):
                den += w
                num += w * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
    return num / den


def test_uno_at_hand_case():
    # events (weight 1/G(T)^2): T=1 (1), T=3 (1/0.64), T=4 (1/0.64), T=7 (1/0.36)
    #   i=T1, r=5: j = all 5 later patients, all lower risk          -> 5 of 5
    #   i=T3, r=3: j = T4c (r4), T4 (r2), T7 (r2), T10 (r1)          -> 3 of 4
    #   i=T4, r=2: j = T4c (same time, censored; r4), T7 (r2 tie), T10 (r1) -> 0 + 0.5 + 1 of 3
    #   i=T7, r=2: j = T10 (r1)                                      -> 1 of 1
    want8 = (5 + 4.5 / 0.64 + 1 / 0.36) / (5 + 7 / 0.64 + 1 / 0.36)
    got8 = mh.uno_at(TRAIN_T, TRAIN_C, VAL_T, VAL_C, VAL_R, tau=8.0)
    assert got8 == pytest.approx(want8, abs=1e-12)
    assert got8 == pytest.approx(_hand_uno(VAL_T, VAL_C, VAL_R, 8.0), abs=1e-12)
    # tau = 5 drops i = T7 as the earlier patient (it still serves as a later one)
    want5 = (5 + 4.5 / 0.64) / (5 + 7 / 0.64)
    assert mh.uno_at(TRAIN_T, TRAIN_C, VAL_T, VAL_C, VAL_R, tau=5.0) == pytest.approx(want5, abs=1e-12)
    assert _hand_uno(VAL_T, VAL_C, VAL_R, 5.0) == pytest.approx(want5, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_uno_at_equals_sksurv(seed):
    rng = np.random.default_rng(seed)
    tt, tc = _cohort(rng, 120)
    vt, vc = _cohort(rng, 40)
    vt[0], vc[0] = tt.max() + 5.0, 0.0  # a validation event past the training follow-up, beyond tau
    risk = np.round(rng.standard_normal(40), 1)
    for q in (0.5, 0.8, 0.95):
        tau = mh.horizon(tt, tc, q)
        want = concordance_index_ipcw(_y(tt, tc), _y(vt, vc), risk, tau=tau, tied_tol=1e-8)[0]
        assert mh.uno_at(tt, tc, vt, vc, risk, tau) == pytest.approx(want, abs=1e-12)


def test_uno_at_undefined():
    assert math.isnan(mh.uno_at(TRAIN_T, TRAIN_C, VAL_T, VAL_C, VAL_R, tau=0.5))  # no event before tau
    with pytest.raises(BenchError, match="past the last training time"):
        mh.uno_at(TRAIN_T, TRAIN_C, VAL_T, VAL_C, VAL_R, tau=9.5)


# ----------------------------------------------------------------------------------------------
# Curves from 4 bins

EDGES = np.array([0.0, 2.0, 4.0, 6.0, 8.0])
SURV = np.array([[0.9, 0.6, 0.4, 0.2],
                 [0.8, 0.7, 0.5, 0.3]])


def test_curve_at_step_and_linear():
    times = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 7.0, 8.0, 20.0])
    step = mh.curve_at(SURV, EDGES, times)
    assert step[0].tolist() == [1, 1, 1, 0.9, 0.9, 0.6, 0.4, 0.2, 0.2]
    np.testing.assert_array_equal(step, survival_metrics.curve_at(SURV, EDGES, times))  # today's rule
    lin = mh.curve_at(SURV, EDGES, times, rule="linear")
    # through (0, 1), (2, .9), (4, .6), (6, .4), (8, .2); flat outside
    np.testing.assert_allclose(lin[0], [1, 1, 0.95, 0.9, 0.75, 0.6, 0.3, 0.2, 0.2], atol=1e-15)
    np.testing.assert_allclose(lin[1], [1, 1, 0.9, 0.8, 0.75, 0.7, 0.4, 0.3, 0.3], atol=1e-15)
    own = mh.curve_at_own_time(SURV, EDGES, np.array([3.0, 7.0]), rule="linear")
    np.testing.assert_allclose(own, [0.75, 0.4], atol=1e-15)
    with pytest.raises(BenchError):
        mh.curve_at(SURV, EDGES[:-1], times)
    with pytest.raises(BenchError):
        mh.curve_at(SURV, EDGES, times, rule="spline")


# ----------------------------------------------------------------------------------------------
# Evaluation grid


def _folds(seed=0, n=250, k=5):
    rng = np.random.default_rng(seed)
    time, cens = _cohort(rng, n)
    fold = rng.permutation(n) % k
    train = [(time[fold != f], cens[fold != f]) for f in range(k)]
    val = [(time[fold == f], cens[fold == f]) for f in range(k)]
    edges = []
    for t, c in train:
        e = np.quantile(t[c == 0], np.linspace(0, 1, 5))
        e[0], e[-1] = t.min() - 1e-6, t.max() + 1e-6
        edges.append(e)
    return train, val, edges


def test_evaluation_grid_rule():
    train, val, edges = _folds()
    grid = mh.evaluation_grid(train, val, edges, n=20)
    first = max(e[1] for e in edges)
    top = min(mh.horizon(t, c) for t, c in train)
    bound = min(min(v[0].max(), t.max()) for v, (t, _) in zip(val, train, strict=True))
    events = np.concatenate([t[c == 0] for t, c in train])
    lo = max(np.quantile(events, 0.1), first, max(v[0].min() for v in val))
    assert grid.size == 20 and grid[0] == lo and grid[0] >= first
    np.testing.assert_allclose(np.diff(grid), (min(top, bound) - lo) / 19, rtol=1e-12)
    assert grid[-1] == pytest.approx(min(top, bound), abs=1e-12) and grid[-1] < bound
    # every fold can be scored on it, and no grid point sees the all-ones stretch of a step curve
    for (tt, tc), (vt, vc), e in zip(train, val, edges, strict=True):
        surv = np.tile([0.8, 0.6, 0.4, 0.2], (vt.size, 1))
        assert np.all(mh.curve_at(surv, e, grid) < 1)
        assert np.isfinite(mh.ibs(tt, tc, vt, vc, mh.curve_at(surv, e, grid), grid))


def test_evaluation_grid_uses_validation_only_for_its_range():
    train, val, edges = _folds(1)
    grid = mh.evaluation_grid(train, val, edges)
    rng = np.random.default_rng(7)
    changed = []
    for vt, vc in val:
        lo, hi = vt.min(), vt.max()
        inner = (vt > lo) & (vt < hi)
        vt2 = vt.copy()
        vt2[inner] = rng.uniform(lo, hi, inner.sum())  # new times strictly inside the range
        changed.append((vt2, 1.0 - vc))  # every validation censoring flipped
    np.testing.assert_array_equal(mh.evaluation_grid(train, changed, edges), grid)
    # shortening one fold's follow-up below the grid's end moves the end (half-open there) ...
    vt, vc = val[2]
    cut = (grid[0] + grid[-1]) / 2
    keep = vt <= cut
    short = [*val[:2], (vt[keep], vc[keep]), *val[3:]]
    g2 = mh.evaluation_grid(train, short, edges)
    assert g2[0] == grid[0] and g2[-1] < vt[keep].max() and np.allclose(np.diff(g2), (vt[keep].max() - g2[0]) / 20)
    # ... and shorter training follow-up in one fold (a smaller horizon there) changes the grid
    t0, c0 = train[0]
    other = [(0.8 * t0, c0), *train[1:]]
    assert mh.evaluation_grid(other, val, edges)[-1] < grid[-1]


def test_evaluation_grid_starts_at_first_inner_edge():
    train, val, edges = _folds(2)
    late = [e.copy() for e in edges]
    late[3][1] = np.quantile(np.concatenate([t for t, _ in train]), 0.5)
    grid = mh.evaluation_grid(train, val, late)
    assert grid[0] == max(e[1] for e in late) == late[3][1]
    with pytest.raises(BenchError, match="empty range"):
        bad = [e.copy() for e in edges]
        bad[0][1:] = 10_000.0 + np.arange(4)  # a fold whose curves stay at 1 past every validation time
        mh.evaluation_grid(train, val, bad)


# ----------------------------------------------------------------------------------------------
# Time-dependent AUC


def test_time_auc_hand_case():
    # validation: T=12 is an event past the last training time (9), so it is censored at 9 first;
    # at t = 5 the cases are T=1 (weight 1/G(1) = 1) and T=3 (1/G(3) = 1.25), the controls T=7 and T=12
    # (T=4 is censored before t: neither). Case r=.9 beats both controls (.3, .5); case r=.4 beats .3 only.
    #   AUC(5) = (1 * 2 + 1.25 * 1) / ((1 + 1.25) * 2) = 3.25 / 4.5
    vt = np.array([1.0, 3.0, 4.0, 7.0, 12.0])
    vc = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    risk = np.array([0.9, 0.4, 0.8, 0.3, 0.5])
    auc, mean = mh.time_auc(TRAIN_T, TRAIN_C, vt, vc, risk, np.array([5.0]))
    assert auc[0] == pytest.approx(3.25 / 4.5, abs=1e-12) and mean == auc[0]
    # on a grid: equal to scikit-survival on the labels with T=12 replaced by (9, censored)
    grid = np.array([2.0, 5.0, 8.0])
    auc, mean = mh.time_auc(TRAIN_T, TRAIN_C, vt, vc, risk, grid)
    want, want_mean = cumulative_dynamic_auc(_y(TRAIN_T, TRAIN_C), _y([1, 3, 4, 7, 9], [0, 0, 1, 0, 1]), risk, grid)
    np.testing.assert_allclose(auc, want, atol=1e-12)
    assert mean == pytest.approx(want_mean, abs=1e-12)


def test_time_auc_before_first_event_is_nan():
    vt = np.array([0.5, 1.0, 3.0, 7.0, 8.5])
    vc = np.array([1.0, 0.0, 0.0, 0.0, 1.0])
    risk = np.array([0.1, 0.9, 0.4, 0.3, 0.2])
    auc, mean = mh.time_auc(TRAIN_T, TRAIN_C, vt, vc, risk, np.array([0.7, 5.0]))
    assert math.isnan(auc[0])
    want = cumulative_dynamic_auc(_y(TRAIN_T, TRAIN_C), _y(vt, vc), risk, [5.0])[0][0]
    assert auc[1] == pytest.approx(want, abs=1e-12) and mean == pytest.approx(want, abs=1e-12)
    with pytest.raises(BenchError, match="scorable range"):
        mh.time_auc(TRAIN_T, TRAIN_C, vt, vc, risk, np.array([5.0, 8.7]))


@pytest.mark.parametrize("seed", [3, 4])
def test_time_auc_equals_sksurv(seed):
    rng = np.random.default_rng(seed)
    tt, tc = _cohort(rng, 150)
    vt, vc = _cohort(rng, 50)
    vt = np.minimum(vt, tt.max() - 1.0)
    risk = np.round(rng.standard_normal(50), 1)  # with ties
    grid = np.linspace(np.quantile(vt, 0.2), np.quantile(vt, 0.8), 7)
    auc, mean = mh.time_auc(tt, tc, vt, vc, risk, grid)
    want, want_mean = cumulative_dynamic_auc(_y(tt, tc), _y(vt, vc), risk, grid, tied_tol=1e-8)
    np.testing.assert_allclose(auc, want, atol=1e-12)
    assert mean == pytest.approx(want_mean, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Brier, IBS, KM reference


@pytest.mark.parametrize("seed", [5, 6])
def test_km_reference_equals_lifelines(seed):
    rng = np.random.default_rng(seed)
    tt, tc = _cohort(rng, 80)
    at = np.concatenate([[0.0, tt.min()], np.quantile(tt, [0.1, 0.5, 0.9]), np.unique(tt)[:10], [tt.max()]])
    np.testing.assert_allclose(mh.km_reference(tt, tc, at), _lifelines_km(tt, tc, at), atol=1e-12)


def test_brier_hand_case():
    # t = 5 with S = [.9, .6, .5, .4, .7]: cases T=1 (1/G(1)=1), T=3 (1/G(3)=1.25) add S^2/G(T);
    # controls T=7, T=12 (censored at 9 first) add (1-S)^2/G(5) = (1-S)^2/0.6; T=4 censored adds 0.
    #   BS = (0.81 + 1.25 * 0.36 + 0.36 / 0.6 + 0.09 / 0.6) / 5
    vt = np.array([1.0, 3.0, 4.0, 7.0, 12.0])
    vc = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    s = np.array([[0.9], [0.6], [0.5], [0.4], [0.7]])
    want = (0.81 + 1.25 * 0.36 + 0.36 / 0.6 + 0.09 / 0.6) / 5
    assert mh.brier_at(TRAIN_T, TRAIN_C, vt, vc, s, np.array([5.0]))[0] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", [7, 8])
def test_brier_ibs_and_km_reference_equal_sksurv(seed):
    rng = np.random.default_rng(seed)
    tt, tc = _cohort(rng, 150)
    vt, vc = _cohort(rng, 50)
    vt = np.minimum(vt, tt.max() - 1.0)
    grid = np.linspace(np.quantile(vt, 0.1), np.quantile(vt, 0.85), 9)
    surv = np.sort(rng.uniform(0.05, 1.0, (50, 4)), axis=1)[:, ::-1]
    edges = np.quantile(tt, [0, 0.2, 0.45, 0.7, 1.0])
    s_at = mh.curve_at(surv, edges, grid)
    _, want_bs = brier_score(_y(tt, tc), _y(vt, vc), s_at, grid)
    np.testing.assert_allclose(mh.brier_at(tt, tc, vt, vc, s_at, grid), want_bs, atol=1e-12)
    want_ibs = integrated_brier_score(_y(tt, tc), _y(vt, vc), s_at, grid)
    assert mh.ibs(tt, tc, vt, vc, s_at, grid) == pytest.approx(want_ibs, abs=1e-12)
    km = np.tile(_lifelines_km(tt, tc, grid), (50, 1))  # the reference model from lifelines
    want_km = integrated_brier_score(_y(tt, tc), _y(vt, vc), km, grid)
    model, ref, skill = mh.ibs_skill(tt, tc, vt, vc, s_at, grid)
    assert (model, ref) == (pytest.approx(want_ibs, abs=1e-12), pytest.approx(want_km, abs=1e-12))
    assert skill == pytest.approx(1 - want_ibs / want_km, abs=1e-12)


def test_brier_horizons_where_followup_allows():
    rng = np.random.default_rng(9)
    tt, tc = _cohort(rng, 150, scale=20.0)
    vt, vc = _cohort(rng, 50, scale=20.0)
    vt = np.minimum(vt, 50.0)  # follow-up ends at 50 months: the 5-year horizon is out of range
    surv = np.tile([0.9, 0.7, 0.5, 0.3], (50, 1))
    edges = np.array([0.0, 6.0, 20.0, 40.0, 200.0])
    table = mh.brier_horizons(tt, tc, vt, vc, surv, edges)
    assert table["horizon"].tolist() == [12.0, 36.0, 60.0]
    assert math.isnan(table["brier"][2]) and math.isnan(table["brier_km"][2])
    for i, h in enumerate((12.0, 36.0)):
        s_h = mh.curve_at(surv, edges, [h])
        assert table["brier"][i] == pytest.approx(brier_score(_y(tt, tc), _y(vt, vc), s_h, [h])[1][0], abs=1e-12)
        km = np.full((50, 1), _lifelines_km(tt, tc, [h])[0])
        assert table["brier_km"][i] == pytest.approx(brier_score(_y(tt, tc), _y(vt, vc), km, [h])[1][0], abs=1e-12)
        assert table["skill"][i] == pytest.approx(1 - table["brier"][i] / table["brier_km"][i], abs=1e-12)


# ----------------------------------------------------------------------------------------------
# D-calibration


def test_d_calibration_hand_case():
    # 4 bins [0,.25) [.25,.5) [.5,.75) [.75,1]; the lower bound belongs to the bin, 1 to the top bin.
    #   events: S=.9 -> bin 3; S=.3 -> bin 1; S=.5 -> bin 2; S=1 -> bin 3
    #   censored s=.6: bin 2 gets (.6 - .5)/.6 = 1/6, bins 0 and 1 get .25/.6 = 5/12 each
    #   censored s=1:  1/4 to every bin
    #   censored s=0:  1 to bin 0
    #   hist = [5/12 + 3/12 + 12/12, 12/12 + 5/12 + 3/12, 12/12 + 2/12 + 3/12, 24/12 + 3/12]
    #        = [20, 20, 17, 27] / 12, sum 84/12 = 7 patients
    #   chi2 = sum (h - 21/12)^2 / (21/12) = (1 + 1 + 16 + 36)/144 * 12/21 = 3/14
    s = np.array([0.9, 0.3, 0.5, 1.0, 0.6, 1.0, 0.0])
    c = np.array([0, 0, 0, 0, 1, 1, 1])
    hist, chi2, p = mh.d_calibration(s, c, n_bins=4)
    np.testing.assert_allclose(hist, np.array([20, 20, 17, 27]) / 12, atol=1e-12)
    assert chi2 == pytest.approx(3 / 14, abs=1e-12)
    assert p == pytest.approx(stats.chi2.sf(3 / 14, 3), abs=1e-12)
    ref = stats.chisquare(hist)
    assert (chi2, p) == (pytest.approx(ref.statistic, abs=1e-12), pytest.approx(ref.pvalue, abs=1e-12))


def test_d_calibration_of_a_calibrated_model():
    # exponential times with the true survival curves, uniform censoring: S(T) ~ U(0, 1) given the
    # curve, and the censored mass spread by the paper's rule keeps the histogram flat
    rng = np.random.default_rng(10)
    n = 4000
    lam = rng.uniform(0.02, 0.1, n)
    event_t, cens_t = rng.exponential(1 / lam), rng.uniform(0, 60, n)
    time = np.minimum(event_t, cens_t)
    cens = (cens_t < event_t).astype(float)
    hist, _, p = mh.d_calibration(np.exp(-lam * time), cens)
    assert hist.sum() == pytest.approx(n, abs=1e-9)
    assert p > 0.001
    _, _, p_bad = mh.d_calibration(np.exp(-0.3 * lam * time), cens)  # survival overstated
    assert p_bad < 1e-6


# ----------------------------------------------------------------------------------------------
# Calibration by risk group and its figure


def test_calibration_by_decile_groups_and_km():
    rng = np.random.default_rng(11)
    time, cens = _cohort(rng, 20)
    risk = np.arange(20.0)
    pred = np.linspace(0.9, 0.2, 20)
    table = mh.calibration_by_decile(time, cens, pred, risk, 24.0, groups=4)
    # cuts at the validation quartiles 4.75, 9.5, 14.25: risks 0-4, 5-9, 10-14, 15-19
    assert table["n"].tolist() == [5, 5, 5, 5] and table["group"].tolist() == [0, 1, 2, 3]
    for g, row in table.iterrows():
        m = (risk >= 5 * g) & (risk < 5 * g + 5)
        assert row["predicted"] == pytest.approx(pred[m].mean(), abs=1e-12)
        km = KaplanMeierFitter().fit(time[m], 1 - cens[m])
        if time[m].max() >= 24.0 or km.survival_function_.iloc[-1, 0] == 0:
            assert row["observed"] == pytest.approx(km.survival_function_at_times([24.0]).iloc[0], abs=1e-12)
        else:
            assert math.isnan(row["observed"])
        if np.isfinite(row["observed"]):
            assert row["observed_lo"] <= row["observed"] <= row["observed_hi"]
    # past a group's last time its Kaplan–Meier curve is undefined unless it reached 0
    late = mh.calibration_by_decile(time, cens, pred, risk, 1000.0, groups=4)
    for g, row in late.iterrows():
        m = (risk >= 5 * g) & (risk < 5 * g + 5)
        last = KaplanMeierFitter().fit(time[m], 1 - cens[m]).survival_function_.iloc[-1, 0]
        assert row["observed"] == 0.0 if last == 0 else math.isnan(row["observed"])
    # cuts from the training risks: quartiles of 0, 2, ..., 38 are 9.5, 19, 28.5; a risk equal to a
    # cut goes up (risk 19 joins group 2), and the empty top group is left out
    table = mh.calibration_by_decile(time, cens, pred, risk, 24.0, groups=4, train_risk=np.arange(0.0, 40.0, 2.0))
    assert table["n"].tolist() == [10, 9, 1] and table["group"].tolist() == [0, 1, 2]


def test_plot_calibration_figure():
    rng = np.random.default_rng(12)
    pred = np.linspace(0.2, 0.9, 10)
    obs = np.clip(pred + rng.normal(0, 0.05, 10), 0, 1)
    fig = mh.plot_calibration(pred, obs, observed_lo=obs - 0.1, observed_hi=obs + 0.1, horizon=36,
                              label="CCL", title="CCL, UCEC (fold 1)")
    assert tuple(fig.get_size_inches()) == (3.5, 3.6)
    ax = fig.axes[0]
    assert "Predicted survival at 36 months" in ax.get_xlabel()
    assert "observed survival at 36 months" in ax.get_ylabel()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    labels = {t.get_text() for t in texts}
    assert {"CCL (risk groups)", "perfect calibration", "CCL, UCEC (fold 1)"} <= labels
    for t in texts:
        box = t.get_window_extent(renderer)
        assert fig.bbox.x0 - 0.5 <= box.x0 and box.x1 <= fig.bbox.x1 + 0.5, t.get_text()
        assert fig.bbox.y0 - 0.5 <= box.y0 and box.y1 <= fig.bbox.y1 + 0.5, t.get_text()
        assert t.get_fontsize() >= 7, t.get_text()
    # the legend lies outside the data area
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.y1 <= ax.get_window_extent(renderer).y0


# ----------------------------------------------------------------------------------------------
# Antolini's C


def test_antolini_hand_case():
    surv = np.array([[0.9, 0.6, 0.4, 0.2],    # A: T=3 event
                     [0.8, 0.7, 0.5, 0.3],    # B: T=5 censored
                     [0.95, 0.6, 0.3, 0.1],   # C: T=5 event
                     [0.9, 0.8, 0.7, 0.6]])   # D: T=7 event
    time = np.array([3.0, 5.0, 5.0, 7.0])
    cens = np.array([0.0, 1.0, 0.0, 0.0])
    # step: S(3) = column 0, S(5) = column 1, S(7) = column 2
    #   i=A, S_A(3)=.9: B .8 (0), C .95 (1), D .9 (tie, 1/2)                 -> 1.5 of 3
    #   i=C, S_C(5)=.6: D .8 (1); B has the same time and is censored: .7 (1) -> 2 of 2
    #   i=D: no later patient; B is censored                                 -> 3.5 / 5
    assert mh.antolini_cindex(time, cens, surv, EDGES) == pytest.approx(0.7, abs=1e-12)
    # linear: S(3) halfway between columns 0 and 1, S(5) halfway between 1 and 2
    #   i=A, S_A=.75: B .75 (tie), C .775 (1), D .85 (1)  -> 2.5 of 3
    #   i=C, S_C=.45: D .75 (1), B .6 (1)                 -> 2 of 2   => 4.5 / 5
    assert mh.antolini_cindex(time, cens, surv, EDGES, rule="linear") == pytest.approx(0.9, abs=1e-12)


@pytest.mark.parametrize("seed", [13, 14])
def test_antolini_equals_harrell_when_curves_never_cross(seed):
    rng = np.random.default_rng(seed)
    time, cens = _cohort(rng, 60)
    lam = np.round(rng.uniform(0.5, 2.0, 60), 1)  # with exact ties
    harrell = concordance_index_censored(cens < 0.5, time, lam, tied_tol=1e-8)[0]
    # continuous proportional-hazards curves S_j(t) = exp(-lam_j t / 30)
    s_at = np.exp(-np.outer(time, lam) / 30)
    assert mh.antolini_from_matrix(time, cens, s_at) == pytest.approx(harrell, abs=1e-12)
    # the same through 4-bin step curves S_k^{lam}, every time past the first inner edge
    edges = np.array([0.0, time.min(), 20.0, 40.0, time.max() + 1])
    surv = np.array([0.9, 0.7, 0.5, 0.3])[None, :] ** lam[:, None]
    assert mh.antolini_cindex(time, cens, surv, edges) == pytest.approx(harrell, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Log-rank statistic and permutation p


@pytest.mark.parametrize("seed", range(5))
def test_logrank_statistic_equals_lifelines(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 120))
    time = rng.integers(1, 25, n).astype(float)  # many tied times
    cens = (rng.random(n) < 0.5).astype(float)
    high = rng.random(n) < 0.4
    want = logrank_test(time[high], time[~high], 1 - cens[high], 1 - cens[~high]).test_statistic
    assert mh.logrank_statistic(time, cens, high)[0] == pytest.approx(want, rel=1e-12)
    # rows of a label matrix are independent problems
    labels = rng.random((4, n)) < 0.5
    got = mh.logrank_statistic(time, cens, labels)
    for row, g in zip(labels, got, strict=True):
        assert g == pytest.approx(logrank_test(time[row], time[~row], 1 - cens[row], 1 - cens[~row]).test_statistic,
                                  rel=1e-12)


FOLD_A = (np.array([2.0, 4.0, 6.0, 8.0, 10.0]), np.array([0.0, 0.0, 1.0, 0.0, 0.0]),
          np.array([0.9, 0.8, 0.1, 0.2, 0.3]), 0.5)
FOLD_B = (np.array([3.0, 5.0, 7.0, 9.0]), np.array([0.0, 1.0, 0.0, 0.0]), np.array([0.7, 0.1, 0.2, 0.6]), 0.5)


def _exact_p(folds, within=True):
    """Exact permutation p: every arrangement of the high labels, within each fold (or pooled)."""
    time = np.concatenate([f[0] for f in folds])
    cens = np.concatenate([f[1] for f in folds])
    obs = np.concatenate([(f[2] >= f[3]) for f in folds]).astype(float)
    blocks = [len(f[0]) for f in folds] if within else [time.size]
    start = np.cumsum([0, *blocks])
    counts = [int(obs[a:b].sum()) for a, b in itertools.pairwise(start)]
    rows = []
    for combo in itertools.product(*[itertools.combinations(range(a, b), c)
                                     for (a, b), c in zip(itertools.pairwise(start), counts, strict=True)]):
        row = np.zeros(time.size)
        row[list(itertools.chain(*combo))] = 1
        rows.append(row)
    stat = mh.logrank_statistic(time, cens, np.array(rows))
    observed = mh.logrank_statistic(time, cens, obs)[0]
    return float(np.mean(stat >= observed * (1 - 1e-9))), len(rows)


def test_permutation_p_against_full_enumeration():
    exact, n_configs = _exact_p([FOLD_A, FOLD_B])
    pooled, _ = _exact_p([FOLD_A, FOLD_B], within=False)
    assert n_configs == 10 * 6 and pooled != pytest.approx(exact, abs=0.02)  # the within-fold constraint matters
    stat, p = mh.permutation_logrank([FOLD_A, FOLD_B], n_perm=20000, seed=0)
    time = np.concatenate([FOLD_A[0], FOLD_B[0]])
    cens = np.concatenate([FOLD_A[1], FOLD_B[1]])
    high = np.concatenate([FOLD_A[2] >= 0.5, FOLD_B[2] >= 0.5])
    assert stat == pytest.approx(logrank_test(time[high], time[~high], 1 - cens[high], 1 - cens[~high]).test_statistic,
                                 rel=1e-12)
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / 20000) + 1 / 20001
    assert (stat, p) == mh.permutation_logrank([FOLD_A, FOLD_B], n_perm=20000, seed=0)  # seeded


def test_permutation_p_is_one_when_no_rearrangement_exists():
    # each fold is entirely high or entirely low risk: the only within-fold arrangement is the observed one
    a = (FOLD_A[0], FOLD_A[1], np.ones(5), 0.5)
    b = (FOLD_B[0], FOLD_B[1], np.zeros(4), 0.5)
    stat, p = mh.permutation_logrank([a, b], n_perm=1000)
    assert np.isfinite(stat) and p == 1.0
    stat, p = mh.permutation_logrank([a, (FOLD_B[0], FOLD_B[1], np.ones(4), 0.5)], n_perm=1000)
    assert math.isnan(stat) and math.isnan(p)  # one group only
    with pytest.raises(BenchError, match="at least 1000"):
        mh.permutation_logrank([FOLD_A, FOLD_B], n_perm=999)


def test_permutation_p_is_small_for_a_strong_split():
    rng = np.random.default_rng(15)
    folds = []
    for _ in range(5):
        risk = rng.standard_normal(60)
        time = rng.exponential(20 * np.exp(-risk))
        cens = (rng.random(60) < 0.3).astype(float)
        folds.append((time, cens, risk, 0.0))
    stat, p = mh.permutation_logrank(folds, n_perm=2000, seed=1)
    assert stat > 20 and p == pytest.approx(1 / 2001, abs=1e-15)


def test_logrank_p_equals_lifelines_logrank_test():
    rng = np.random.default_rng(3)
    for n in (8, 40, 300):
        time = np.round(rng.exponential(40, n), 0) + 1  # rounded: tied event times
        cens = (rng.random(n) < 0.6).astype(float)
        high = rng.random(n) < 0.4
        high[:2] = [True, False]
        ev = cens < 0.5
        want = logrank_test(time[high], time[~high], ev[high], ev[~high]).p_value
        assert survival_metrics.logrank_p(time, cens, high) == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert np.isnan(survival_metrics.logrank_p(np.ones(3), np.zeros(3), np.ones(3, dtype=bool)))
