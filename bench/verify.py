"""``bench results verify``: check every stored run; list incomplete or corrupt ones with the command that redoes them.

A run directory is fine when its manifest is present and complete, the predictions file matches the
manifest's sha256, every epoch 1..E is present, and every validation patient of the fold (from the
cohort's split file) has a prediction at every epoch. A directory without a complete manifest is an
interrupted run (its ``run.json`` tells how to redo it; a checkpoint tells where it stopped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.cohort import load_cohort, short_name
from bench.config import Settings, format_value
from bench.errors import BenchError
from bench.io import sha256_file
from bench.locks import holder
from bench.predictions import CHECKPOINT, MANIFEST, PREDICTIONS
from bench.runner import RUN_SPEC


@dataclass
class Problem:
    path: Path
    kind: str  # interrupted | running | corrupt | incomplete
    detail: str
    command: str


def _redo_command(method: str, cohort: str, fold: int, seed: int, overrides: dict, force: bool) -> str:
    parts = [f"bench run --method {method} --cohort {short_name(cohort)} --folds {fold} --seed {seed}"]
    if overrides:
        pairs = (f"{k.split('.', 1)[-1]}={format_value(v)}" for k, v in sorted(overrides.items()))
        parts.append("--set " + ",".join(pairs))
    if force:
        parts.append("--force")
    return " ".join(parts)


def _key_from_path(d: Path) -> tuple[str, str, str, int, int]:
    seed, fold = int(d.parts[-2].removeprefix("seed")), int(d.name.removeprefix("fold"))
    return d.parts[-5], d.parts[-4], d.parts[-3], seed, fold


def check_run(settings: Settings, d: Path) -> Problem | None:
    """The problem with one run directory, or None if it is complete and consistent."""
    method, _variant, cohort, seed, fold = _key_from_path(d)
    manifest_path = d / MANIFEST
    if not manifest_path.exists():
        spec = {}
        if (d / RUN_SPEC).exists():
            try:
                spec = json.loads((d / RUN_SPEC).read_text())
            except (OSError, ValueError):
                spec = {}
        cmd = spec.get("command") or _redo_command(method, cohort, fold, seed, spec.get("overrides", {}), False)
        who = holder(d)
        if who is not None:
            return Problem(d, "running", f"being trained by pid {who.get('pid')} on {who.get('host')}", cmd)
        where = ""
        if (d / CHECKPOINT).exists():
            try:
                import torch

                where = f"; checkpoint after epoch {torch.load(d / CHECKPOINT, weights_only=False)['epoch']}"
            except Exception:
                where = "; checkpoint unreadable (the rerun starts over)"
        return Problem(d, "interrupted", f"no manifest{where}", cmd)
    try:
        m = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        redo = _redo_command(method, cohort, fold, seed, {}, True)
        return Problem(d, "corrupt", f"manifest unreadable ({exc})", redo)
    redo = _redo_command(method, cohort, fold, seed, m.get("overrides", {}), True)
    if m.get("status") != "complete":
        return Problem(d, "incomplete", f"manifest status {m.get('status')!r}", redo)
    pred = d / PREDICTIONS
    if not pred.exists():
        return Problem(d, "corrupt", "predictions.csv missing", redo)
    if sha256_file(pred) != m.get("predictions", {}).get("sha256"):
        return Problem(d, "corrupt", "predictions.csv does not match the manifest's sha256", redo)
    epochs = int(m.get("config", {}).get("train", {}).get("epochs", 0))
    if epochs and len(m.get("epochs", [])) != epochs:
        return Problem(d, "incomplete", f"{len(m.get('epochs', []))} of {epochs} epochs logged", redo)
    preds = pd.read_csv(pred, dtype={"case_id": str})
    val = preds[preds["split"] == "val"]
    if epochs and sorted(val["epoch"].unique().tolist()) != list(range(1, epochs + 1)):
        return Problem(d, "incomplete", "validation predictions missing for some epochs", redo)
    if m.get("imported"):
        return None  # imported predictions cover what their source provided
    try:
        co = load_cohort(settings, cohort, m.get("data", {}).get("genomics_build"))
        expected = {co.case_ids[i] for i in co.split(fold).val} - set(m.get("data", {}).get("excluded_patients", []))
    except BenchError as exc:
        return Problem(d, "corrupt", f"cannot check patients: {exc}", redo)
    for epoch, g in val.groupby("epoch"):
        got = set(g["case_id"])
        if got != expected:
            missing = sorted(expected - got)
            return Problem(d, "incomplete", f"epoch {epoch}: {len(missing)} val patient(s) missing "
                                            f"(e.g. {missing[:1]}) or unexpected ids", redo)
    return None


def verify_store(settings: Settings, results: Path | None = None) -> tuple[int, list[Problem]]:
    """(number of run directories checked, problems found) for the whole store."""
    root = Path(results) if results else settings.results_dir
    dirs = sorted({p.parent for p in root.glob("*/*/*/seed*/fold*/*")} | {p for p in root.glob("*/*/*/seed*/fold*")
                                                                          if p.is_dir()})
    problems = [p for d in dirs if (p := check_run(settings, d)) is not None]
    return len(dirs), problems
