"""``bench results import``: store predictions produced elsewhere so tables can use them.

The CSV needs ``case_id, fold, risk, survival_months, censorship``; optional columns are
``epoch`` (1-based, default 1), ``split`` (``val`` default, or ``train``, allowed at the last epoch
only, as in stores written by ``bench run``), ``bin`` (or ``disc_label``), ``hazard_<k>`` and
``surv_<k>`` (if only hazards are given, ``surv_k = prod_{j<=k}(1 - hazard_j)``), and ``cohort``
(rows of other cohorts are skipped). Every row is checked against the cohort: its patient must be
in the fold's ``val`` (or ``train``) column of ``splits/<cohort>/splits_<fold>.csv``, and its
``survival_months`` / ``censorship`` must equal the cohort table's. Rows that do not match are
refused: the import stops and names them, or with ``drop_unmatched`` they are left out and listed
in the manifests. Hazards and survival probabilities must lie in [0, 1] and ``bin`` be a time-bin
label 0..n_bins-1 (-1: unknown). One run per fold is written, like ``bench run`` does, all at once:
every fold is staged in a hidden folder beside the key's ``seed<s>`` folder and moved into place only
when all are written, so a failed import leaves the runs stored before intact. ``force`` replaces
every run stored under the key (folds the file lacks included).
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._core.config import SEED_HELP, SEED_LIMIT, Settings, parse_sets, variant_name
from bench._core.errors import BenchError
from bench._core.files import sha256_file, sha256_json
from bench.data.cohort import Cohort, canonical_name, load_cohort, resolve_cohort, short_name, table_builds
from bench.metrics.concordance import epoch_cindex
from bench.store.keys import RunKey
from bench.store.locks import holder
from bench.store.predictions import read_manifest, run_dir, write_run

REQUIRED = ("case_id", "fold", "risk", "survival_months", "censorship")
PATHOLOGY = ("real", "synthetic", "none", "unknown")
TIME_TOLERANCE = 1e-4  # months; tables are stored with 2-4 decimals


@dataclass
class ImportReport:
    method: str
    variant: str
    cohort: str
    seed: int
    folds: dict[int, int] = field(default_factory=dict)  # fold -> rows written
    paths: list[Path] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    skipped_other_cohorts: int = 0
    replaced: list[int] = field(default_factory=list)  # folds stored under the key before (--force)


def read_table(path: Path) -> pd.DataFrame:
    """Read the CSV (case ids and splits as text) or explain why not."""
    try:
        df = pd.read_csv(path, dtype={"case_id": str, "split": str, "cohort": str})
    except FileNotFoundError:
        raise BenchError(f"{path} does not exist") from None
    except Exception as exc:
        raise BenchError(f"cannot read {path} as CSV: {exc}") from exc
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise BenchError(f"{path} lacks column(s) {', '.join(missing)}; it needs {', '.join(REQUIRED)} "
                         "(optional: epoch, split, bin, hazard_<k>, surv_<k>)")
    if df.empty:
        raise BenchError(f"{path} has a header but no rows; add one row per patient and fold")
    return df


def _cell(df: pd.DataFrame, col: str, i: int) -> str:
    """Row ``i``'s value of ``col`` as the file shows it (``1.5``, ``nan``, ``'x'``), for error messages."""
    value = df[col].iloc[i]
    return repr(value.item() if isinstance(value, np.generic) else value)


def _numeric(df: pd.DataFrame, col: str, path: Path) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() | ~np.isfinite(values.astype(float))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise BenchError(f"{path}: row {i + 2} has {col}={_cell(df, col, i)}; it must be a finite number")
    return values


def _probabilities(df: pd.DataFrame, cols: list[str], path: Path) -> None:
    for col in cols:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~((values >= 0) & (values <= 1))  # NaN fails too
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BenchError(f"{path}: row {i + 2} has {col}={_cell(df, col, i)}; it must be a probability between "
                             "0 and 1")


def _bins(df: pd.DataFrame, col: str, n_bins: int, path: Path) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = ~(values.isin(range(-1, n_bins)))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise BenchError(f"{path}: row {i + 2} has {col}={_cell(df, col, i)}; it must be a time-bin label "
                         f"0..{n_bins - 1} (-1: unknown), n_bins being the number of hazard_<k> columns (or of "
                         "--bin-edges values minus one)")
    return values.astype(int)


def normalise(df: pd.DataFrame, path: Path, n_bins: int = 4) -> pd.DataFrame:
    """Check types and fill optional columns (epoch, split, bin, surv from hazards).

    ``n_bins``: the number of time bins when the file has no ``hazard_<k>`` or ``surv_<k>`` columns.
    """
    out = df.copy()
    out["case_id"] = out["case_id"].astype(str).str.strip()
    for col in ("fold", "risk", "survival_months", "censorship"):
        out[col] = _numeric(out, col, path)
    if "epoch" not in out.columns:
        out["epoch"] = 1
    out["epoch"] = _numeric(out, "epoch", path)
    for col in ("fold", "epoch"):
        if not (out[col] == out[col].round()).all():
            raise BenchError(f"{path}: column {col} must hold whole numbers")
        out[col] = out[col].astype(int)
    if (out["epoch"] < 1).any():
        raise BenchError(f"{path}: epochs are 1-based; found epoch {int(out['epoch'].min())}")
    if not out["censorship"].isin((0, 1)).all():
        raise BenchError(f"{path}: censorship must be 0 (event) or 1 (censored)")
    out["censorship"] = out["censorship"].astype(int)
    out["split"] = out["split"].fillna("val").str.strip() if "split" in out.columns else "val"
    if not out["split"].isin(("val", "train")).all():
        raise BenchError(f"{path}: split must be 'val' or 'train'")
    hazards = sorted((c for c in out.columns if c.startswith("hazard_")), key=lambda c: int(c.split("_")[1]))
    survs = [c for c in out.columns if c.startswith("surv_")]
    _probabilities(out, hazards + survs, path)
    bin_col = "bin" if "bin" in out.columns else ("disc_label" if "disc_label" in out.columns else None)
    out["bin"] = -1 if bin_col is None else _bins(out, bin_col, len(hazards) or len(survs) or n_bins, path)
    if hazards and not survs:
        surv = np.cumprod(1.0 - out[hazards].to_numpy(dtype=float), axis=1)
        for k in range(surv.shape[1]):
            out[f"surv_{k}"] = surv[:, k]
    return out


def _cohort(settings: Settings, text: str) -> Cohort:
    name = resolve_cohort(settings, text)
    builds = table_builds(settings, name)
    build = settings["data"]["genomics"] if settings["data"]["genomics"] in builds else builds[0]
    return load_cohort(settings, name, build)


def unmatched(df: pd.DataFrame, cohort: Cohort) -> pd.Series:
    """Why each row does not match the cohort ('' where it does)."""
    reasons = pd.Series("", index=df.index, dtype=object)
    n_folds = len(cohort.splits)
    members = {(k, part): {cohort.case_ids[i] for i in getattr(cohort.splits[k], part)}
               for k in range(n_folds) for part in ("train", "val")}
    for idx, row in zip(df.index, df[["case_id", "fold", "split"]].itertuples(index=False), strict=True):
        if not 0 <= row.fold < n_folds:
            reasons[idx] = f"fold {row.fold} is not a fold of {short_name(cohort.name)} (0..{n_folds - 1})"
        elif row.case_id not in cohort.index:
            reasons[idx] = f"patient {row.case_id} is not in the {short_name(cohort.name)} table"
        elif row.case_id not in members[(row.fold, row.split)]:
            reasons[idx] = f"patient {row.case_id} is not a {row.split} patient of fold {row.fold}"
    ok = reasons == ""
    pos = np.array([cohort.index.get(c, 0) for c in df["case_id"]])
    bad_time = ok & ~np.isclose(df["survival_months"].to_numpy(dtype=float), cohort.time[pos], atol=TIME_TOLERANCE,
                                rtol=0)
    bad_cens = ok & (df["censorship"].to_numpy() != cohort.censorship[pos])
    for idx, i in zip(df.index[bad_time], pos[bad_time.to_numpy()], strict=True):
        reasons[idx] = (f"patient {df.at[idx, 'case_id']} has survival_months {df.at[idx, 'survival_months']} but "
                        f"{cohort.time[i]} in the cohort table")
    for idx, i in zip(df.index[bad_cens & ~bad_time], pos[(bad_cens & ~bad_time).to_numpy()], strict=True):
        reasons[idx] = (f"patient {df.at[idx, 'case_id']} has censorship {df.at[idx, 'censorship']} but "
                        f"{int(cohort.censorship[i])} in the cohort table")
    return reasons


def _overrides(settings: Settings, method: str, cohort: str, variant: str | None) -> tuple[dict[str, Any], bool]:
    """(overrides, registered) of the imported runs; a registered method's variant is validated."""
    from bench.api.registry import get_method

    try:
        info = get_method(method)
    except BenchError:
        info = None
    if variant is None or variant.strip() in ("", "default"):
        sets: dict[str, Any] = {}
    elif info is not None and variant in info.variants:
        sets = dict(info.variants[variant])
    else:
        try:
            sets = parse_sets([variant])
        except BenchError:
            raise BenchError(f"bad --variant '{variant}': write 'default' or key=value pairs like k=9 or "
                             "cgm=false,mkd=false") from None
    if info is None:
        return {k if "." in k else f"model.{k}": v for k, v in sets.items()}, False
    from bench._core.config import resolve_run_config

    _, overrides = resolve_run_config(settings, info, cohort, sets)
    return overrides, True


def import_predictions(
    settings: Settings,
    file: Path,
    *,
    method: str,
    cohort: str,
    variant: str | None = None,
    seed: int | None = None,
    results: Path | None = None,
    drop_unmatched: bool = False,
    force: bool = False,
    genomics_build: str | None = None,
    pathology: str = "unknown",
    title: str | None = None,
    modality: str | None = None,
    bin_edges: list[float] | None = None,
) -> ImportReport:
    """Check ``file`` against ``cohort`` and store it as runs of ``method`` (one per fold)."""
    from bench.api.registry import get_method

    file = Path(file)
    if pathology not in PATHOLOGY:
        raise BenchError(f"bad --pathology '{pathology}': choose one of {', '.join(PATHOLOGY)}")
    method = method.strip().lower()
    if not method or not all(ch.isalnum() or ch in "_-" for ch in method):
        raise BenchError(f"bad --method '{method}': use letters, digits, '-' and '_'")
    co = _cohort(settings, cohort)
    overrides, registered = _overrides(settings, method, co.name, variant)
    info = get_method(method) if registered else None
    variant_folder = variant_name(overrides)
    seed = settings["run"]["seed"] if seed is None else seed
    if not 0 <= seed < SEED_LIMIT:
        raise BenchError(f"bad --seed {seed}: {SEED_HELP}")
    results = Path(results) if results else settings.results_dir
    if results.exists() and not results.is_dir():
        raise BenchError(f"--results {results} is a file, not a folder; give the folder of the prediction store "
                         "(it is created if missing)")

    raw = read_table(file)
    skipped = 0
    if "cohort" in raw.columns:
        mine = raw["cohort"].astype(str).map(canonical_name) == co.name
        skipped = int((~mine).sum())
        raw = raw[mine]
        if raw.empty:
            raise BenchError(f"{file} has no rows of cohort {short_name(co.name)} in its 'cohort' column")
    edges = [float(e) for e in bin_edges] if bin_edges else None
    n_bins = len(edges) - 1 if edges else int(settings["data"]["n_bins"])
    df = normalise(raw, file, n_bins)
    dup = df.duplicated(["fold", "epoch", "split", "case_id"], keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise BenchError(f"{file}: patient {r['case_id']} appears twice in fold {r['fold']} epoch {r['epoch']} "
                         f"({r['split']})")
    reasons = unmatched(df, co)
    bad = reasons != ""
    dropped = [f"row {i + 2}: {reasons[i]}" for i in df.index[bad]]
    dropped_by_fold = {int(k): [f"row {i + 2}: {reasons[i]}" for i in g.index] for k, g in df[bad].groupby("fold")}
    if bad.any() and not drop_unmatched:
        more = f" (and {len(dropped) - 5} more)" if len(dropped) > 5 else ""
        raise BenchError(f"{file}: {len(dropped)} row(s) do not match the {short_name(co.name)} splits or table: "
                         f"{'; '.join(dropped[:5])}{more}. Fix the file, import it for the right cohort, or pass "
                         "--drop-unmatched to leave these rows out")
    df = df[~bad]
    if df.empty:
        raise BenchError(f"{file}: no rows left to import")

    sha = sha256_file(file)
    n_surv = sum(c.startswith("surv_") for c in df.columns)
    if edges is not None and n_surv and len(edges) != n_surv + 1:
        raise BenchError(f"--bin-edges has {len(edges)} values but the file has {n_surv} survival columns; "
                         f"give n_bins + 1 = {n_surv + 1} edges")
    report = ImportReport(method, variant_folder, co.name, seed, dropped=dropped, skipped_other_cohorts=skipped)
    plans = []
    for fold, rows in sorted(df.groupby("fold")):
        fold = int(fold)
        if (rows["split"] == "val").sum() == 0:
            raise BenchError(f"{file}: fold {fold} has train rows but no val rows")
        last = int(rows["epoch"].max())
        train_epochs = set(rows.loc[rows["split"] == "train", "epoch"])
        if train_epochs - {last}:
            raise BenchError(f"{file}: fold {fold} has train rows at epoch(s) {sorted(train_epochs - {last})}; "
                             f"the store keeps training-fold predictions for the last epoch ({last}) only")
        d = run_dir(results, method, variant_folder, co.name, seed, fold)
        existing = read_manifest(d)
        if existing is not None and not force:
            raise BenchError(f"{d} already holds a run; pass --force to replace it or --results DIR to keep both")
        plans.append((fold, d, rows))
    key_dir = run_dir(results, method, variant_folder, co.name, seed, 0).parent
    busy = [d for d in sorted(key_dir.glob("fold*")) if holder(d) is not None]
    if busy:
        raise BenchError(f"{busy[0]} is being trained by another process; import when it has finished")

    cols = ["case_id", "epoch", "split", "survival_months", "censorship", "bin", "risk",
            *sorted((c for c in df.columns if c.startswith("hazard_")), key=lambda c: int(c.split("_")[1])),
            *sorted((c for c in df.columns if c.startswith("surv_")), key=lambda c: int(c.split("_")[1]))]
    imported_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    runs = []
    for fold, d, rows in plans:
        preds = rows[cols].sort_values(["epoch", "split", "case_id"], kind="stable").reset_index(drop=True)
        per_epoch = epoch_cindex(preds)
        key = RunKey(method, variant_folder, co.name, seed, fold,
                     "import-" + sha256_json({"file": sha, "overrides": overrides})[:12]).record()
        manifest = {
            "survbench_manifest": 1,
            "key": key,
            "method": {"name": method, "title": info.title if info else (title or method),
                       "modality": info.modality if info else (modality or "unknown"), "source": "imported",
                       "selection": info.selection if info else "best-val", "tie": info.tie if info else "earliest",
                       "reimplementation": info.reimplementation if info else None},
            "config": {},
            "overrides": overrides,
            "data": {"cohort": co.name, "genomics_build": genomics_build or "unknown",
                     "split_file": co.splits[fold].path.name, "split_sha256": co.hashes[f"splits_{fold}"],
                     "n_val": int(rows.loc[rows["split"] == "val", "case_id"].nunique()),
                     "n_train": int(rows.loc[rows["split"] == "train", "case_id"].nunique()),
                     "bin_edges": edges,
                     "pathology": None if pathology == "none" else {
                         "kind": pathology, "synthetic": True if pathology == "synthetic" else (
                             False if pathology == "real" else None)}},
            "imported": {"file": str(file.resolve()), "sha256": sha, "rows": len(rows), "at": imported_at,
                         "dropped_rows": dropped_by_fold.get(fold, [])},
            "epochs": [{"epoch": int(e), "train_loss": None, "val_cindex": float(c)} for e, c in per_epoch.items()],
        }
        runs.append((fold, preds, manifest))
        report.folds[fold] = len(preds)
        report.paths.append(d)
    report.replaced = _store_key(key_dir, runs, force)
    return report


def _store_key(key_dir: Path, runs: list[tuple[int, pd.DataFrame, dict[str, Any]]], force: bool) -> list[int]:
    """Write ``runs`` (fold, predictions, manifest) under ``key_dir`` all at once; the folds replaced (``force``).

    Every fold is staged in a hidden folder beside ``key_dir`` first; on any error nothing stored changes.
    """
    fix = "the runs stored before are intact; free disk space or fix permissions and rerun"
    try:
        key_dir.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{key_dir.name}.import-", dir=key_dir.parent))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(stage, 0o777 & ~mask)  # it becomes the key's folder: not mkdtemp's private 0700
    except OSError as exc:
        raise BenchError(f"could not write under {key_dir.parent}: {exc.strerror or exc}; {fix}") from exc
    try:
        for fold, preds, manifest in runs:
            write_run(stage / f"fold{fold}", preds, manifest)
        before = sorted(k.fold for d in key_dir.glob("fold*") if d.is_dir() and (k := RunKey.from_path(d)) is not None)
        try:
            if not key_dir.exists():
                os.rename(stage, key_dir)
            elif force:  # the whole key is replaced: no fold of an earlier file survives next to the new ones
                old = stage.with_name(stage.name + ".replaced")
                os.rename(key_dir, old)
                try:
                    os.rename(stage, key_dir)
                except OSError:
                    os.rename(old, key_dir)
                    raise
                shutil.rmtree(old, ignore_errors=True)
                return before
            else:  # new folds of a key that holds others (a complete fold of this file was refused above)
                for fold, _, _ in runs:
                    dest = key_dir / f"fold{fold}"
                    if dest.exists():  # an unfinished run's leftovers
                        shutil.rmtree(dest)
                    os.rename(stage / f"fold{fold}", dest)
        except OSError as exc:
            raise BenchError(f"could not move the imported runs into {key_dir}: {exc.strerror or exc}; {fix}") \
                from exc
        return []
    finally:
        shutil.rmtree(stage, ignore_errors=True)
