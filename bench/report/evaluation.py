"""From the prediction store to scores: the numbers every table and figure shows.

Stored runs are grouped into *cells* — one method, one variant, one cohort — each holding its
seeds, each seed its folds. A run's variant is read from its manifest's ``overrides`` (keys
shortened to the part after the last dot, values canonicalised), never from folder names. A
protocol (``best-val``, ``last`` or ``inner``, :mod:`bench.metrics.concordance`) picks one epoch per
fold; every metric of the fold is computed on that epoch's validation predictions.

A seed is *complete* when it holds every fold of the cohort's splits. A cell's summary uses its
complete seeds; a cell with none is *partial* and is summarised over the folds of its fullest seed
(tables mark it and leave it out of rankings and the Overall mean).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._core.config import SPLIT_KINDS, Settings, parse_sets
from bench._core.errors import BenchError
from bench.metrics import horizon as mh
from bench.metrics import survival as sm
from bench.metrics.concordance import (
    PROTOCOLS,
    cindex,
    epoch_cindex,
    inner_cindex,
    mean_std,
    seed_summary,
    select_epoch,
)
from bench.store.predictions import StoredRun, store_layout

Overrides = tuple[tuple[str, str], ...]
DEFAULT: Overrides = ()
DEFAULT_FOLDS = 5
#: Uno's C is truncated at this quantile of the training fold's follow-up; the grid of AUC and IBS ends there too.
UNO_QUANTILE = 0.8
#: Fixed Brier horizons in months (1, 3 and 5 years): metrics brier_12, brier_36, brier_60.
BRIER_MONTHS = (12, 36, 60)
#: Curve rule of Antolini's C, D-calibration and the fixed-horizon Brier scores (bench.metrics.horizon.curve_at).
CURVE_RULE = "step"
DCAL_BINS = 10


@dataclass(frozen=True)
class MetricInfo:
    """A metric tables can show."""

    name: str
    label: str
    higher_is_better: bool
    pooled: bool  # computed on the pooled out-of-fold predictions rather than per fold
    p_value: bool = False  # a test's p (shown as 1.2e-3, not ranked, no Overall mean)


METRICS: dict[str, MetricInfo] = {
    "cindex": MetricInfo("cindex", "Harrell's C-index", True, False),
    "uno": MetricInfo("uno", "Uno's C-index (IPCW, truncated at the training fold's horizon)", True, False),
    "ibs": MetricInfo("ibs", "integrated Brier score on the cohort's fixed grid (lower is better)", False, False),
    "ibs_km": MetricInfo("ibs_km", "integrated Brier score of the training-fold Kaplan–Meier reference", False, False),
    "ibs_skill": MetricInfo("ibs_skill", "IBS skill score 1 − IBS / IBS_KM (> 0 beats Kaplan–Meier)", True, False),
    "auc": MetricInfo("auc", "mean time-dependent AUC of the risk on the cohort's fixed grid", True, False),
    "pooled": MetricInfo("pooled", "pooled out-of-fold Harrell's C with bootstrap 95% CI", True, True),
    "antolini": MetricInfo("antolini", "Antolini's time-dependent C of the stored survival curves (risk from the "
                           "curve: S_i(T_i) by the step rule)", True, False),
    "dcal_p": MetricInfo("dcal_p", "D-calibration p of the pooled out-of-fold histogram (10 bins; higher = no "
                         "evidence of miscalibration)", True, True, p_value=True),
    **{f"brier_{h}": MetricInfo(f"brier_{h}", f"Brier score at {h} months (lower is better)", False, False)
       for h in BRIER_MONTHS},
}


def check_metric(name: str) -> MetricInfo:
    """The metric called ``name``, or an error listing the valid ones."""
    if name not in METRICS:
        raise BenchError(f"unknown metric '{name}'; choose one of {', '.join(METRICS)}")
    return METRICS[name]


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        raise BenchError(f"unknown protocol '{name}'; choose one of {', '.join(PROTOCOLS)}")
    return name


# ----------------------------------------------------------------------------------------------
# Variants


def norm_value(v: Any) -> str:
    """Canonical text of an override value: ``true``/``false``, ``9`` for 9 and 9.0, ``0.05``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        f = float(v)
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)
    return str(v)


def with_inner(overrides: Overrides) -> Overrides:
    """The variant's ``selection=inner`` twin: the runs protocol ``inner`` reads."""
    return tuple(sorted({**dict(overrides), "selection": "inner"}.items()))


def normalize_overrides(overrides: Mapping[str, Any]) -> Overrides:
    """Manifest overrides (``{"model.k": 9}``) as sorted (short key, canonical value) pairs."""
    return tuple(sorted((k.split(".")[-1], norm_value(v)) for k, v in overrides.items()))


def parse_variant(text: str | None) -> Overrides:
    """``default`` -> (); ``cgm=false,mkd=false`` -> the normalised pairs."""
    if text is None or text.strip() in ("", "default"):
        return DEFAULT
    return normalize_overrides(parse_sets([text]))


def variant_label(overrides: Overrides) -> str:
    """``default`` or ``key=value`` pairs joined by commas."""
    return ",".join(f"{k}={v}" for k, v in overrides) if overrides else "default"


# ----------------------------------------------------------------------------------------------
# Provenance


@dataclass(frozen=True)
class Provenance:
    """Which data a run saw, as tables report it."""

    genomics_build: str
    pathology: str  # real | synthetic | none | unknown
    imported: bool
    store: str = "none"  # the feature store's name (none: the run read no pathology)


def provenance(manifest: Mapping[str, Any]) -> Provenance:
    data = manifest.get("data") or {}
    patho = data.get("pathology")
    if patho is None:
        kind, store = "none", "none"
    else:
        kind = patho.get("kind") or ("synthetic" if patho.get("synthetic") else "real")
        if patho.get("synthetic"):
            kind = "synthetic"
        # runs stored before manifests named the store: the store file's name
        store = (data.get("store") or {}).get("name") or Path(str(patho.get("file") or "unknown")).stem
    return Provenance(str(data.get("genomics_build") or "unknown"), str(kind), "imported" in manifest, str(store))


# ----------------------------------------------------------------------------------------------
# Axes: the split family and the feature store


#: Axes a report can be restricted to (``--splits site``, ``--features NAME``): variant keys every run may carry.
AXES = ("splits", "features")


def view_axes(splits: str | None = None, features: str | None = None) -> dict[str, str]:
    """The axis values a report is restricted to, defaults left out: ``splits=fixed`` and the default synthetic
    store (``features`` None, ``synthetic`` or ``default``) are what the unrestricted store shows."""
    axes = {}
    if splits is not None and splits != "fixed":
        if splits not in SPLIT_KINDS:
            raise BenchError(f"bad --splits '{splits}': choose one of {', '.join(SPLIT_KINDS)}")
        axes["splits"] = splits
    if features is not None and features.strip() not in ("", "synthetic", "default", "auto"):
        axes["features"] = features.strip()
    return axes


def axis_view(overrides: Overrides, manifest: Mapping[str, Any], axes: Mapping[str, str]) -> Overrides | None:
    """A run's variant as a report restricted to ``axes`` sees it: the axis pairs removed, or None when the run
    is on another split family or store (left out). A run that read no pathology belongs to every store."""
    pairs = dict(overrides)
    for axis, want in axes.items():
        if axis == "features" and (manifest.get("data") or {}).get("pathology") is None:
            continue
        if pairs.pop(axis, None) != want:
            return None
    return tuple(sorted(pairs.items()))


def axis_options(axes: Mapping[str, str]) -> str:
    """The ``bench run`` options that make runs of a restricted view (`` --splits site --features uni``)."""
    return "".join(f" --{axis} {value}" for axis, value in axes.items())


# ----------------------------------------------------------------------------------------------
# Folds, seeds, cells


@dataclass(frozen=True)
class FoldSafe:
    """One fold's fold-safe risk groups: high risk = validation ``risk >= threshold`` (the training median)."""

    val: pd.DataFrame
    threshold: float
    epoch: int
    last_epoch: bool  # the selected epoch has no training rows: the latest epoch that has them was used


@dataclass
class FoldEval:
    """One fold under one protocol: its predictions, per-epoch val C-index and the selected epoch."""

    run: StoredRun
    predictions: pd.DataFrame
    per_epoch: pd.Series
    epoch: int
    cindex: float

    @property
    def fold(self) -> int:
        return self.run.fold

    def val(self, epoch: int | None = None) -> pd.DataFrame:
        """Validation rows at ``epoch`` (default: the selected one)."""
        p = self.predictions
        return p[(p["split"] == "val") & (p["epoch"] == (self.epoch if epoch is None else epoch))]

    @property
    def train(self) -> pd.DataFrame | None:
        """Training-fold rows of the latest epoch that has them (the last epoch), or None."""
        epoch = self.train_epoch
        if epoch is None:
            return None
        rows = self.predictions
        return rows[(rows["split"] == "train") & (rows["epoch"] == epoch)]

    @property
    def train_epoch(self) -> int | None:
        """The latest epoch with training-fold rows, or None (imported predictions without them)."""
        epochs = self.train_epochs
        return max(epochs) if epochs else None

    @property
    def train_epochs(self) -> list[int]:
        """The epochs with stored training-fold rows: every epoch a protocol can select in runs made since
        survbench stores them so, the last epoch only in older runs."""
        p = self.predictions
        return sorted(int(e) for e in p.loc[p["split"] == "train", "epoch"].unique())

    def fold_safe(self) -> FoldSafe | None:
        """The fold-safe risk split of this fold: validation rows of the selected epoch and the median risk
        of the training rows of the same epoch; where that epoch has no training rows (runs stored before
        they were kept at every selectable epoch), both from the latest epoch that has them, marked
        ``last_epoch``; None without training rows."""
        if not self.train_epochs:
            return None
        epoch = self.epoch if self.epoch in self.train_epochs else max(self.train_epochs)
        p = self.predictions
        train = p[(p["split"] == "train") & (p["epoch"] == epoch)]
        return FoldSafe(self.val(epoch), float(np.median(train["risk"])), epoch, epoch != self.epoch)


    @property
    def edges(self) -> np.ndarray | None:
        e = (self.run.manifest.get("data") or {}).get("bin_edges")
        return None if e is None else np.asarray(e, dtype=float)

    def surv(self, rows: pd.DataFrame) -> np.ndarray | None:
        """The ``surv_k`` columns of ``rows`` in bin order, or None if not stored."""
        cols = sorted((c for c in rows.columns if c.startswith("surv_")), key=lambda c: int(c.split("_")[1]))
        if not cols or rows[cols].isna().any().any():
            return None
        return rows[cols].to_numpy(dtype=float)

    def curves(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
        """``(surv [n, K], edges [K + 1])`` of ``rows``' stored survival curves, or None where either is missing
        or they do not fit together."""
        surv, edges = self.surv(rows), self.edges
        if surv is None or edges is None or len(edges) != surv.shape[1] + 1:
            return None
        return surv, edges


def _labels(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return rows["survival_months"].to_numpy(dtype=float), rows["censorship"].to_numpy(dtype=float)


@dataclass
class SeedRuns:
    """The folds of one seed of a cell."""

    seed: int
    folds: dict[int, FoldEval]
    expected: int
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def missing(self) -> list[int]:
        return [k for k in range(self.expected) if k not in self.folds]

    @property
    def complete(self) -> bool:
        return not self.missing

    def ordered(self) -> list[FoldEval]:
        return [self.folds[k] for k in sorted(self.folds)]

    def training_labels(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Labels of fold ``k``'s training patients: its stored train rows; failing that (imported
        predictions), the other folds' validation patients, which under k-fold CV are the same set."""
        f = self.folds[k]
        if f.train is not None:
            return _labels(f.train.drop_duplicates("case_id"))
        others = [g.val() for j, g in self.folds.items() if j != k]
        if not others:
            return None
        return _labels(pd.concat(others).drop_duplicates("case_id"))

    def pooled(self) -> pd.DataFrame:
        """Out-of-fold validation predictions: each fold's rows at its selected epoch."""
        return pd.concat([f.val() for f in self.ordered()], ignore_index=True)

    def fold_metric(self, k: int, metric: str) -> float:
        """One fold's value of a per-fold metric (NaN where it cannot be computed). ``dcal_p`` here is the fold's
        own D-calibration p (tables show the pooled one, :meth:`dcal_pooled`)."""
        f = self.folds[k]
        if metric == "cindex":
            return f.cindex
        val = f.val()
        time, cens = _labels(val)
        if metric in ("antolini", "dcal_p"):  # no training labels needed
            curves = f.curves(val)
            if curves is None:
                return float("nan")
            try:
                if metric == "antolini":
                    return mh.antolini_cindex(time, cens, *curves, rule=CURVE_RULE)
                return mh.d_calibration(mh.curve_at_own_time(*curves, time, CURVE_RULE), cens, DCAL_BINS)[2]
            except (BenchError, ValueError):
                return float("nan")
        train = self.training_labels(k)
        if train is None:
            return float("nan")
        risk = val["risk"].to_numpy(dtype=float)
        try:
            if metric == "uno":
                return mh.uno_at(*train, time, cens, risk, mh.horizon(*train, quantile=UNO_QUANTILE))
            if metric.startswith("brier_"):
                return self._brier(f, val, train, float(metric.split("_")[1]))
            grid = self.grid()
            if grid is None:
                return float("nan")
            if metric == "auc":
                return mh.time_auc(*train, time, cens, risk, grid)[1]
            curves = f.curves(val)
            if curves is None:
                return float("nan")
            model, ref, skill = mh.ibs_skill(*train, time, cens, mh.curve_at(*curves, grid), grid)
        except (BenchError, ValueError):  # no comparable pair, no event inside the grid ...
            return float("nan")
        return {"ibs": model, "ibs_km": ref, "ibs_skill": skill}[metric]

    @staticmethod
    def _brier(f: FoldEval, val: pd.DataFrame, train: tuple[np.ndarray, np.ndarray], months: float) -> float:
        """Brier score at ``months``; NaN unless the horizon lies within the training fold's follow-up (at most its
        tau, the UNO_QUANTILE quantile of the training times) and inside the validation range scikit-survival can
        score (:func:`bench.metrics.horizon.brier_horizons`)."""
        curves = f.curves(val)
        if curves is None or months > mh.horizon(*train, quantile=UNO_QUANTILE):
            return float("nan")
        time, cens = _labels(val)
        scores = mh.brier_horizons(*train, time, cens, *curves, horizons=(months,), rule=CURVE_RULE)
        return float(scores["brier"].iloc[0])

    def dcal_pooled(self) -> float:
        """D-calibration p of the pooled out-of-fold histogram: every fold's ``S_i(T_i)`` (its own curves and bin
        edges) in one histogram, one chi-square test; NaN if a fold has no stored curves. The histogram is a sum
        over patients, so this is the test of the folds' histograms added up."""
        own, cens = [], []
        for f in self.ordered():
            val = f.val()
            curves = f.curves(val)
            if curves is None:
                return float("nan")
            t, c = _labels(val)
            own.append(mh.curve_at_own_time(*curves, t, CURVE_RULE))
            cens.append(c)
        return mh.d_calibration(np.concatenate(own), np.concatenate(cens), DCAL_BINS)[2]

    def grid(self) -> np.ndarray | None:
        """The cohort's fixed evaluation grid (:func:`bench.metrics.horizon.evaluation_grid`) from this seed's
        folds: their training labels, the validation range and the bin edges; None where it cannot be built."""
        if "grid" not in self._cache:
            folds = self.ordered()
            train = [self.training_labels(f.fold) for f in folds]
            edges = [f.edges for f in folds]
            grid = None
            if all(t is not None for t in train) and all(e is not None for e in edges):
                try:
                    grid = mh.evaluation_grid(train, [_labels(f.val()) for f in folds], edges,
                                              quantile=UNO_QUANTILE)
                except (BenchError, ValueError):
                    grid = None
            self._cache["grid"] = grid
        return self._cache["grid"]

    def logrank_paper(self) -> tuple[float, int, int]:
        """Published convention: pooled out-of-fold risks, high = risk >= their median; (p, n_high, n_low)."""
        pooled = self.pooled()
        high = sm.high_risk(pooled["risk"].to_numpy(), float(np.median(pooled["risk"])))
        time, cens = _labels(pooled)
        return sm.logrank_p(time, cens, high), int(high.sum()), int((~high).sum())

    def fold_safe(self) -> list[FoldSafe] | None:
        """Every fold's :meth:`FoldEval.fold_safe` split, or None if a fold has no training rows."""
        splits = [f.fold_safe() for f in self.ordered()]
        return None if any(s is None for s in splits) else splits  # type: ignore[return-value]

    def logrank_fold_safe(self) -> tuple[float, int, int]:
        """Fold-safe convention: each fold's validation patients at the protocol's epoch split at the median
        of its training patients' risks at the same epoch (:meth:`FoldEval.fold_safe`), groups pooled;
        NaN without train rows."""
        splits = self.fold_safe()
        if splits is None:
            return float("nan"), 0, 0
        high = np.concatenate([sm.high_risk(s.val["risk"].to_numpy(), s.threshold) for s in splits])
        labels = [_labels(s.val) for s in splits]
        time, cens = np.concatenate([t for t, _ in labels]), np.concatenate([c for _, c in labels])
        return sm.logrank_p(time, cens, high), int(high.sum()), int((~high).sum())

    def permutation_fold_safe(self, n_perm: int = 1000, seed: int = 0) -> float:
        """Permutation p of the fold-safe groups (:func:`bench.metrics.horizon.permutation_logrank`: labels
        permuted within folds, ``n_perm`` permutations seeded by ``seed``); NaN without train rows or with
        every patient in one group."""
        splits = self.fold_safe()
        if splits is None:
            return float("nan")
        folds = [(*_labels(s.val), s.val["risk"].to_numpy(dtype=float), s.threshold) for s in splits]
        return mh.permutation_logrank(folds, n_perm=n_perm, seed=seed)[1]

    def fold_safe_last_epoch(self) -> bool:
        """Whether some fold's fold-safe split fell back to the latest epoch with training rows."""
        return any(s.last_epoch for s in self.fold_safe() or [])


@dataclass(frozen=True)
class Summary:
    """A cell's value under one metric."""

    mean: float
    std: float | None  # fold std (ddof 0) averaged over seeds; None for pooled metrics
    spread: float | None  # population std over seeds of the per-seed values; None with one seed
    n_seeds: int
    n_folds: int
    expected_folds: int
    low: float | None = None  # bootstrap 95% interval (pooled metric)
    high: float | None = None

    @property
    def partial(self) -> bool:
        return self.n_folds < self.expected_folds


@dataclass
class Cell:
    """One method x variant x cohort under one protocol."""

    method: str
    overrides: Overrides
    cohort: str
    protocol: str
    seeds: list[SeedRuns]
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def used(self) -> list[SeedRuns]:
        """Complete seeds, or (if none) the seed with the most folds."""
        done = [s for s in self.seeds if s.complete]
        return done or [max(self.seeds, key=lambda s: (len(s.folds), -s.seed))]

    @property
    def partial(self) -> bool:
        return not any(s.complete for s in self.seeds)

    @property
    def expected_folds(self) -> int:
        return self.seeds[0].expected

    def provenances(self) -> set[Provenance]:
        return {provenance(f.run.manifest) for s in self.used for f in s.folds.values()}

    def summary(self, metric: str = "cindex", n_resamples: int = 1000, boot_seed: int = 0) -> Summary:
        """The cell's value under ``metric`` (see module docstring and :func:`bench.metrics.seed_summary`)."""
        key = (metric, n_resamples, boot_seed)
        if key not in self._cache:
            self._cache[key] = self._summary(check_metric(metric), n_resamples, boot_seed)
        return self._cache[key]

    def _summary(self, metric: MetricInfo, n_resamples: int, boot_seed: int) -> Summary:
        used = self.used
        n_folds = len(used[0].folds)
        if metric.name == "dcal_p":  # a p per seed; several seeds: their median (as Table II's p-values)
            values = [s.dcal_pooled() for s in used]
            spread = mean_std(values)[1] if len(values) > 1 else None
            return Summary(float(np.median(values)), None, spread, len(used), n_folds, self.expected_folds)
        if metric.pooled:
            values, lows, highs = [], [], []
            for s in used:
                pooled = s.pooled()
                t, c = _labels(pooled)
                r = pooled["risk"].to_numpy(dtype=float)
                values.append(cindex(t, c, r))
                lo, hi = sm.bootstrap_cindex(t, c, r, n_resamples=n_resamples, seed=boot_seed)
                lows.append(lo)
                highs.append(hi)
            mean, _ = mean_std(values)
            spread = mean_std(values)[1] if len(values) > 1 else None
            return Summary(mean, None, spread, len(used), n_folds, self.expected_folds,
                           float(np.mean(lows)), float(np.mean(highs)))
        per_seed = [[s.fold_metric(k, metric.name) for k in sorted(s.folds)] for s in used]
        mean, std, spread = seed_summary(per_seed)
        return Summary(mean, std, spread, len(used), n_folds, self.expected_folds)

    def logrank(self, convention: str) -> tuple[float, int, int]:
        """Median over the used seeds of the log-rank p (``paper`` or ``fold-safe``), and the group sizes
        of the first seed."""
        fn = SeedRuns.logrank_paper if convention == "paper" else SeedRuns.logrank_fold_safe
        results = [fn(s) for s in self.used]
        ps = [p for p, _, _ in results if not math.isnan(p)]
        p = float(np.median(ps)) if ps else float("nan")
        return p, results[0][1], results[0][2]

    def permutation_p(self, n_perm: int = 1000, seed: int = 0) -> float:
        """Median over the used seeds of the fold-safe permutation log-rank p
        (:meth:`SeedRuns.permutation_fold_safe`)."""
        key = ("permutation", n_perm, seed)
        if key not in self._cache:
            ps = [p for p in (s.permutation_fold_safe(n_perm, seed) for s in self.used) if not math.isnan(p)]
            self._cache[key] = float(np.median(ps)) if ps else float("nan")
        return self._cache[key]

    @property
    def fold_safe_last_epoch(self) -> bool:
        """Whether the fold-safe values of a used seed rest on last-epoch training rows instead of the
        protocol's epoch (runs stored before training rows were kept at every selectable epoch)."""
        return any(s.fold_safe_last_epoch() for s in self.used)

    def epochs(self) -> list[int]:
        return sorted({f.epoch for s in self.used for f in s.folds.values()})


class Evaluation:
    """The runs of the prediction store under ``results`` that verify, indexed by (method, variant, cohort) ->
    seed -> fold.

    Every run directory is checked once by :func:`bench.store.verify.inspect_run` (with ``settings``, also
    against its cohort's split file); those that fail are in ``excluded``, folders that are not run
    folders in ``ignored``, and neither reaches a table or figure.
    """

    def __init__(self, results: Path, expected_folds: Callable[[str], int] | int = DEFAULT_FOLDS,
                 settings: Settings | None = None, axes: Mapping[str, str] | None = None):
        from bench.store.verify import Problem, SplitMembers, inspect_run

        self.results = Path(results)
        self.axes: dict[str, str] = dict(axes or {})  # a view of one split family / store (:func:`axis_view`)
        layout = store_layout(self.results)
        self.ignored: list[Path] = layout.ignored
        self.excluded: list[Problem] = []
        self.runs: list[StoredRun] = []
        self._preds: dict[Path, pd.DataFrame] = {}
        members = SplitMembers(settings) if settings is not None else None
        for d in layout.runs:
            checked = inspect_run(d, settings, members)
            if isinstance(checked, Problem):
                self.excluded.append(checked)
            else:
                self.runs.append(checked.run)
                self._preds[d] = checked.predictions
        self._expected = expected_folds
        self.duplicates: list[Path] = []
        self._index: dict[tuple[str, Overrides, str], dict[int, dict[int, StoredRun]]] = {}
        for run in self.runs:
            key = run.manifest.get("key") or {}
            method = str(key.get("method", run.method))
            cohort = str(key.get("cohort", run.cohort))
            seed, fold = int(key.get("seed", run.seed)), int(key.get("fold", run.fold))
            ov = axis_view(normalize_overrides(run.manifest.get("overrides") or {}), run.manifest, self.axes)
            if ov is None:
                continue
            folds = self._index.setdefault((method, ov, cohort), {}).setdefault(seed, {})
            if fold in folds:
                self.duplicates.append(run.path)  # the same key stored twice (e.g. under two folder names)
                continue
            folds[fold] = run
        self._per_epoch: dict[Path, pd.Series] = {}
        self._cells: dict[tuple[str, Overrides, str, str], Cell | None] = {}

    @property
    def empty(self) -> bool:
        return not self.runs

    def expected_folds(self, cohort: str) -> int:
        return self._expected(cohort) if callable(self._expected) else int(self._expected)

    def methods(self) -> list[str]:
        return sorted({m for m, _, _ in self._index})

    def cohorts(self) -> list[str]:
        return sorted({c for _, _, c in self._index})

    def variants(self, method: str) -> list[Overrides]:
        return sorted({v for m, v, _ in self._index if m == method})

    def seeds(self) -> list[int]:
        return sorted({s for seeds in self._index.values() for s in seeds})

    def method_meta(self, method: str) -> dict[str, Any]:
        """The ``method`` block of a manifest of ``method`` (title, modality, tie ...), or {}."""
        for (m, _, _), seeds in self._index.items():
            if m == method:
                run = next(iter(next(iter(seeds.values())).values()))
                return dict(run.manifest.get("method") or {})
        return {}

    def has(self, method: str, cohort: str, overrides: Overrides = DEFAULT) -> bool:
        return (method, overrides, cohort) in self._index

    def predictions(self, run: StoredRun) -> pd.DataFrame:
        if run.path not in self._preds:
            self._preds[run.path] = run.predictions()
        return self._preds[run.path]

    def fold_eval(self, run: StoredRun, protocol: str) -> FoldEval:
        """Score one stored run under ``protocol`` (the method's tie rule from its manifest)."""
        preds = self.predictions(run)
        if run.path not in self._per_epoch:
            self._per_epoch[run.path] = epoch_cindex(preds)
        per_epoch = self._per_epoch[run.path]
        if per_epoch.empty:
            raise BenchError(f"{run.path} has no validation predictions; rerun it or delete the folder")
        tie = (run.manifest.get("method") or {}).get("tie", "earliest")
        if check_protocol(protocol) == "inner":
            try:
                epoch = select_epoch(inner_cindex(preds), "inner", tie)
            except BenchError as exc:
                raise BenchError(f"{run.path}: {exc}") from exc
        else:
            epoch = select_epoch(per_epoch, protocol, tie)
        return FoldEval(run, preds, per_epoch, epoch, float(per_epoch.loc[epoch]))

    def cell(self, method: str, cohort: str, overrides: Overrides = DEFAULT, protocol: str = "best-val") -> Cell | None:
        """The cell of (method, variant, cohort) under ``protocol``, or None if nothing is stored. Protocol
        ``inner`` reads the variant's ``selection=inner`` runs (:func:`with_inner`)."""
        if protocol == "inner":
            overrides = with_inner(overrides)
        key = (method, overrides, cohort, protocol)
        if key not in self._cells:
            seeds = self._index.get((method, overrides, cohort))
            if not seeds:
                self._cells[key] = None
            else:
                expected = self.expected_folds(cohort)
                self._cells[key] = Cell(method, overrides, cohort, protocol, [
                    SeedRuns(s, {k: self.fold_eval(r, protocol) for k, r in sorted(folds.items())}, expected)
                    for s, folds in sorted(seeds.items())])
        return self._cells[key]

    def cells(self, method: str | None = None) -> Iterable[tuple[str, Overrides, str]]:
        """Every stored (method, variant, cohort)."""
        return sorted(k for k in self._index if method is None or k[0] == method)


def open_store(results: Path | str | None = None, settings: Settings | None = None, *, splits: str | None = None,
               features: str | None = None) -> Evaluation:
    """The prediction store as every table and figure reads it: the runs under ``results`` (default:
    bench.toml's ``[paths] results``) that verify, each cohort expected to have as many folds as it has
    split files. ``settings``: the project's (default: :func:`bench.load_settings`). The runs left out
    are in ``excluded`` and ``ignored`` (see :func:`left_out`).

    ``splits`` (``site``) and ``features`` (a store name) restrict the store to the runs on that split family
    and store, seen under their variant without the axis (``splits=site,k=9`` is shown as ``k=9``); see
    :func:`view_axes`. Without them the runs of every split family and store are there, each its own variant.
    """
    from bench._core.config import load_settings
    from bench.data.cohort import split_folder
    from bench.store.verify import store_root

    settings = settings or load_settings()
    folder = store_root(settings, None if results is None else Path(results))
    axes = view_axes(splits, features)

    def expected(cohort: str) -> int:
        n = len(list(split_folder(settings.splits_dir, cohort, axes.get("splits", "fixed")).glob("splits_*.csv")))
        return n or DEFAULT_FOLDS

    return Evaluation(folder, expected, settings, axes)


def left_out(settings: Settings, ev: Evaluation) -> list[str]:
    """One line per stored run that does not verify (and the command that redoes it), and per folder ignored."""
    from bench.store.verify import ignored_note

    def shown(p: Path) -> str:
        return str(p.relative_to(settings.root) if p.is_relative_to(settings.root) else p)

    lines = [f"warning: left out {shown(p.path)} ({p.kind}: {p.detail})" + (f"; redo with: {p.command}"
                                                                           if p.command else "")
             for p in ev.excluded]
    return lines + [ignored_note(p, shown(p)) for p in ev.ignored]
