"""Survival metrics on a pre-specified horizon and a fixed grid, a Kaplan–Meier reference, calibration,
Antolini's C and a within-fold permutation log-rank test: the pure core of issue 14.

Every function takes plain arrays and returns numbers, arrays, a table or a figure; nothing here reads
the store. All arithmetic is float64.

Conventions
-----------
* **Labels**: ``time`` in months and ``censorship`` with 1 = censored, 0 = event (the store's
  columns); ``risk`` higher = worse.
* **Training fold only**: the horizon ``tau`` (:func:`horizon`), the time grid
  (:func:`evaluation_grid`), the censoring distribution of every IPCW estimate, the Kaplan–Meier
  reference (:func:`km_reference`) and the risk-group thresholds of :func:`permutation_logrank`
  all come from training labels. Validation labels enter the grid only through the range in which
  scikit-survival can score them.
* **Horizon** ``tau``: the ``quantile`` (default 0.8) of the training fold's observed follow-up
  times, events and censored alike (``of="events"``: the event times only), by numpy's default
  ``"linear"`` quantile (Hyndman & Fan type 7: with the ``n`` sorted times ``x_(0..n-1)`` and
  ``h = (n - 1) q``, ``x_(⌊h⌋) + (h - ⌊h⌋)(x_(⌊h⌋+1) - x_(⌊h⌋))``). Since ``tau`` never exceeds the
  largest training time, the training censoring survival ``G`` is positive before ``tau``.
* **Censoring distribution** ``G``: scikit-survival's ``CensoringDistributionEstimator``, the
  reverse Kaplan–Meier of the training labels, right-continuous, where events at a time are removed
  from the risk set before the censorings at that time:
  ``G(t) = prod_{s <= t} (1 - c_s / (n_s - d_s))``.
* **Uno's C** (:func:`uno_at`): ``concordance_index_ipcw(train, val, risk, tau, tied_tol=1e-8)``:
  ``sum_ij D_i G(T_i)^-2 I(T_i < tau) I(i, j comparable) [I(r_i > r_j) + 1/2 I(|r_i - r_j| <= 1e-8)]``
  over the same sum without the bracket, where ``(i, j)`` is comparable when ``T_j > T_i``, or
  ``T_j == T_i`` and ``j`` is censored. NaN when no validation event lies before ``tau``.
* **Validation patients past the training follow-up**: before an IPCW score on the grid (AUC,
  Brier), a validation patient with ``T >= max(train time)`` is administratively censored at
  ``max(train time)``. The grid lies strictly below that time, so every case / control status and
  every weight used at a grid time is unchanged, while scikit-survival no longer needs ``G`` where
  it is undefined.
* **Survival curves from 4 bins**: column ``surv_k`` = ``S_k`` is the probability of surviving
  through time bin ``k``, i.e. past its upper edge ``edges[k+1]`` (``K`` bins, ``K + 1`` edges).
  :func:`curve_at` evaluates them at any time by one of two rules:

  - ``"step"`` (default, the store's rule): right-continuous, 1 before the first inner edge,
    ``S_k`` from ``edges[k+1]`` on: ``S(t) = [1, S_0, ..., S_{K-1}][searchsorted(edges[1:], t,
    side="right")]``; exact at the edges, an upper bound inside a bin.
  - ``"linear"``: piecewise linear through ``(edges[0], 1), (edges[1], S_0), ..., (edges[K],
    S_{K-1})``; 1 before ``edges[0]`` and ``S_{K-1}`` after ``edges[K]``.

* **Evaluation grid** (:func:`evaluation_grid`), one per cohort, shared by all folds and methods:
  ``n`` equally spaced times from ``lo`` to ``hi`` where

  - ``lo = max(quantile(pooled training event times, low), max_k edges_k[1], max_k min(val time_k))``:
    never before any fold's first inner edge (before it every step curve is 1, so a curve-based
    AUC is 0.5 and the Brier score says nothing about the model), and not before a validation fold
    starts (scikit-survival's lower limit);
  - ``hi = min(min_k tau_k, b)`` with ``b = min_k min(max(val time_k), max(train time_k))``, the
    range where every fold still has validation patients at risk and a defined ``G``. When ``b``
    binds, the grid is half-open (``n`` equally spaced points of ``[lo, b)``), since
    scikit-survival needs every time strictly below the largest validation time.

  The pooled training event times concatenate every fold's training events (a patient counts once
  per training fold it belongs to).
* **Time-dependent AUC** (:func:`time_auc`): scikit-survival's cumulative/dynamic AUC of the model's
  single risk score (cases ``T <= t`` with an event, weighted ``1 / G(T)``; controls ``T > t``;
  ties in risk count 1/2), and its Kaplan–Meier-weighted mean. At grid times before the first
  validation event there is no case: AUC is NaN there and the mean runs over the remaining times.
* **Brier score and IBS**: scikit-survival's ``brier_score`` (Graf et al. 1999) and
  ``integrated_brier_score`` (trapezoid over the grid divided by its length) of ``S(t)`` from
  :func:`curve_at`. The reference is the training fold's Kaplan–Meier curve
  (``kaplan_meier_estimator``, right-continuous), the same curve for every validation patient,
  scored on the same grid; skill ``1 - IBS / IBS_KM`` (> 0: better than the reference).
  :func:`brier_horizons` scores 12, 36 and 60 months; a horizon is NaN unless
  ``min(val time) <= h < min(max(val time), max(train time))`` (scikit-survival's range, after the
  administrative censoring above).
* **D-calibration** (:func:`d_calibration`; Haider, Hoehn, Davis & Greiner, JMLR 21(85), 2020,
  and the authors' reference code, DCalibration.R): ``B`` equal bins of ``[0, 1]``; bin ``k`` holds ``s`` when
  ``k <= s B < k + 1`` (left-closed), and ``s = 1`` goes to the top bin. An event adds 1 to the bin
  of ``s = S(T_i)``. A censored patient with ``s = S(c_i)`` adds ``P(U in bin | U < s)`` for
  ``U ~ Uniform(0, 1)``: ``(s - k/B) / s`` to its own bin ``k``, ``(1/B) / s`` to each bin below,
  nothing above; ``s = 0`` puts its whole unit in the lowest bin (the limit), ``s = 1`` spreads
  ``1/B`` over every bin. The histogram sums to ``n``; ``chi2 = sum (h - n/B)^2 / (n/B)``, ``p`` from
  ``chi2(B - 1)``. ``S(T_i)`` comes from :func:`curve_at_own_time` under the stated rule.
* **Calibration by risk group** (:func:`calibration_by_decile`): groups cut at the ``1/G, ...,
  (G-1)/G`` quantiles of a reference risk (the training fold's risks when given, else the validation
  risks); a risk equal to a cut goes to the higher group (as ``risk >= threshold`` = high risk).
  Predicted = mean ``S(horizon)``; observed = the group's Kaplan–Meier ``S(horizon)`` with a 95%
  log-log interval (NaN past the group's last time unless the curve reached 0).
* **Antolini's C** (:func:`antolini_cindex`; Antolini, Boracchi & Biganzoli, Stat. Med. 2005): pairs
  comparable as for Harrell's C in scikit-survival (``i`` an event and ``T_j > T_i``, or ``T_j ==
  T_i`` with ``j`` censored); concordant when ``S_i(T_i) < S_j(T_i)``, 1/2 when
  ``|S_i(T_i) - S_j(T_i)| <= 1e-8``. When no two curves cross (e.g. proportional hazards) it equals
  Harrell's C of any risk that orders the curves.
* **Permutation log-rank** (:func:`permutation_logrank`): high risk = ``risk >= threshold`` with each
  fold's training-derived threshold; the statistic is the two-group log-rank chi-square (1 df) of
  all folds' validation patients pooled (hypergeometric variance for tied event times, as
  lifelines' ``logrank_test``); the high/low labels are permuted within each fold (each fold keeps
  its number of high-risk patients), seeded with ``numpy.random.default_rng(seed)``;
  ``p = (1 + #{perm stat >= observed}) / (1 + n_perm)``, with a relative tolerance of 1e-9 on ``>=``
  so that a permutation with the observed partition always counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import brier_score, concordance_index_ipcw, cumulative_dynamic_auc, integrated_brier_score
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from bench._core.errors import BenchError

TIED_TOL = 1e-8
RULES = ("step", "linear")
HORIZONS = (12.0, 36.0, 60.0)
MIN_PERMUTATIONS = 1000
PERM_BLOCK = 1000  # permutations scored per block: bounds the [block, n] label matrix
PERM_RTOL = 1e-9

Labels = tuple[np.ndarray, np.ndarray]


# ----------------------------------------------------------------------------------------------
# Labels and checks


def _labels(time: np.ndarray, censorship: np.ndarray) -> np.ndarray:
    """scikit-survival's structured labels from (time, censorship; 1 = censored)."""
    return Surv.from_arrays(event=np.asarray(censorship) < 0.5, time=np.asarray(time, dtype=np.float64))


def _as_labels(time: np.ndarray, censorship: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(time float64, event bool), checked to have one entry per patient."""
    time = np.asarray(time, dtype=np.float64).ravel()
    cens = np.asarray(censorship, dtype=np.float64).ravel()
    if time.shape != cens.shape:
        raise BenchError(f"{what}: {time.size} times but {cens.size} censorship values")
    if time.size == 0:
        raise BenchError(f"{what}: no patients")
    return time, cens < 0.5


def _admin_censor(time: np.ndarray, event: np.ndarray, cap: float) -> np.ndarray:
    """Validation labels with every ``T >= cap`` turned into (cap, censored)."""
    past = time >= cap
    return Surv.from_arrays(event=event & ~past, time=np.where(past, cap, time))


def _check_grid(times: np.ndarray, val_time: np.ndarray, cap: float) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64).ravel()
    if times.size == 0 or np.any(np.diff(times) <= 0):
        raise BenchError("evaluation times must be a non-empty, strictly increasing grid")
    top = min(float(val_time.max()), cap)
    if times[0] < val_time.min() or times[-1] >= top:
        raise BenchError(f"evaluation times [{times[0]:.4g}, {times[-1]:.4g}] leave the scorable range "
                         f"[{val_time.min():.4g}, {top:.4g}) of this fold (build them with evaluation_grid)")
    return times


# ----------------------------------------------------------------------------------------------
# Horizon and grid


def horizon(train_time: np.ndarray, train_censorship: np.ndarray, quantile: float = 0.8,
            of: str = "followup") -> float:
    """The pre-specified horizon ``tau`` of one fold, from its training labels only.

    Args:
        train_time, train_censorship: the training fold's labels.
        quantile: which quantile (numpy ``"linear"``, type 7), in ``(0, 1]``.
        of: ``"followup"`` (every observed time) or ``"events"`` (event times only).
    """
    time, event = _as_labels(train_time, train_censorship, "horizon")
    if not 0.0 < quantile <= 1.0:
        raise BenchError(f"horizon quantile {quantile} must lie in (0, 1]")
    if of not in ("followup", "events"):
        raise BenchError(f"unknown horizon basis '{of}'; choose followup or events")
    pool = time if of == "followup" else time[event]
    if pool.size == 0:
        raise BenchError("horizon: the training fold has no events")
    return float(np.quantile(pool, quantile))


def evaluation_grid(train: Sequence[Labels], val: Sequence[Labels], edges: Sequence[Sequence[float]], *,
                    n: int = 20, low: float = 0.1, quantile: float = 0.8) -> np.ndarray:
    """One fixed time grid for a cohort's AUC, Brier score and IBS (rule in the module docstring).

    Args:
        train: per fold, the training labels ``(time, censorship)``.
        val: per fold, the validation labels; only each fold's smallest and largest time are used.
        edges: per fold, the ``K + 1`` time-bin edges of its survival columns.
        n: number of grid points.
        low: the lower quantile of the pooled training event times.
        quantile: the horizon quantile of :func:`horizon` (the grid stops at the smallest fold horizon).
    """
    if not (len(train) == len(val) == len(edges)) or len(train) == 0:
        raise BenchError(f"evaluation_grid: {len(train)} training, {len(val)} validation and {len(edges)} "
                         "edge sets; need one of each per fold")
    if n < 2:
        raise BenchError("evaluation_grid: need at least 2 grid points")
    train_labels = [_as_labels(t, c, f"training fold {k}") for k, (t, c) in enumerate(train)]
    val_time = [_as_labels(t, c, f"validation fold {k}")[0] for k, (t, c) in enumerate(val)]
    events = np.concatenate([t[e] for t, e in train_labels])
    if events.size == 0:
        raise BenchError("evaluation_grid: no training events")
    first_edge = max(float(np.asarray(e, dtype=np.float64)[1]) for e in edges)
    lo = max(float(np.quantile(events, low)), first_edge, max(float(v.min()) for v in val_time))
    top = min(horizon(t, (~e).astype(np.float64), quantile) for t, e in train_labels)
    bound = min(min(float(v.max()), float(t.max())) for v, (t, _) in zip(val_time, train_labels, strict=True))
    if not lo < min(top, bound):
        raise BenchError(f"evaluation_grid: empty range: start {lo:.4g} (first inner edge {first_edge:.4g}) is "
                         f"not below the end {min(top, bound):.4g}")
    if top < bound:
        return np.linspace(lo, top, n)
    return np.linspace(lo, bound, n + 1)[:-1]  # half-open: scikit-survival needs t < the last validation time


# ----------------------------------------------------------------------------------------------
# Survival curves from binned outputs


def _curve(surv: np.ndarray, edges: Sequence[float], t: np.ndarray, rule: str) -> np.ndarray:
    """``S_i(t[i, m])`` of each patient's curve at its own row of times: ``t`` is ``[n, m]``."""
    surv = np.atleast_2d(np.asarray(surv, dtype=np.float64))
    edges = np.asarray(edges, dtype=np.float64)
    if surv.shape[1] != len(edges) - 1:
        raise BenchError(f"{surv.shape[1]} survival columns but {len(edges)} bin edges (need n_bins + 1)")
    if np.any(np.diff(edges) <= 0):
        raise BenchError("bin edges must be strictly increasing")
    if rule not in RULES:
        raise BenchError(f"unknown curve rule '{rule}'; choose one of {', '.join(RULES)}")
    knots = np.concatenate([np.ones((surv.shape[0], 1)), surv], axis=1)  # value at edges[0], ..., edges[K]
    if rule == "step":
        return np.take_along_axis(knots, np.searchsorted(edges[1:], t, side="right"), axis=1)
    k = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    frac = np.clip((t - edges[k]) / (edges[k + 1] - edges[k]), 0.0, 1.0)
    left = np.take_along_axis(knots, k, axis=1)
    right = np.take_along_axis(knots, k + 1, axis=1)
    return left + frac * (right - left)


def curve_at(surv: np.ndarray, edges: Sequence[float], times: np.ndarray, rule: str = "step") -> np.ndarray:
    """Survival probabilities ``[n, len(times)]`` of the binned curves at shared ``times``.

    Args:
        surv: ``[n, K]`` survival columns ``surv_0 .. surv_{K-1}``.
        edges: the ``K + 1`` bin edges.
        times: the evaluation times.
        rule: ``"step"`` (default) or ``"linear"`` (module docstring).
    """
    surv = np.atleast_2d(np.asarray(surv, dtype=np.float64))
    times = np.asarray(times, dtype=np.float64).ravel()
    return _curve(surv, edges, np.broadcast_to(times, (surv.shape[0], times.size)), rule)


def curve_at_own_time(surv: np.ndarray, edges: Sequence[float], time: np.ndarray, rule: str = "step") -> np.ndarray:
    """``S_i(T_i)``: each patient's curve at its own observed time, ``[n]`` (for D-calibration)."""
    time = np.asarray(time, dtype=np.float64).ravel()
    return _curve(surv, edges, time[:, None], rule)[:, 0]


# ----------------------------------------------------------------------------------------------
# Discrimination: Uno's C at tau, time-dependent AUC, Antolini's C


def uno_at(train_time: np.ndarray, train_censorship: np.ndarray, time: np.ndarray, censorship: np.ndarray,
           risk: np.ndarray, tau: float, tied_tol: float = TIED_TOL) -> float:
    """Uno's C of ``risk`` on a validation fold, truncated at ``tau``; NaN when undefined.

    Args:
        train_time, train_censorship: the training fold's labels (censoring distribution).
        time, censorship: the validation fold's labels.
        risk: the validation risks (higher = worse).
        tau: the truncation time, at most the largest training time (:func:`horizon`).
        tied_tol: risks this close count as tied.
    """
    t_time, _ = _as_labels(train_time, train_censorship, "training labels")
    v_time, v_event = _as_labels(time, censorship, "validation labels")
    risk = np.asarray(risk, dtype=np.float64).ravel()
    if risk.shape != v_time.shape:
        raise BenchError(f"{risk.size} risks for {v_time.size} validation patients")
    if tau > t_time.max():
        raise BenchError(f"tau {tau:.4g} lies past the last training time {t_time.max():.4g}, where the "
                         "censoring distribution is unknown")
    if not (v_event & (v_time < tau)).any():
        return float("nan")
    try:
        return float(concordance_index_ipcw(_labels(train_time, train_censorship), _labels(v_time, ~v_event),
                                            risk, tau=float(tau), tied_tol=tied_tol)[0])
    except NoComparablePairException:
        return float("nan")


def time_auc(train_time: np.ndarray, train_censorship: np.ndarray, time: np.ndarray, censorship: np.ndarray,
             risk: np.ndarray, times: np.ndarray, tied_tol: float = TIED_TOL) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC of the risk score at each grid time, and its KM-weighted mean.

    Args:
        train_time, train_censorship: the training fold's labels (censoring distribution).
        time, censorship: the validation fold's labels.
        risk: the validation risks (one score per patient, higher = worse).
        times: the grid (:func:`evaluation_grid`).
        tied_tol: risks this close count as tied.

    Returns:
        ``(auc [len(times)], mean)``; AUC is NaN at times before the first validation event.
    """
    t_time, _ = _as_labels(train_time, train_censorship, "training labels")
    v_time, v_event = _as_labels(time, censorship, "validation labels")
    risk = np.asarray(risk, dtype=np.float64).ravel()
    if risk.shape != v_time.shape:
        raise BenchError(f"{risk.size} risks for {v_time.size} validation patients")
    cap = float(t_time.max())
    times = _check_grid(times, v_time, cap)
    auc = np.full(times.size, np.nan)
    if not v_event.any():
        return auc, float("nan")
    has_case = times >= v_time[v_event].min()
    if not has_case.any():
        return auc, float("nan")
    scores, mean = cumulative_dynamic_auc(_labels(train_time, train_censorship), _admin_censor(v_time, v_event, cap),
                                          risk, times[has_case], tied_tol=tied_tol)
    auc[has_case] = scores
    return auc, float(mean)


def antolini_from_matrix(time: np.ndarray, censorship: np.ndarray, s_at: np.ndarray,
                         tied_tol: float = TIED_TOL) -> float:
    """Antolini's C from ``s_at[i, j] = S_j(T_i)`` (patient ``j``'s curve at ``i``'s time); NaN without pairs."""
    t, event = _as_labels(time, censorship, "labels")
    s_at = np.asarray(s_at, dtype=np.float64)
    if s_at.shape != (t.size, t.size):
        raise BenchError(f"s_at must be [{t.size}, {t.size}], got {list(s_at.shape)}")
    later = t[None, :] > t[:, None]
    same_time_censored = (t[None, :] == t[:, None]) & ~event[None, :]
    comparable = event[:, None] & (later | same_time_censored)
    own = np.diag(s_at)[:, None]
    diff = s_at - own  # > 0: j is predicted to survive longer at T_i, concordant
    score = np.where(np.abs(diff) <= tied_tol, 0.5, (diff > 0).astype(np.float64))
    n_pairs = comparable.sum()
    if n_pairs == 0:
        return float("nan")
    return float(score[comparable].sum() / n_pairs)


def antolini_cindex(time: np.ndarray, censorship: np.ndarray, surv: np.ndarray, edges: Sequence[float],
                    rule: str = "step", tied_tol: float = TIED_TOL) -> float:
    """Antolini's time-dependent C of binned survival curves under ``rule`` (module docstring).

    Args:
        time, censorship: the labels.
        surv: ``[n, K]`` survival columns.
        edges: the ``K + 1`` bin edges.
        rule: curve rule of :func:`curve_at`.
        tied_tol: survival probabilities this close count as tied.
    """
    s_at = curve_at(surv, edges, np.asarray(time, dtype=np.float64), rule).T  # [i, j] = S_j(T_i)
    return antolini_from_matrix(time, censorship, s_at, tied_tol)


# ----------------------------------------------------------------------------------------------
# Brier score, IBS and the Kaplan–Meier reference


def _km_at(time: np.ndarray, event: np.ndarray, times: np.ndarray, conf: bool = False) -> np.ndarray:
    """Kaplan–Meier at ``times`` (right-continuous); NaN past the last time unless it reached 0.

    With ``conf``: ``[3, m]`` rows estimate, lower and upper 95% log-log limits.
    """
    times = np.asarray(times, dtype=np.float64).ravel()
    if conf:
        uniq, prob, ci = kaplan_meier_estimator(event, time, conf_type="log-log")
        rows = np.vstack([prob, ci])
    else:
        uniq, prob = kaplan_meier_estimator(event, time)
        rows = prob[None, :]
    rows = np.concatenate([np.ones((rows.shape[0], 1)), rows], axis=1)  # value before the first time
    out = rows[:, np.searchsorted(uniq, times, side="right")]
    out[:, (times > uniq[-1]) & (prob[-1] > 0)] = np.nan
    return out if conf else out[0]


def km_reference(train_time: np.ndarray, train_censorship: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The training fold's Kaplan–Meier survival at ``times`` (``[len(times)]``): the reference model."""
    t, event = _as_labels(train_time, train_censorship, "training labels")
    return _km_at(t, event, times)


def brier_at(train_time: np.ndarray, train_censorship: np.ndarray, time: np.ndarray, censorship: np.ndarray,
             surv_at_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """IPCW Brier score at each grid time, ``[len(times)]`` (lower is better).

    Args:
        train_time, train_censorship: the training fold's labels (censoring distribution).
        time, censorship: the validation fold's labels.
        surv_at_times: ``[n, len(times)]`` predicted survival (:func:`curve_at`), or ``[len(times)]``
            for one curve shared by every patient (the KM reference).
        times: the grid.
    """
    t_time, _ = _as_labels(train_time, train_censorship, "training labels")
    v_time, v_event = _as_labels(time, censorship, "validation labels")
    cap = float(t_time.max())
    times = _check_grid(times, v_time, cap)
    est = np.asarray(surv_at_times, dtype=np.float64)
    est = np.broadcast_to(est, (v_time.size, times.size)) if est.ndim == 1 else est
    if est.shape != (v_time.size, times.size):
        raise BenchError(f"survival estimates {list(est.shape)} do not match [{v_time.size}, {times.size}]")
    return brier_score(_labels(train_time, train_censorship), _admin_censor(v_time, v_event, cap),
                       np.ascontiguousarray(est), times)[1]


def ibs(train_time: np.ndarray, train_censorship: np.ndarray, time: np.ndarray, censorship: np.ndarray,
        surv_at_times: np.ndarray, times: np.ndarray) -> float:
    """Integrated Brier score over the grid (scikit-survival's trapezoid rule); arguments as :func:`brier_at`."""
    t_time, _ = _as_labels(train_time, train_censorship, "training labels")
    v_time, v_event = _as_labels(time, censorship, "validation labels")
    cap = float(t_time.max())
    times = _check_grid(times, v_time, cap)
    if times.size < 2:
        raise BenchError("the integrated Brier score needs at least 2 grid times")
    est = np.asarray(surv_at_times, dtype=np.float64)
    est = np.broadcast_to(est, (v_time.size, times.size)) if est.ndim == 1 else est
    return float(integrated_brier_score(_labels(train_time, train_censorship), _admin_censor(v_time, v_event, cap),
                                        np.ascontiguousarray(est), times))


def ibs_skill(train_time: np.ndarray, train_censorship: np.ndarray, time: np.ndarray, censorship: np.ndarray,
              surv_at_times: np.ndarray, times: np.ndarray) -> tuple[float, float, float]:
    """``(IBS, IBS of the training Kaplan–Meier, skill = 1 - IBS / IBS_KM)`` on the same grid.

    Args:
        train_time, train_censorship: the training fold's labels.
        time, censorship: the validation fold's labels.
        surv_at_times: ``[n, len(times)]`` predicted survival.
        times: the grid.
    """
    model = ibs(train_time, train_censorship, time, censorship, surv_at_times, times)
    ref = ibs(train_time, train_censorship, time, censorship, km_reference(train_time, train_censorship, times),
              times)
    return model, ref, (1.0 - model / ref) if ref > 0 else float("nan")


def brier_horizons(train_time: np.ndarray, train_censorship: np.ndarray, time: np.ndarray, censorship: np.ndarray,
                   surv: np.ndarray, edges: Sequence[float], horizons: Sequence[float] = HORIZONS,
                   rule: str = "step") -> pd.DataFrame:
    """Brier score of the model and of the training KM at fixed horizons (default 1, 3, 5 years).

    Args:
        train_time, train_censorship: the training fold's labels.
        time, censorship: the validation fold's labels.
        surv: ``[n, K]`` survival columns; edges: the ``K + 1`` bin edges; rule: curve rule.
        horizons: the horizons in months.

    Returns:
        One row per horizon: ``horizon, brier, brier_km, skill``; NaN where the follow-up does not
        reach the horizon (module docstring).
    """
    t_time, _ = _as_labels(train_time, train_censorship, "training labels")
    v_time, _ = _as_labels(time, censorship, "validation labels")
    h = np.asarray(horizons, dtype=np.float64).ravel()
    ok = (h >= v_time.min()) & (h < min(float(v_time.max()), float(t_time.max())))
    brier, brier_km = np.full(h.size, np.nan), np.full(h.size, np.nan)
    # scored one horizon at a time: the grid check wants increasing times, the horizons need not be
    for i in np.flatnonzero(ok):
        at = h[i:i + 1]
        brier[i] = brier_at(train_time, train_censorship, time, censorship, curve_at(surv, edges, at, rule), at)[0]
        brier_km[i] = brier_at(train_time, train_censorship, time, censorship,
                               km_reference(train_time, train_censorship, at), at)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        skill = np.where(brier_km > 0, 1.0 - brier / brier_km, np.nan)
    return pd.DataFrame({"horizon": h, "brier": brier, "brier_km": brier_km, "skill": skill})


# ----------------------------------------------------------------------------------------------
# Calibration


def d_calibration(surv_at_own_time: np.ndarray, censorship: np.ndarray,
                  n_bins: int = 10) -> tuple[np.ndarray, float, float]:
    """D-calibration histogram, its chi-square and p (Haider et al. 2020; module docstring).

    Returns:
        ``(hist [n_bins] from low to high survival, chi2, p)``; ``hist`` sums to the number of patients.
    """
    s = np.asarray(surv_at_own_time, dtype=np.float64).ravel()
    cens = np.asarray(censorship, dtype=np.float64).ravel()
    if s.shape != cens.shape or s.size == 0:
        raise BenchError(f"d_calibration: {s.size} survival values for {cens.size} patients")
    if np.any((s < 0) | (s > 1)) or not np.all(np.isfinite(s)):
        raise BenchError("d_calibration: survival probabilities must lie in [0, 1]")
    if n_bins < 2:
        raise BenchError("d_calibration: need at least 2 bins")
    event = cens < 0.5
    width = 1.0 / n_bins
    bin_of = np.minimum(np.floor(s * n_bins).astype(np.int64), n_bins - 1)
    hist = np.bincount(bin_of[event], minlength=n_bins).astype(np.float64)
    sc = s[~event]
    lower = np.arange(n_bins) * width
    # P(U in bin j | U < s) = clip(s - lower_j, 0, width) / s; s = 0 is the limit: all mass in bin 0
    mass = np.clip(sc[:, None] - lower[None, :], 0.0, width)
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(sc[:, None] > 0, mass / sc[:, None], (np.arange(n_bins) == 0).astype(np.float64))
    hist += mass.sum(axis=0)
    expected = s.size / n_bins
    chi2 = float(np.sum((hist - expected) ** 2) / expected)
    return hist, chi2, float(stats.chi2.sf(chi2, n_bins - 1))


def calibration_by_decile(time: np.ndarray, censorship: np.ndarray, surv_at_horizon: np.ndarray, risk: np.ndarray,
                          horizon: float, *, groups: int = 10, train_risk: np.ndarray | None = None) -> pd.DataFrame:
    """Predicted mean ``S(horizon)`` against the Kaplan–Meier-observed ``S(horizon)`` per risk group.

    Args:
        time, censorship: the validation labels.
        surv_at_horizon: ``[n]`` predicted survival at ``horizon`` (:func:`curve_at`).
        risk: ``[n]`` validation risks (higher = worse).
        horizon: the time, in months.
        groups: number of risk groups (10 = deciles).
        train_risk: the training fold's risks; when given, the group cuts are its quantiles (fixed
            before the validation fold is seen), otherwise the validation risks' quantiles.

    Returns:
        One row per non-empty group, lowest risk first: ``group, n, events, risk_min, risk_max,
        predicted, observed, observed_lo, observed_hi``.
    """
    t, event = _as_labels(time, censorship, "validation labels")
    pred = np.asarray(surv_at_horizon, dtype=np.float64).ravel()
    risk = np.asarray(risk, dtype=np.float64).ravel()
    if not (pred.shape == risk.shape == t.shape):
        raise BenchError(f"calibration: {t.size} patients, {pred.size} predictions, {risk.size} risks")
    if groups < 1:
        raise BenchError("calibration: need at least 1 group")
    ref = risk if train_risk is None else np.asarray(train_risk, dtype=np.float64).ravel()
    cuts = np.quantile(ref, np.arange(1, groups) / groups)
    group = np.searchsorted(cuts, risk, side="right")
    rows = []
    for g in np.unique(group):  # at most `groups` Kaplan–Meier fits
        m = group == g
        est, lo, hi = _km_at(t[m], event[m], [horizon], conf=True)[:, 0]
        rows.append({"group": int(g), "n": int(m.sum()), "events": int(event[m].sum()),
                     "risk_min": float(risk[m].min()), "risk_max": float(risk[m].max()),
                     "predicted": float(pred[m].mean()), "observed": float(est),
                     "observed_lo": float(lo), "observed_hi": float(hi)})
    return pd.DataFrame(rows)


def plot_calibration(predicted: np.ndarray, observed: np.ndarray, *, observed_lo: np.ndarray | None = None,
                     observed_hi: np.ndarray | None = None, horizon: float | None = None, label: str = "model",
                     title: str | None = None, size: tuple[float, float] = (3.5, 3.6)) -> Figure:
    """Calibration figure: observed against predicted survival per risk group, with the diagonal.

    Args:
        predicted, observed: per group, the mean predicted and the Kaplan–Meier-observed ``S(horizon)``.
        observed_lo, observed_hi: optional 95% limits of the observed values (error bars).
        horizon: the horizon in months, named in the axis labels.
        label: the legend entry of the points (e.g. the method).
        title: optional title (e.g. method and cohort).
        size: figure size in inches (default: one journal column).

    Returns:
        A matplotlib Figure on an Agg canvas; the legend sits below the axes, outside the data.
    """
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    observed = np.asarray(observed, dtype=np.float64).ravel()
    if predicted.shape != observed.shape:
        raise BenchError(f"plot_calibration: {predicted.size} predicted but {observed.size} observed values")
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--", label="perfect calibration")
    yerr = None
    if observed_lo is not None and observed_hi is not None:
        lo = np.asarray(observed_lo, dtype=np.float64).ravel()
        hi = np.asarray(observed_hi, dtype=np.float64).ravel()
        yerr = np.vstack([np.clip(observed - lo, 0, None), np.clip(hi - observed, 0, None)])
    ax.errorbar(predicted, observed, yerr=yerr, fmt="o", ms=3.5, lw=0.8, capsize=2, color="tab:blue",
                label=f"{label} (risk groups)")
    at = f" at {horizon:g} months" if horizon is not None else ""
    ax.set_xlabel(f"Predicted survival{at}", fontsize=8)
    ax.set_ylabel(f"Kaplan–Meier observed survival{at}", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=8)
    fig.legend(loc="outside lower center", ncols=1, fontsize=7, frameon=False)
    return fig


# ----------------------------------------------------------------------------------------------
# Permutation log-rank test


def logrank_statistic(time: np.ndarray, censorship: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Two-group log-rank chi-square for each row of ``labels`` (``[P, n]`` or ``[n]``, 1 = group 1).

    Vectorised over rows: at-risk counts of group 1 at each distinct event time are suffix sums of
    the time-sorted labels. NaN where the variance is 0 (one group empty).
    """
    t, event = _as_labels(time, censorship, "labels")
    lab = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    if lab.shape[1] != t.size:
        raise BenchError(f"{lab.shape[1]} group labels for {t.size} patients")
    order = np.argsort(t, kind="stable")
    t, event, lab = t[order], event[order], lab[:, order]
    uniq, deaths = np.unique(t[event], return_counts=True)
    first = np.searchsorted(t, uniq, side="left")  # first patient at risk at each event time
    at_risk = (t.size - first).astype(np.float64)
    suffix = np.cumsum(lab[:, ::-1], axis=1)[:, ::-1]  # suffix[:, i] = labels of patients i..n-1
    n1 = suffix[:, first]
    observed = lab @ event.astype(np.float64)
    expected = n1 @ (deaths / at_risk)
    frac = n1 / at_risk
    with np.errstate(invalid="ignore", divide="ignore"):
        ties = np.where(at_risk > 1, (at_risk - deaths) / (at_risk - 1), 0.0)
        var = (frac * (1 - frac)) @ (deaths * ties)
        return np.where(var > 0, (observed - expected) ** 2 / var, np.nan)


def permutation_logrank(folds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, float]], n_perm: int = 10000,
                        seed: int = 0) -> tuple[float, float]:
    """Log-rank chi-square of the pooled risk groups and its within-fold permutation p.

    Args:
        folds: per fold, ``(val time, val censorship, val risk, threshold)`` where ``threshold``
            comes from that fold's training risks; high risk = ``risk >= threshold``.
        n_perm: number of permutations (at least 1000).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(statistic, p)``; both NaN when every patient falls in one group.
    """
    if n_perm < MIN_PERMUTATIONS:
        raise BenchError(f"permutation_logrank: {n_perm} permutations; use at least {MIN_PERMUTATIONS}")
    if len(folds) == 0:
        raise BenchError("permutation_logrank: no folds")
    times, cens, labels = [], [], []
    for k, (t, c, r, thr) in enumerate(folds):
        t, e = _as_labels(t, c, f"fold {k}")
        r = np.asarray(r, dtype=np.float64).ravel()
        if r.shape != t.shape:
            raise BenchError(f"fold {k}: {r.size} risks for {t.size} patients")
        times.append(t)
        cens.append((~e).astype(np.float64))
        labels.append((r >= thr).astype(np.float64))
    time, censorship = np.concatenate(times), np.concatenate(cens)
    observed = float(logrank_statistic(time, censorship, np.concatenate(labels))[0])
    if not np.isfinite(observed):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_perm, PERM_BLOCK):
        b = min(PERM_BLOCK, n_perm - start)
        perm = np.concatenate([rng.permuted(np.broadcast_to(lab, (b, lab.size)), axis=1) for lab in labels], axis=1)
        stat = logrank_statistic(time, censorship, perm)
        hits += int(np.sum(stat >= observed * (1 - PERM_RTOL)))
    return observed, (1 + hits) / (1 + n_perm)
