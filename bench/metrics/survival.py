"""Survival metrics beyond Harrell's C, and risk-group splits — thin wrappers over the libraries.

Conventions (documented in docs/tables-and-figures.md):

* **Censoring distribution** (Uno's C, Brier score, time-dependent AUC): scikit-survival fits a
  Kaplan–Meier estimate of the censoring distribution on the *training* labels passed in. Callers
  pass the fold's training patients (see :mod:`bench.report.evaluation` for where they come from).
* **Uno's C**: ``concordance_index_ipcw`` truncated at ``tau`` = the largest training time, so that
  the censoring survival is positive wherever a weight is needed (validation patients at or beyond
  ``tau`` get weight 0).
* **Survival curves from 4 bins**: ``S_k`` (column ``surv_k``) is the probability of surviving
  through time bin ``k``, i.e. past its upper edge ``edges[k+1]``. The curve is the right-continuous
  step function that is 1 before the first inner edge and drops to ``S_k`` at ``edges[k+1]``:
  ``S(t) = [1, S_0, ..., S_{K-1}][searchsorted(edges[1:], t, side="right")]``. It is exact at the
  edges and an upper bound inside a bin (the model says nothing finer).
* **Evaluation times** for the integrated Brier score and the AUC: the 10th, 15th, ..., 90th
  percentiles of the validation fold's event times (unique), which lie inside its follow-up as
  scikit-survival requires. Validation patients observed beyond the largest training time are left
  out of these two metrics (the censoring estimate is undefined there).
* **Risk groups**: a patient is high-risk when ``risk >= threshold`` (the published convention).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats
from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc, integrated_brier_score
from sksurv.util import Surv

from bench.metrics.concordance import cindex

TIME_PERCENTILES = tuple(range(10, 91, 5))


def surv_labels(time: np.ndarray, censorship: np.ndarray) -> np.ndarray:
    """scikit-survival's structured label array from (time, censorship; 1 = censored)."""
    return Surv.from_arrays(event=np.asarray(censorship) < 0.5, time=np.asarray(time, dtype=float))


def uno_cindex(train_time: np.ndarray, train_censorship: np.ndarray, time: np.ndarray, censorship: np.ndarray,
               risk: np.ndarray) -> float:
    """Uno's IPCW C-index of ``risk`` on a validation fold, censoring fitted on the training labels."""
    event = np.asarray(censorship) < 0.5
    tau = float(np.max(train_time))
    if not (event & (np.asarray(time) < tau)).any():
        return float("nan")
    try:
        return float(concordance_index_ipcw(surv_labels(train_time, train_censorship), surv_labels(time, censorship),
                                            np.asarray(risk, dtype=float), tau=tau, tied_tol=1e-8)[0])
    except ValueError:  # no comparable pairs below tau
        return float("nan")


def curve_at(surv: np.ndarray, edges: Sequence[float], times: np.ndarray) -> np.ndarray:
    """Survival probabilities ``[n, len(times)]`` of the step-function rule (module docstring)."""
    surv = np.atleast_2d(np.asarray(surv, dtype=float))
    edges = np.asarray(edges, dtype=float)
    if surv.shape[1] != len(edges) - 1:
        raise ValueError(f"{surv.shape[1]} survival columns but {len(edges)} bin edges (need n_bins + 1)")
    padded = np.concatenate([np.ones((surv.shape[0], 1)), surv], axis=1)
    return padded[:, np.searchsorted(edges[1:], np.asarray(times, dtype=float), side="right")]


def evaluation_times(time: np.ndarray, censorship: np.ndarray) -> np.ndarray:
    """Percentiles 10, 15, ..., 90 of the event times, kept strictly inside the follow-up range."""
    time = np.asarray(time, dtype=float)
    events = time[np.asarray(censorship) < 0.5]
    if len(events) == 0:
        return np.empty(0)
    grid = np.unique(np.percentile(events, TIME_PERCENTILES))
    return grid[(grid >= time.min()) & (grid < time.max())]


def _ipcw_subset(train_time: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Validation patients inside the training follow-up (where the censoring estimate is defined)."""
    return np.asarray(time, dtype=float) < float(np.max(train_time))


def integrated_brier(train_time: np.ndarray, train_censorship: np.ndarray, time: np.ndarray, censorship: np.ndarray,
                     surv: np.ndarray, edges: Sequence[float]) -> float:
    """Integrated Brier score of the step survival curves (lower is better); NaN if undefined."""
    keep = _ipcw_subset(train_time, time)
    time, censorship, surv = np.asarray(time)[keep], np.asarray(censorship)[keep], np.asarray(surv)[keep]
    times = evaluation_times(time, censorship)
    if len(times) < 2:
        return float("nan")
    try:
        return float(integrated_brier_score(surv_labels(train_time, train_censorship), surv_labels(time, censorship),
                                            curve_at(surv, edges, times), times))
    except ValueError:
        return float("nan")


def mean_auc(train_time: np.ndarray, train_censorship: np.ndarray, time: np.ndarray, censorship: np.ndarray,
             surv: np.ndarray, edges: Sequence[float]) -> float:
    """scikit-survival's ``mean_auc`` of the cumulative/dynamic AUC, scoring ``1 - S(t)`` at each time."""
    keep = _ipcw_subset(train_time, time)
    time, censorship, surv = np.asarray(time)[keep], np.asarray(censorship)[keep], np.asarray(surv)[keep]
    times = evaluation_times(time, censorship)
    if len(times) < 1:
        return float("nan")
    try:
        _, mean = cumulative_dynamic_auc(surv_labels(train_time, train_censorship), surv_labels(time, censorship),
                                         1.0 - curve_at(surv, edges, times), times, tied_tol=1e-8)
    except ValueError:
        return float("nan")
    return float(mean)


def bootstrap_cindex(time: np.ndarray, censorship: np.ndarray, risk: np.ndarray, n_resamples: int = 1000,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of Harrell's C, resampling patients (scipy.stats.bootstrap)."""
    data = (np.asarray(time, dtype=float), np.asarray(censorship, dtype=float), np.asarray(risk, dtype=float))
    res = stats.bootstrap(data, cindex, paired=True, vectorized=False, n_resamples=n_resamples,
                          confidence_level=0.95, method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def high_risk(risk: np.ndarray, threshold: float) -> np.ndarray:
    """High-risk membership: ``risk >= threshold`` (the published median-split convention)."""
    return np.asarray(risk, dtype=float) >= threshold


def logrank_p(time: np.ndarray, censorship: np.ndarray, high: np.ndarray) -> float:
    """Log-rank p-value (two-sided) between the high- and low-risk groups (``scipy.stats.logrank``; the same
    test as lifelines' ``logrank_test``, checked equal in the tests, about 25x faster, which Table II's
    hundreds of tests need)."""
    time, event, high = np.asarray(time, dtype=float), np.asarray(censorship) < 0.5, np.asarray(high, dtype=bool)
    if high.all() or not high.any():
        return float("nan")
    groups = [stats.CensoredData(uncensored=time[g & event], right=time[g & ~event]) for g in (high, ~high)]
    return float(stats.logrank(*groups).pvalue)


def logrank_excess(time: np.ndarray, censorship: np.ndarray, high: np.ndarray) -> float:
    """Observed minus expected events of the high-risk group (the log-rank numerator): > 0 when the
    high-risk group dies sooner than the pooled hazard predicts, < 0 when the separation is reversed.

    ``E = sum_t d_t n_high,t / n_t`` over the distinct event times, with everyone with ``T >= t`` at risk.
    """
    time, event, high = np.asarray(time, dtype=float), np.asarray(censorship) < 0.5, np.asarray(high, dtype=bool)
    times = np.unique(time[event])
    at_risk = time[None, :] >= times[:, None]  # [event times, patients]
    died = at_risk & event[None, :] & (time[None, :] == times[:, None])
    n, n_high, d = at_risk.sum(1), (at_risk & high[None, :]).sum(1), died.sum(1)
    return float((died & high[None, :]).sum() - np.sum(d * n_high / n))


def risk_group_ttest(time: np.ndarray, censorship: np.ndarray, high: np.ndarray,
                     on: str = "uncensored") -> tuple[float, float, int, int]:
    """Welch's t-test of observed survival months, high- vs low-risk group: (t, p, n_high, n_low).

    ``on="uncensored"`` compares patients with an observed event only (a censored time is just a lower
    bound of the survival time); ``on="all"`` compares every patient's observed time.
    """
    if on not in ("uncensored", "all"):
        raise ValueError(f"unknown t-test population '{on}'")
    time, high = np.asarray(time, dtype=float), np.asarray(high, dtype=bool)
    keep = np.asarray(censorship) < 0.5 if on == "uncensored" else np.ones(len(time), dtype=bool)
    a, b = time[keep & high], time[keep & ~high]
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan"), len(a), len(b)
    res = stats.ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue), len(a), len(b)
