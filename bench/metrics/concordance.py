"""Metrics and fold-score protocols, computed from stored predictions.

* Harrell's C-index: scikit-survival ``concordance_index_censored`` with ``tied_tol=1e-8`` (the
  published code's call), on one fold's validation patients.
* Protocols turn a fold's per-epoch validation C-indices into one fold score:
  ``last`` (the fixed schedule's last epoch) and ``best-val`` (the epoch with the highest
  validation C-index; the official CCL, CMTA and MOTCat code reports it, which selects the epoch
  on the very fold it reports). Ties: ``earliest`` (strict >) or ``latest`` (>=, as CCL).
* Summaries: mean and population standard deviation (ddof 0) over folds, as the published code.
  With several seeds: the mean over seeds of the fold means, the fold std averaged over seeds, and
  separately the spread over seeds (population std of the per-seed fold means).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sksurv.metrics import concordance_index_censored

from bench._core.errors import BenchError

PROTOCOLS = ("best-val", "last")


def cindex(time: np.ndarray, censorship: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C of ``risk`` (higher = worse) against (time, censorship; 1 = censored)."""
    event = np.asarray(censorship) < 0.5
    if not event.any():
        return float("nan")
    try:
        return float(concordance_index_censored(event, np.asarray(time, dtype=float),
                                                np.asarray(risk, dtype=float), tied_tol=1e-8)[0])
    except ValueError:  # no comparable pairs
        return float("nan")


def epoch_cindex(predictions: pd.DataFrame, split: str = "val") -> pd.Series:
    """C-index of every epoch's ``split`` predictions, indexed by epoch."""
    rows = predictions[predictions["split"] == split]
    return rows.groupby("epoch", sort=True).apply(
        lambda g: cindex(g["survival_months"].to_numpy(), g["censorship"].to_numpy(), g["risk"].to_numpy()),
        include_groups=False,
    )


def select_epoch(per_epoch: pd.Series, protocol: str, tie: str = "earliest") -> int:
    """The epoch a protocol reports from a series of validation C-indices (indexed by epoch)."""
    if per_epoch.empty:
        raise BenchError("no validation predictions to score")
    if protocol == "last":
        return int(per_epoch.index.max())
    if protocol != "best-val":
        raise BenchError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
    values = per_epoch.fillna(-np.inf)
    best = values.max()
    hits = values.index[values == best]
    return int(hits.max() if tie == "latest" else hits.min())


def fold_score(predictions: pd.DataFrame, protocol: str, tie: str = "earliest") -> tuple[int, float]:
    """(selected epoch, its validation C-index) of one fold's stored predictions."""
    per_epoch = epoch_cindex(predictions)
    epoch = select_epoch(per_epoch, protocol, tie)
    return epoch, float(per_epoch.loc[epoch])


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (ddof 0) over folds, as the published code reports."""
    arr = np.asarray(values, dtype=float)
    return float(np.mean(arr)), float(np.std(arr, ddof=0))


def seed_summary(per_seed: Sequence[Sequence[float]]) -> tuple[float, float, float | None]:
    """Summary over seeds of per-fold values: (mean over seeds of the fold means, fold std averaged
    over seeds, population std over seeds of the fold means — None with a single seed)."""
    if not per_seed:
        raise BenchError("no seeds to summarise")
    stats = [mean_std(v) for v in per_seed]
    means = np.array([m for m, _ in stats])
    stds = np.array([s for _, s in stats])
    spread = float(np.std(means, ddof=0)) if len(means) > 1 else None
    return float(np.mean(means)), float(np.mean(stds)), spread
