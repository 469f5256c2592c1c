"""Metrics and fold-score protocols, computed from stored predictions.

* Harrell's C-index: scikit-survival ``concordance_index_censored`` with ``tied_tol=1e-8`` (the
  published code's call), on one fold's validation patients.
* Protocols turn a fold's per-epoch validation C-indices into one fold score:
  ``last`` (the fixed schedule's last epoch) and ``best-val`` (the epoch with the highest
  validation C-index; the official CCL, CMTA and MOTCat code reports it, which selects the epoch
  on the very fold it reports). Ties: ``earliest`` (strict >) or ``latest`` (>=, as CCL).
  ``inner``: the epoch with the highest C-index on the fold's inner split (training patients held out
  of training, stored as ``split = inner`` rows by runs with ``selection=inner``), scored on the
  validation fold: a selection that never sees the reported patients (same tie rule).
* Summaries: mean and population standard deviation (ddof 0) over folds, as the published code.
  With several seeds each fold is first averaged over the seeds; the mean and std are then taken over
  those per-fold averages, and the spread over seeds (population std of the per-seed fold means) is
  reported separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sksurv.metrics import concordance_index_censored

from bench._core.errors import BenchError

PROTOCOLS = ("best-val", "last", "inner")


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


def _comparable_pairs(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) index arrays of Harrell's comparable pairs, as scikit-survival forms them: ``i`` had an event
    and ``T_j > T_i``, or ``T_j == T_i`` and ``j`` is censored."""
    later = time[None, :] > time[:, None]
    tied_censored = (time[None, :] == time[:, None]) & ~event[None, :]
    return np.nonzero(event[:, None] & (later | tied_censored))


def cindex_rows(time: np.ndarray, censorship: np.ndarray, risks: np.ndarray, tied_tol: float = 1e-8) -> np.ndarray:
    """Harrell's C of every row of ``risks`` ([E, n], one risk vector per row) against one set of labels.

    Equal to :func:`cindex` row by row, bit for bit: scikit-survival accumulates ``n_concordant + n_tied / 2``
    and the number of comparable pairs, counts that float64 holds exactly, and divides once; this counts
    the same pairs at once for all rows. A row with a non-finite risk is NaN (scikit-survival refuses
    it), as is every row when there is no event, fewer than two patients or no comparable pair.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(censorship) < 0.5
    risks = np.atleast_2d(np.asarray(risks, dtype=float))
    out = np.full(len(risks), np.nan)
    if len(time) < 2 or not event.any() or not np.isfinite(time).all():
        return out
    i, j = _comparable_pairs(time, event)
    if len(i) == 0:
        return out
    finite = np.isfinite(risks).all(axis=1)
    rows = np.flatnonzero(finite)
    step = max(1, 4_000_000 // len(i))  # bound the [rows, pairs] temporaries
    for start in range(0, len(rows), step):
        r = risks[rows[start:start + step]]
        est, est_i = r[:, j], r[:, i]
        ties = np.absolute(est - est_i) <= tied_tol
        concordant = ((est < est_i) & ~ties).sum(axis=1)
        out[rows[start:start + step]] = (concordant + 0.5 * ties.sum(axis=1)) / float(len(i))
    return out


def epoch_cindex(predictions: pd.DataFrame, split: str = "val") -> pd.Series:
    """C-index of every epoch's ``split`` predictions, indexed by epoch.

    Epochs that hold the same patients with the same labels (every stored run) are scored together by
    :func:`cindex_rows`; anything else falls back to :func:`cindex` per epoch. Both give the same numbers.
    """
    rows = predictions[predictions["split"] == split]
    if rows.empty:
        return pd.Series(dtype=float, index=pd.Index([], name="epoch"))
    epoch = rows["epoch"].to_numpy()
    if (np.diff(epoch) < 0).any():  # the store writes epoch by epoch; anything else is sorted first
        rows = rows.sort_values("epoch", kind="stable")
        epoch = rows["epoch"].to_numpy()
    epochs, starts = np.unique(epoch, return_index=True)
    n = len(rows) // len(epochs)
    if "case_id" in rows and n * len(epochs) == len(rows) and (starts == np.arange(len(epochs)) * n).all():
        shape = (len(epochs), n)
        case = rows["case_id"].to_numpy().reshape(shape)
        idx = np.argsort(case, axis=1, kind="stable")  # align the epochs patient by patient
        case, time, cens, risk = (np.take_along_axis(rows[c].to_numpy().reshape(shape), idx, axis=1)
                                  for c in ("case_id", "survival_months", "censorship", "risk"))
        time, cens, risk = time.astype(float), cens.astype(float), risk.astype(float)
        if ((case == case[0]).all() and np.array_equal(time, np.broadcast_to(time[0], time.shape), equal_nan=True)
                and np.array_equal(cens, np.broadcast_to(cens[0], cens.shape), equal_nan=True)):
            return pd.Series(cindex_rows(time[0], cens[0], risk), index=pd.Index(epochs, name="epoch"))
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
    if protocol not in ("best-val", "inner"):
        raise BenchError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
    values = per_epoch.fillna(-np.inf)
    best = values.max()
    hits = values.index[values == best]
    return int(hits.max() if tie == "latest" else hits.min())


def fold_score(predictions: pd.DataFrame, protocol: str, tie: str = "earliest") -> tuple[int, float]:
    """(selected epoch, its validation C-index) of one fold's stored predictions."""
    per_epoch = epoch_cindex(predictions)
    epoch = select_epoch(inner_cindex(predictions) if protocol == "inner" else per_epoch, protocol, tie)
    return epoch, float(per_epoch.loc[epoch])


def inner_cindex(predictions: pd.DataFrame) -> pd.Series:
    """Per-epoch C-index of the inner split, or an error saying which runs have one."""
    has_inner = (predictions["split"] == "inner").any()
    per_epoch = epoch_cindex(predictions, "inner") if has_inner else pd.Series(dtype=float)
    if per_epoch.empty:
        raise BenchError("protocol inner needs inner-split predictions: runs made with --set selection=inner "
                         "(after `bench data inner-splits --cohort <cohort>`)")
    return per_epoch


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (ddof 0) over folds, as the published code reports."""
    arr = np.asarray(values, dtype=float)
    return float(np.mean(arr)), float(np.std(arr, ddof=0))


def seed_summary(per_seed: Sequence[Sequence[float]]) -> tuple[float, float, float | None]:
    """Summary over seeds of per-fold values (one list per seed, folds in the same order): (mean over folds of
    the seed-averaged fold values, their population std over folds, population std over seeds of the
    per-seed fold means — None with a single seed)."""
    if not per_seed:
        raise BenchError("no seeds to summarise")
    lengths = {len(v) for v in per_seed}
    if len(lengths) != 1:
        raise BenchError(f"seeds with different numbers of folds ({sorted(lengths)}) cannot be averaged fold by fold")
    values = np.asarray(per_seed, dtype=float)  # [seeds, folds]
    mean, std = mean_std(values.mean(axis=0))
    spread = float(np.std(values.mean(axis=1), ddof=0)) if len(values) > 1 else None
    return mean, std, spread
