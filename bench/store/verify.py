"""Which stored runs verify: ``bench results verify``, and the filter every table and figure reads through.

A run directory verifies when its manifest is a complete JSON object whose key names this folder,
the predictions file matches the manifest's sha256 and parses with the store's columns, every epoch
1..E is present, and every validation patient of the fold (from the cohort's split file) has a
prediction at every epoch (the training rows, where stored, are the fold's training patients).
Imported runs need only hold patients of the fold they are filed under. A directory without a
complete manifest is an interrupted run (its ``run.json`` tells how to redo it; a checkpoint tells
where it stopped). :func:`inspect_run` is the one decision, used by ``bench results verify`` and by
:class:`bench.report.evaluation.Evaluation`; it reads and hashes each predictions file once.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._core.config import Settings, format_value
from bench._core.errors import BenchError
from bench.data.cohort import short_name, split_folder
from bench.store.keys import RunKey
from bench.store.locks import holder
from bench.store.predictions import (
    CHECKPOINT,
    MANIFEST,
    PREDICTION_FILES,
    PREDICTIONS,
    REQUIRED_COLUMNS,
    RUN_SPEC,
    StoredRun,
    store_layout,
    stored_run,
)


@dataclass
class Problem:
    """Why a run directory does not verify, and the command that redoes it."""

    path: Path
    kind: str  # interrupted | running | corrupt | incomplete
    detail: str
    command: str


@dataclass
class VerifiedRun:
    """A run that verifies, with the predictions read while checking it."""

    run: StoredRun
    predictions: pd.DataFrame


def _redo_command(key: RunKey, overrides: Mapping[str, Any] | None, force: bool) -> str:
    """The ``bench run`` that redoes a run; ``overrides`` None: unknown (unreadable manifest), named by its variant."""
    sets = [(k.split(".", 1)[-1], format_value(v)) for k, v in sorted((overrides or {}).items())]
    tail = []
    if overrides is None and key.variant != "default":
        if key.variant.startswith("cfg-"):
            tail.append(f"--set <the overrides of variant {key.variant}>")
        else:
            tail.append(f"--set {key.variant}" if "=" in key.variant else f"--variant {key.variant}")
    if force:
        tail.append("--force")
    return key.command(sets, tail=tail)


def _reimport_command(m: Mapping[str, Any], key: RunKey) -> str:
    """The ``bench results import`` that redoes an imported run (the whole key: imports replace keys at once)."""
    parts = [f"bench results import {_obj(m.get('imported')).get('file') or 'FILE'} --method {key.method} "
             f"--cohort {short_name(key.cohort)} --seed {key.seed}"]
    if key.variant != "default":
        parts.append(f"--variant {key.variant}")
    return " ".join([*parts, "--force"])


class SplitMembers:
    """Training and validation patients of each fold, read from the cohorts' split files once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._folds: dict[tuple[str, int, str], tuple[set[str], set[str]] | BenchError] = {}

    def get(self, cohort: str, fold: int, splits: str = "fixed") -> tuple[set[str], set[str]]:
        """(train ids, val ids) of ``fold`` of split family ``splits`` (fixed or site); a BenchError if the cohort
        has no such split file here."""
        key = (cohort, fold, splits)
        if key not in self._folds:
            f = split_folder(self.settings.splits_dir, cohort, splits) / f"splits_{fold}.csv"
            try:
                s = pd.read_csv(f, dtype=str)
                self._folds[key] = tuple({x.strip() for x in s[col].dropna()} for col in ("train", "val"))
            except FileNotFoundError:
                self._folds[key] = BenchError(f"no split file {f} in this project")
            except Exception as exc:  # unreadable split file: every run of the fold is unchecked
                self._folds[key] = BenchError(f"cannot read split file {f}: {exc}")
        out = self._folds[key]
        if isinstance(out, BenchError):
            raise out
        return out


def _interrupted(d: Path, key: RunKey) -> Problem:
    spec: dict[str, Any] = {}
    if (d / RUN_SPEC).exists():
        try:
            spec = json.loads((d / RUN_SPEC).read_text())
        except (OSError, ValueError):
            spec = {}
        if not isinstance(spec, dict):
            spec = {}
    overrides = spec["overrides"] if isinstance(spec.get("overrides"), dict) else None
    cmd = spec.get("command") if isinstance(spec.get("command"), str) else None
    cmd = cmd or _redo_command(key, overrides, False)
    who = holder(d)
    if who is not None:
        return Problem(d, "running", f"being trained by pid {who.get('pid')} on {who.get('host')}", cmd)
    where = ""
    if (d / CHECKPOINT).exists():
        from bench.store.checkpoints import CheckpointError, read_checkpoint

        try:
            where = f"; checkpoint after epoch {read_checkpoint(d / CHECKPOINT)['epoch']}"
        except CheckpointError as exc:
            where = f"; checkpoint unusable ({exc}), the rerun starts over"
    return Problem(d, "interrupted", f"no manifest{where}", cmd)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def inspect_run(d: Path, settings: Settings | None = None, members: SplitMembers | None = None
                ) -> VerifiedRun | Problem:
    """Check run directory ``d``: the run and its predictions if it verifies, else its problem.

    Without ``settings`` the split's patients are not checked (hand-built stores in tests).
    """
    key = RunKey.from_path(d)
    if key is None:
        return Problem(d, "corrupt", "not a run folder (<method>/<variant>/<cohort>/seed<N>/fold<N>)", "")
    fold = key.fold
    manifest_path = d / MANIFEST
    if not manifest_path.is_file():
        return _interrupted(d, key)
    redo = _redo_command(key, None, True)
    try:
        m = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Problem(d, "corrupt", f"manifest unreadable ({exc})", redo)
    if not isinstance(m, dict):
        return Problem(d, "corrupt", f"manifest is a JSON {type(m).__name__}, not an object", redo)
    redo = _reimport_command(m, key) if m.get("imported") else _redo_command(
        key, m["overrides"] if isinstance(m.get("overrides"), dict) else None, True)
    if m.get("status") != "complete":
        return Problem(d, "incomplete", f"manifest status {m.get('status')!r}", redo)
    stored_key = _obj(m.get("key"))
    for name in ("method", "variant", "cohort", "seed", "fold"):
        want = getattr(key, name)
        if name in stored_key and str(stored_key[name]) != str(want):
            return Problem(d, "corrupt", f"manifest is of {name} {stored_key[name]!r} but the folder is of "
                                         f"{want!r} (files copied from another run?)", redo)
    named = _obj(m.get("predictions")).get("file", PREDICTIONS)
    if named not in PREDICTION_FILES:
        return Problem(d, "corrupt", f"manifest names predictions file {named!r}, not one of "
                                     f"{', '.join(PREDICTION_FILES)}", redo)
    try:
        data = (d / named).read_bytes()
    except FileNotFoundError:
        return Problem(d, "corrupt", f"{named} missing", redo)
    except OSError as exc:
        return Problem(d, "corrupt", f"{named} unreadable ({exc.strerror or exc})", redo)
    if hashlib.sha256(data).hexdigest() != _obj(m.get("predictions")).get("sha256"):
        return Problem(d, "corrupt", f"{named} does not match the manifest's sha256", redo)
    try:
        raw = gzip.decompress(data) if named.endswith(".gz") else data
        preds = pd.read_csv(io.BytesIO(raw), dtype={"case_id": str, "split": str})
    except Exception as exc:  # any bytes can be stored: a parse failure of any kind is a corrupt run
        return Problem(d, "corrupt", f"{named} unreadable ({type(exc).__name__}: {exc})", redo)
    try:
        problem = _check_predictions(m, preds, settings, members, key.cohort, fold)
    except (TypeError, ValueError, AttributeError) as exc:  # hand-edited manifest fields
        problem = ("corrupt", f"manifest has malformed fields ({exc})")
    if problem is not None:
        return Problem(d, *problem, redo)
    return VerifiedRun(stored_run(d, m), preds)


def _check_predictions(m: dict[str, Any], preds: pd.DataFrame, settings: Settings | None,
                       members: SplitMembers | None, cohort: str, fold: int) -> tuple[str, str] | None:
    """(kind, detail) of what is wrong with a run's predictions, or None."""
    missing = [c for c in REQUIRED_COLUMNS if c not in preds.columns]
    if missing:
        return "corrupt", f"predictions lack column(s) {', '.join(missing)}"
    if not pd.api.types.is_integer_dtype(preds["epoch"]):
        return "corrupt", "predictions have an epoch that is not a whole number"
    for col in ("risk", "survival_months", "censorship"):
        if not pd.api.types.is_numeric_dtype(preds[col]):
            return "corrupt", f"predictions column {col} is not numeric"
    # one factorisation of split and case_id serves every check below (a store holds ~10^6 rows)
    split_codes, split_names = pd.factorize(preds["split"], use_na_sentinel=False)
    if not set(split_names) <= {"val", "train", "inner"}:
        return "corrupt", "predictions have a split other than 'val', 'train' or 'inner'"
    case_codes, case_names = pd.factorize(preds["case_id"], use_na_sentinel=False)
    epoch_col = preds["epoch"].to_numpy(dtype=np.int64)
    # (epoch, split, case) -> one integer, injective since 0 <= split code < 3 and 0 <= case code < n
    key = (epoch_col * 3 + split_codes) * max(1, len(case_names)) + case_codes
    if len(np.unique(key)) != len(key):
        return "corrupt", "predictions hold a patient twice in one epoch"
    masks = {name: split_codes == code for code, name in enumerate(split_names)}
    none = np.zeros(len(preds), dtype=bool)
    is_val = masks.get("val", none)
    val = preds[is_val]
    if val.empty:
        return "incomplete", "no validation predictions"
    val_epochs = sorted(np.unique(epoch_col[is_val]).tolist())
    logged = m.get("epochs") if isinstance(m.get("epochs"), list) else []
    epochs = int(_obj(_obj(m.get("config")).get("train")).get("epochs", 0))
    if epochs and len(logged) != epochs:
        return "incomplete", f"{len(logged)} of {epochs} epochs logged"
    if epochs and val_epochs != list(range(1, epochs + 1)):
        return "incomplete", "validation predictions missing for some epochs"
    if settings is None:
        return None
    data = _obj(m.get("data"))
    try:
        splits = str(_obj(_obj(m.get("config")).get("data")).get("splits")
                     or _obj(m.get("overrides")).get("data.splits") or "fixed")
        train_ids, val_ids = (members or SplitMembers(settings)).get(cohort, fold, splits)
    except BenchError as exc:
        return "corrupt", f"cannot check patients: {exc}"
    is_train, is_inner = masks.get("train", none), masks.get("inner", none)
    train = preds[is_train]
    if m.get("imported"):  # imported predictions cover what their source provided, of this fold only
        for rows, ids, part in ((val, val_ids, "val"), (train, train_ids, "train")):
            stray = sorted(set(rows["case_id"]) - ids)
            if stray:
                return "corrupt", f"{len(stray)} patient(s) are not {part} patients of fold {fold} (e.g. {stray[0]})"
        return None
    excluded = set(data.get("excluded_patients") or [])
    inner_ids = set(data.get("inner_patients") or [])
    if inner_ids - train_ids:
        return "corrupt", f"inner patient {sorted(inner_ids - train_ids)[0]} is not a training patient of fold {fold}"
    if inner_ids and sorted(np.unique(epoch_col[is_inner]).tolist()) != val_epochs:
        return "incomplete", "inner-split predictions missing for some epochs"
    if not inner_ids and is_inner.any():
        return "corrupt", "predictions have inner-split rows but the manifest names no inner patients"
    parts = [("val", val_ids - excluded, is_val), ("train", train_ids - inner_ids - excluded, is_train)]
    if inner_ids:
        parts.append(("inner", inner_ids - excluded, is_inner))
    for part, expected, mask in parts:
        # no patient twice per epoch (checked above): all ids expected and as many as expected is set equality
        known = np.fromiter((c in expected for c in case_names), dtype=bool, count=len(case_names))
        _, sizes = np.unique(epoch_col[mask], return_counts=True)
        if known[case_codes[mask]].all() and (sizes == len(expected)).all():
            continue
        rows = preds[mask]
        for epoch, g in rows.groupby("epoch"):
            got = set(g["case_id"])
            if got != expected:
                lost, extra = sorted(expected - got), sorted(got - expected)
                first = f"e.g. {lost[0]} missing" if lost else f"e.g. {extra[0]} is not one"
                return ("incomplete", f"epoch {epoch}: {len(lost)} {part} patient(s) of fold {fold} missing, "
                        f"{len(extra)} unexpected ({first})")
    return None


def check_run(settings: Settings | None, d: Path, members: SplitMembers | None = None) -> Problem | None:
    """The problem with one run directory, or None if it is complete and consistent."""
    out = inspect_run(d, settings, members)
    return out if isinstance(out, Problem) else None


def store_root(settings: Settings, results: Path | None) -> Path:
    """The prediction store folder: ``results`` if given (it must be an existing folder), else bench.toml's.

    A default store that does not exist yet is an empty store; one given by ``--results`` is a typo.
    """
    if results is None:
        root = settings.results_dir
        if root.exists() and not root.is_dir():
            raise BenchError(f"the prediction store {root} ([paths] results in bench.toml) is a file, not a folder; "
                             "move the file away or point [paths] results at a folder")
        return root
    root = Path(results)
    fix = "give the folder that holds the prediction store (default: results/)"
    if not root.exists():
        raise BenchError(f"--results {root} does not exist; {fix}")
    if not root.is_dir():
        raise BenchError(f"--results {root} is a file, not a folder; {fix}")
    return root


def environment_notes(manifests: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per package version or torch thread count where stored runs recorded another value than here."""
    import torch

    from bench.store.manifest import versions

    here: dict[str, Any] = {**versions(), "torch_threads": torch.get_num_threads()}
    recorded: dict[str, Counter[str]] = {item: Counter() for item in here}
    for m in manifests:
        env = _obj(m.get("environment"))
        for item in here:
            value = _obj(env.get("machine")).get(item) if item == "torch_threads" else env.get(item)
            if value is not None:
                recorded[item][str(value)] += 1
    lines = []
    for item, counts in recorded.items():
        if set(counts) - {str(here[item])}:
            seen = ", ".join(f"{v} ({n} run(s))" for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"environment: {item} is {here[item]} here; the stored runs recorded {seen}")
    return lines


@dataclass
class StoreReport:
    """What ``bench results verify`` found."""

    root: Path
    checked: int
    problems: list[Problem] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)


def verify_report(settings: Settings, results: Path | None = None) -> StoreReport:
    """Check every run directory of the store; list folders that are not runs and environment differences."""
    root = store_root(settings, results)
    layout = store_layout(root)
    members = SplitMembers(settings)
    problems, manifests = [], []
    for d in layout.runs:
        out = inspect_run(d, settings, members)
        if isinstance(out, Problem):
            problems.append(out)
        else:
            manifests.append(out.run.manifest)
    return StoreReport(root, len(layout.runs), problems, layout.ignored, environment_notes(manifests))


def verify_store(settings: Settings, results: Path | None = None) -> tuple[int, list[Problem]]:
    """(number of run directories checked, problems found) for the whole store."""
    report = verify_report(settings, results)
    return report.checked, report.problems


def ignored_note(path: Path, shown: str | None = None) -> str:
    """The note for a folder where a run folder belongs that is not one."""
    return f"note: ignored {shown or path}: not a run folder (run folders are named seed<N>/fold<N>)"
