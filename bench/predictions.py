"""The prediction store: the single source of truth for every table and figure.

Layout::

    results/<method>/<variant>/<cohort>/seed<s>/fold<k>/predictions.csv
    results/<method>/<variant>/<cohort>/seed<s>/fold<k>/manifest.json

``predictions.csv`` has one row per (patient, epoch, split): ``case_id, epoch, split, survival_months,
censorship, bin, risk, hazard_0.., surv_0..``. ``split`` is ``val`` for every epoch and ``train`` for
the last epoch. ``manifest.json`` is written last (atomically), so a run directory with a manifest
of status ``complete`` is complete; anything else is unfinished work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.io import atomic_path, sha256_file, write_json

PREDICTIONS = "predictions.csv"
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.pt"
REQUIRED_COLUMNS = ("case_id", "epoch", "split", "survival_months", "censorship", "bin", "risk")


def run_dir(results: Path, method: str, variant: str, cohort: str, seed: int, fold: int) -> Path:
    """Directory of one run key."""
    return Path(results) / method / variant / cohort / f"seed{seed}" / f"fold{fold}"


@dataclass
class StoredRun:
    """One stored run: its location, key and manifest; predictions are read on demand."""

    path: Path
    method: str
    variant: str
    cohort: str
    seed: int
    fold: int
    manifest: dict[str, Any]

    def predictions(self) -> pd.DataFrame:
        return read_predictions(self.path / PREDICTIONS)

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def synthetic(self) -> bool | None:
        patho = self.manifest.get("data", {}).get("pathology")
        return None if patho is None else bool(patho.get("synthetic"))


def write_run(path: Path, predictions: pd.DataFrame, manifest: dict[str, Any]) -> None:
    """Store one run: predictions first, then the manifest (the completion marker), both atomically."""
    missing = [c for c in REQUIRED_COLUMNS if c not in predictions.columns]
    if missing:
        raise BenchError(f"predictions for {path} lack column(s) {', '.join(missing)}")
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / PREDICTIONS) as tmp:
        predictions.to_csv(tmp, index=False)
        # New predictions are fully written: from here the old run is no longer complete.
        (path / MANIFEST).unlink(missing_ok=True)
    manifest = dict(manifest)
    manifest["predictions"] = {"file": PREDICTIONS, "rows": len(predictions), "sha256": sha256_file(path / PREDICTIONS)}
    manifest["status"] = "complete"
    write_json(path / MANIFEST, manifest)


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a run directory, or None if absent; a corrupt manifest is an error naming it."""
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{f} is corrupt ({exc}); rerun the run with --force or delete the folder") from exc


def read_predictions(path: Path) -> pd.DataFrame:
    """Read a predictions.csv (ids as strings)."""
    try:
        return pd.read_csv(path, dtype={"case_id": str, "split": str})
    except FileNotFoundError as exc:
        raise BenchError(f"{path} is missing; the run is incomplete — rerun it") from exc


def scan(results: Path) -> list[StoredRun]:
    """Every complete stored run under ``results`` (sorted by key)."""
    out = []
    for m in sorted(Path(results).glob(f"*/*/*/seed*/fold*/{MANIFEST}")):
        d = m.parent
        try:
            manifest = json.loads(m.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # reported by `bench results verify`
        if manifest.get("status") != "complete":
            continue
        method, variant, cohort = d.parts[-5], d.parts[-4], d.parts[-3]
        out.append(StoredRun(path=d, method=method, variant=variant, cohort=cohort,
                             seed=int(d.parts[-2].removeprefix("seed")), fold=int(d.name.removeprefix("fold")),
                             manifest=manifest))
    return out
