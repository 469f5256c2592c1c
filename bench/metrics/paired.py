"""Paired comparisons of two methods from their stored predictions: is A better than B beyond noise?

Two complementary answers, both on the folds, seeds and patients the two methods share:

* **Corrected resampled t-test** (Nadeau & Bengio, Machine Learning 2003; for repeated k-fold
  cross-validation Bouckaert & Frank, PAKDD 2004). The ``J`` per fold × seed differences
  ``d_j = C_A - C_B`` are not independent: the training sets overlap. The naive variance of their
  mean, ``s² / J``, is replaced by ``(1/J + n_test/n_train) s²`` (``s²`` with ``ddof=1``), and
  ``t = mean(d) / sqrt((1/J + n_test/n_train) s²)`` is compared with Student's t on ``J - 1``
  degrees of freedom. :attr:`CorrectedTTest.correction` is the factor by which the naive variance
  is inflated, ``1 + J n_test / n_train``.
* **Paired patient-level bootstrap** of the C-index difference. Within each fold the validation
  patients are resampled with replacement (the same resample for A and B and for every seed, so the
  pairing is kept); Harrell's C of both methods is recomputed on each resample, the difference is
  averaged over seeds and then over folds, and the 2.5th and 97.5th percentiles of that average
  over the resamples form the 95% interval. Harrell's C on a resample equals the weighted C with
  the resample's multiplicities as weights, so each fold costs one ``[B, n] @ [n, n]`` product
  per method and seed (no Python loop over resamples).

The verdict (:func:`verdict`) calls A and B *distinguishable* only when both agree: the corrected
two-sided p is below ``alpha`` and the bootstrap interval excludes 0.

Harrell's C here follows scikit-survival's ``concordance_index_censored`` exactly (the C-index
every table shows): patient ``i`` with an event is comparable with ``j`` when ``T_j > T_i``, or
``T_j == T_i`` and ``j`` is censored; the pair is concordant when ``risk_i > risk_j`` and counts
one half when ``|risk_i - risk_j| <= tied_tol``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bench._core.errors import BenchError

TIED_TOL = 1e-8


# ----------------------------------------------------------------------------------------------
# Harrell's C as a weighted pair sum


def pair_matrices(time: np.ndarray, censorship: np.ndarray, risk: np.ndarray,
                  tied_tol: float = TIED_TOL) -> tuple[np.ndarray, np.ndarray]:
    """``(comparable, score)``, both ``[n, n]``: which ordered pairs count, and what each scores.

    ``comparable[i, j]`` is 1 when the pair enters Harrell's C with ``i`` as the earlier event;
    ``score[i, j]`` is 1 for a concordant pair, 0.5 for a risk tie and 0 otherwise (zero wherever
    the pair is not comparable). ``sum(score) / sum(comparable)`` is Harrell's C.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(censorship) < 0.5
    risk = np.asarray(risk, dtype=float)
    later = time[None, :] > time[:, None]
    same_time_censored = (time[None, :] == time[:, None]) & ~event[None, :]
    comparable = (event[:, None] & (later | same_time_censored)).astype(float)
    diff = risk[:, None] - risk[None, :]
    tie = np.abs(diff) <= tied_tol
    score = np.where(tie, 0.5, (diff > 0).astype(float)) * comparable
    return comparable, score


def weighted_cindex(comparable: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Harrell's C under patient weights ``[B, n]`` (bootstrap multiplicities): ``[B]``, NaN where no
    pair is comparable. With integer weights it equals Harrell's C of the expanded resample."""
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    num = np.einsum("bi,bi->b", weights @ score, weights)
    den = np.einsum("bi,bi->b", weights @ comparable, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


# ----------------------------------------------------------------------------------------------
# The paired comparison


@dataclass(frozen=True)
class FoldPair:
    """One fold's shared validation patients and both methods' risks.

    ``risk_a`` and ``risk_b`` are ``[n_seeds, n]`` (seed-major, the same seeds for both, rows in the
    order of ``time``); a single seed may be given as a 1-d array.
    """

    fold: int
    time: np.ndarray
    censorship: np.ndarray
    risk_a: np.ndarray
    risk_b: np.ndarray

    def risks(self) -> tuple[np.ndarray, np.ndarray]:
        a, b = np.atleast_2d(np.asarray(self.risk_a, dtype=float)), np.atleast_2d(np.asarray(self.risk_b, dtype=float))
        n = len(self.time)
        if a.shape != b.shape or a.shape[1] != n:
            raise BenchError(f"fold {self.fold}: risks of shape {a.shape} and {b.shape} for {n} patients; "
                             "both methods need the same seeds and patients")
        return a, b


@dataclass(frozen=True)
class CorrectedTTest:
    """The Nadeau–Bengio corrected resampled t-test of per fold × seed differences."""

    mean: float
    t: float
    df: int
    p_two_sided: float
    p_greater: float  # H1: mean difference > 0 (A better)
    p_less: float
    correction: float  # factor on the naive variance s²/J: 1 + J * n_test / n_train
    n_diffs: int


def corrected_ttest(diffs: Sequence[float], test_train_ratio: float) -> CorrectedTTest:
    """Corrected resampled t-test of ``J`` per fold × seed differences (module docstring).

    Args:
        diffs: the differences ``C_A - C_B``, one per fold and seed (at least two).
        test_train_ratio: ``n_test / n_train`` of the resampling scheme (about 1/4 for 5 folds).
    """
    d = np.asarray(diffs, dtype=float)
    if d.size < 2 or not np.isfinite(d).all():
        raise BenchError(f"the corrected t-test needs at least two finite differences, got {d.tolist()}")
    if not test_train_ratio > 0:
        raise BenchError(f"test/train size ratio must be positive, got {test_train_ratio}")
    j = d.size
    mean = float(d[0]) if d.min() == d.max() else float(d.mean())
    # equal differences have exactly zero spread (d.var can round to a tiny positive number)
    var = 0.0 if d.min() == d.max() else float(d.var(ddof=1)) * (1.0 / j + test_train_ratio)
    if var == 0.0:
        t = 0.0 if mean == 0.0 else float(np.copysign(np.inf, mean))
    else:
        t = mean / np.sqrt(var)
    df = j - 1
    p_greater = float(stats.t.sf(t, df))
    p_less = float(stats.t.cdf(t, df))
    p_two = float(min(1.0, 2.0 * min(p_greater, p_less)))
    return CorrectedTTest(mean=mean, t=float(t), df=df, p_two_sided=p_two, p_greater=p_greater, p_less=p_less,
                          correction=1.0 + j * test_train_ratio, n_diffs=j)


@dataclass(frozen=True)
class PairedBootstrap:
    """Paired patient-level bootstrap of the mean (over folds, of the mean over seeds) C difference."""

    mean: float  # the observed mean difference
    low: float
    high: float
    n_resamples: int
    n_undefined: int  # resamples of some fold with no comparable pair (left out)
    replicates: np.ndarray  # [n_resamples - n_undefined] bootstrap mean differences


def paired_bootstrap(folds: Sequence[FoldPair], n_resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> PairedBootstrap:
    """Percentile interval of the C-index difference A − B by a paired patient bootstrap per fold.

    Args:
        folds: each fold's shared patients and both methods' risks (:class:`FoldPair`).
        n_resamples: bootstrap resamples per fold (the same count in every fold).
        seed: seeds the resampling (``numpy.random.default_rng``); folds draw in the order given.
        confidence: the interval's coverage.
    """
    if not folds:
        raise BenchError("no folds to compare")
    if n_resamples < 1:
        raise BenchError(f"n_resamples must be at least 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    observed, per_fold = [], []
    for f in folds:
        a, b = f.risks()
        n = a.shape[1]
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)
        ones = np.ones((1, n))
        diff_obs, diff_boot = [], []
        for ra, rb in zip(a, b, strict=True):
            comp, sa = pair_matrices(f.time, f.censorship, ra)
            _, sb = pair_matrices(f.time, f.censorship, rb)
            diff_obs.append(float(weighted_cindex(comp, sa, ones)[0] - weighted_cindex(comp, sb, ones)[0]))
            diff_boot.append(weighted_cindex(comp, sa, weights) - weighted_cindex(comp, sb, weights))
        observed.append(float(np.mean(diff_obs)))
        per_fold.append(np.mean(diff_boot, axis=0))
    reps = np.mean(per_fold, axis=0)
    ok = np.isfinite(reps)
    reps = reps[ok]
    if reps.size == 0:
        raise BenchError("no bootstrap resample had comparable pairs in every fold")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return PairedBootstrap(mean=float(np.mean(observed)), low=float(low), high=float(high), n_resamples=n_resamples,
                           n_undefined=int((~ok).sum()), replicates=reps)


def verdict(ttest: CorrectedTTest, boot: PairedBootstrap, alpha: float = 0.05) -> str:
    """``"A better"``, ``"B better"`` or ``"not distinguishable"``: distinguishable only when the
    corrected two-sided p is below ``alpha`` and the bootstrap interval excludes 0."""
    if ttest.p_two_sided < alpha and boot.low > 0 and ttest.mean > 0:
        return "A better"
    if ttest.p_two_sided < alpha and boot.high < 0 and ttest.mean < 0:
        return "B better"
    return "not distinguishable"
