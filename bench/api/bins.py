"""Discrete time bins: the edges fitted on a fold's training labels and each patient's bin.

Part of the method API because a method may fit label-derived quantities on the training fold
(CCL's r patient groups use the same binning); the data layer uses the same two functions for the
labels every method trains on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench._core.errors import BenchError


def fit_time_bins(time: np.ndarray, censorship: np.ndarray, n_bins: int = 4, eps: float = 1e-6) -> np.ndarray:
    """Bin edges: quantiles of the uncensored times, outer edges widened to all given times ± eps.

    This is the MCAT-family convention (pandas ``qcut`` edges on uncensored patients, then the first
    edge replaced by min − eps and the last by max + eps over all patients).
    """
    uncensored = time[censorship < 1]
    if len(uncensored) < n_bins:
        raise BenchError(
            f"only {len(uncensored)} uncensored patients to fit {n_bins} time bins; use fewer bins (--set n_bins=2)"
        )
    edges = pd.Series(uncensored).quantile(np.linspace(0, 1, n_bins + 1)).to_numpy(dtype=np.float64)
    edges[0] = time.min() - eps
    edges[-1] = time.max() + eps
    if np.any(np.diff(edges) <= 0):
        raise BenchError(f"time-bin edges are not increasing ({edges.round(3).tolist()}); too many tied times")
    return edges


def assign_bins(time: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Left-closed, right-open bins of ``edges``; times outside the outer edges go to the end bins."""
    return np.searchsorted(edges[1:-1], time, side="right").astype(np.int64)
