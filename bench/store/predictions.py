"""The prediction store: the single source of truth for every table and figure.

Layout::

    results/<method>/<variant>/<cohort>/seed<s>/fold<k>/predictions.csv.gz   (or predictions.csv)
    results/<method>/<variant>/<cohort>/seed<s>/fold<k>/manifest.json

The predictions file is a CSV, gzip-compressed (deterministically: no name, no time stamp, level 6) for
runs stored since the store was compressed and plain for earlier ones; the manifest's ``predictions.file`` names
which, readers take either, and ``bench results compact`` compresses older runs without changing a value.
It has one row per (patient, epoch, split): ``case_id, epoch, split, survival_months,
censorship, bin, risk, hazard_0.., surv_0..``. ``split`` is ``val`` for every epoch (and ``inner`` under
``selection=inner``) and ``train`` for every epoch a protocol can select and the last (runs stored before
that: the last epoch only; see :mod:`bench.train.engine`). ``manifest.json`` is written last (atomically),
so a run directory with a manifest of status ``complete`` is complete; anything else is unfinished work.
Tables and figures read only runs that also verify (:func:`bench.store.verify.inspect_run`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench._core.errors import BenchError
from bench._core.files import atomic_path, write_json
from bench.store.keys import FOLD_FOLDER, SEED_FOLDER, RunKey

PREDICTIONS = "predictions.csv"
#: The compressed form new runs are written in (2.3-2.6x smaller on the bundled store).
PREDICTIONS_GZ = "predictions.csv.gz"
#: The names a run's predictions file may have, the preferred first.
PREDICTION_FILES = (PREDICTIONS_GZ, PREDICTIONS)
GZIP_LEVEL = 6
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.pt"
#: What an unfinished run directory records about itself (key, data hash, overrides, the command that redoes it).
RUN_SPEC = "run.json"
REQUIRED_COLUMNS = ("case_id", "epoch", "split", "survival_months", "censorship", "bin", "risk")


def run_dir(results: Path, method: str, variant: str, cohort: str, seed: int, fold: int) -> Path:
    """Directory of one run key (:meth:`RunKey.dir <bench.store.keys.RunKey.dir>`)."""
    return RunKey(method, variant, cohort, seed, fold).dir(results)


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
        return read_predictions(predictions_path(self.path, self.manifest))

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def synthetic(self) -> bool | None:
        patho = self.manifest.get("data", {}).get("pathology")
        return None if patho is None else bool(patho.get("synthetic"))


def predictions_bytes(predictions: pd.DataFrame, compress: bool = True) -> bytes:
    """The bytes of a predictions file: the CSV (pandas' float formatting, exact round trip), gzipped
    with no file name and time stamp 0 when ``compress``, so the same frame always gives the same bytes."""
    text = predictions.to_csv(index=False).encode("utf-8")
    return gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0) if compress else text


def write_run(path: Path, predictions: pd.DataFrame, manifest: dict[str, Any], *, compress: bool = True) -> None:
    """Store one run: predictions first, then the manifest (the completion marker), both atomically.

    Args:
        path: the run directory (created if missing).
        predictions: one row per (patient, epoch, split) with at least :data:`REQUIRED_COLUMNS`.
        manifest: everything but ``predictions`` and ``status``, which are filled in here.
        compress: write ``predictions.csv.gz`` (default) instead of ``predictions.csv``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in predictions.columns]
    if missing:
        raise BenchError(f"predictions for {path} lack column(s) {', '.join(missing)}")
    path.mkdir(parents=True, exist_ok=True)
    name = PREDICTIONS_GZ if compress else PREDICTIONS
    text = predictions_bytes(predictions, compress=False)
    data = gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0) if compress else text
    with atomic_path(path / name) as tmp:
        tmp.write_bytes(data)
        # New predictions are fully written: from here the old run is no longer complete.
        (path / MANIFEST).unlink(missing_ok=True)
    for other in PREDICTION_FILES:
        if other != name:  # a predictions file of an earlier run of this key, in the other format
            (path / other).unlink(missing_ok=True)
    manifest = dict(manifest)
    manifest["predictions"] = {"file": name, "rows": len(predictions), "sha256": hashlib.sha256(data).hexdigest()}
    if compress:  # the CSV's own hash: the same predictions compare equal whichever format stores them
        manifest["predictions"]["csv_sha256"] = hashlib.sha256(text).hexdigest()
    manifest["status"] = "complete"
    write_json(path / MANIFEST, manifest)


def predictions_path(path: Path, manifest: dict[str, Any] | None = None) -> Path:
    """The predictions file of run directory ``path``: the one its manifest names, else the first of
    :data:`PREDICTION_FILES` that exists (``predictions.csv.gz`` when neither does)."""
    named = ((manifest or {}).get("predictions") or {}).get("file") if isinstance(manifest, dict) else None
    if isinstance(named, str) and named in PREDICTION_FILES:
        return Path(path) / named
    for name in PREDICTION_FILES:
        if (Path(path) / name).is_file():
            return Path(path) / name
    return Path(path) / PREDICTIONS_GZ


def compact_run(path: Path) -> bool:
    """Rewrite a complete run's ``predictions.csv`` as ``predictions.csv.gz`` (same bytes once decompressed)
    and point its manifest at it; False when there is nothing to do.

    The compressed file is written and checked first, then the manifest (atomically), then the plain file
    is removed: an interruption at any point leaves a run that verifies.
    """
    manifest = read_manifest(path)
    if manifest is None or manifest.get("status") != "complete" or predictions_path(path, manifest).name != PREDICTIONS:
        return False
    plain = Path(path) / PREDICTIONS
    data = plain.read_bytes()
    if hashlib.sha256(data).hexdigest() != (manifest.get("predictions") or {}).get("sha256"):
        raise BenchError(f"{plain} does not match its manifest's sha256; run `bench results verify` and redo the run "
                         "before compacting it")
    packed = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    if gzip.decompress(packed) != data:  # pragma: no cover - zlib itself failing
        raise BenchError(f"compressing {plain} did not round-trip; nothing was changed")
    with atomic_path(Path(path) / PREDICTIONS_GZ) as tmp:
        tmp.write_bytes(packed)
    manifest = dict(manifest)
    manifest["predictions"] = {**manifest["predictions"], "file": PREDICTIONS_GZ,
                               "sha256": hashlib.sha256(packed).hexdigest(),
                               "csv_sha256": hashlib.sha256(data).hexdigest()}
    write_json(Path(path) / MANIFEST, manifest)
    plain.unlink()
    return True


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a run directory, or None if absent; a corrupt manifest is an error naming it."""
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    try:
        manifest = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{f} is corrupt ({exc}); rerun the run with --force or delete the folder") from exc
    if not isinstance(manifest, dict):
        raise BenchError(f"{f} is corrupt (a JSON {type(manifest).__name__}, not an object); rerun the run with "
                         "--force or delete the folder")
    return manifest


def read_predictions(path: Path) -> pd.DataFrame:
    """Read a predictions file, plain or gzipped (ids as strings)."""
    try:
        return pd.read_csv(path, dtype={"case_id": str, "split": str})
    except FileNotFoundError as exc:
        raise BenchError(f"{path} is missing; the run is incomplete — rerun it") from exc


@dataclass
class StoreLayout:
    """The run directories under a store, and the folders where a run folder belongs that are not one."""

    runs: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def store_layout(results: Path) -> StoreLayout:
    """Walk ``results/<method>/<variant>/<cohort>/seed<s>/fold<k>`` (sorted).

    Hidden entries (``.lock``, an import's staging folder) are skipped; other folders at the seed or
    fold level whose names do not parse (``seed0_old``, ``fold0.bak``) are listed in ``ignored``.
    """
    out = StoreLayout()
    root = Path(results)
    if not root.is_dir():
        return out

    def subdirs(d: Path) -> list[Path]:
        try:
            return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return []

    for cohort_dir in (c for m in subdirs(root) for v in subdirs(m) for c in subdirs(v)):
        for seed_dir in subdirs(cohort_dir):
            if not SEED_FOLDER.fullmatch(seed_dir.name):
                out.ignored.append(seed_dir)
                continue
            for d in subdirs(seed_dir):
                (out.runs if FOLD_FOLDER.fullmatch(d.name) else out.ignored).append(d)
    return out


def stored_run(d: Path, manifest: dict[str, Any]) -> StoredRun:
    """The :class:`StoredRun` of run directory ``d`` (its key from the folder names)."""
    key = RunKey.from_path(d)
    if key is None:
        raise BenchError(f"{d} is not a run folder (<method>/<variant>/<cohort>/seed<N>/fold<N>)")
    return StoredRun(path=d, method=key.method, variant=key.variant, cohort=key.cohort, seed=key.seed,
                     fold=key.fold, manifest=manifest)
