"""Hand-built prediction stores with known predictions, for table and figure tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._core.config import variant_name
from bench.store.predictions import run_dir, write_run

# Four patients, all events at months 1 < 2 < 3 < 4: these risk orders give the C-index in the key.
RISKS = {
    1.0: [4.0, 3.0, 2.0, 1.0],
    5 / 6: [3.0, 4.0, 2.0, 1.0],  # one of six pairs discordant
    2 / 3: [3.0, 2.0, 4.0, 1.0],  # two discordant
    0.5: [2.0, 3.0, 4.0, 1.0],  # three discordant
}
TIMES = [1.0, 2.0, 3.0, 4.0]


def manifest(method: str, cohort: str, fold: int, seed: int = 0, overrides: Mapping[str, Any] | None = None, *,
             title: str | None = None, modality: str = "genomics", tie: str = "earliest", build: str = "mutsig",
             pathology: str | None = None, edges: Sequence[float] | None = None, imported: bool = False
             ) -> dict[str, Any]:
    """A minimal manifest of the shape `bench run` writes."""
    overrides = dict(overrides or {})
    m = {
        "survbench_manifest": 1,
        "key": {"method": method, "variant": variant_name(overrides), "config_hash": "hand", "cohort": cohort,
                "fold": fold, "seed": seed},
        "method": {"name": method, "title": title or method.upper(), "modality": modality, "selection": "best-val",
                   "tie": tie, "reimplementation": False},
        "config": {},
        "overrides": overrides,
        "data": {"genomics_build": build, "bin_edges": list(edges) if edges is not None else None,
                 "pathology": None if pathology is None else {"kind": pathology,
                                                              "synthetic": pathology == "synthetic"}},
        "epochs": [],
    }
    if imported:
        m["imported"] = {"file": "x.csv"}
    return m


def rows(case_ids: Sequence[str], times: Sequence[float], censorship: Sequence[int], risks: Sequence[float],
         epoch: int, split: str = "val", surv: np.ndarray | None = None) -> pd.DataFrame:
    df = pd.DataFrame({"case_id": list(case_ids), "epoch": epoch, "split": split,
                       "survival_months": np.asarray(times, dtype=float), "censorship": np.asarray(censorship),
                       "bin": 0, "risk": np.asarray(risks, dtype=float)})
    if surv is not None:
        for k in range(surv.shape[1]):
            df[f"surv_{k}"] = surv[:, k]
    return df


def add_run(results: Path, method: str, cohort: str, fold: int, frames: Sequence[pd.DataFrame], seed: int = 0,
            overrides: Mapping[str, Any] | None = None, **meta: Any) -> Path:
    """Store one fold of hand-made predictions (``frames`` concatenated) under the normal layout."""
    preds = pd.concat(frames, ignore_index=True)
    d = run_dir(results, method, variant_name(dict(overrides or {})), cohort, seed, fold)
    write_run(d, preds, manifest(method, cohort, fold, seed, overrides, **meta))
    return d


def add_cindex_run(results: Path, method: str, cohort: str, fold: int, cs: Sequence[float], seed: int = 0,
                   overrides: Mapping[str, Any] | None = None, **meta: Any) -> Path:
    """A fold whose epoch ``e`` (1-based) has validation C-index ``cs[e-1]`` (each one of ``RISKS``)."""
    ids = [f"{cohort}-F{fold}-P{i}" for i in range(4)]
    frames = [rows(ids, TIMES, [0, 0, 0, 0], RISKS[c], epoch=e + 1) for e, c in enumerate(cs)]
    return add_run(results, method, cohort, fold, frames, seed, overrides, **meta)


def add_cell(results: Path, method: str, cohort: str, per_fold: Sequence[Sequence[float]], seed: int = 0,
             overrides: Mapping[str, Any] | None = None, **meta: Any) -> None:
    """Folds 0..n-1 of one cell; ``per_fold[k]`` lists the per-epoch C-index of fold k."""
    for k, cs in enumerate(per_fold):
        add_cindex_run(results, method, cohort, k, cs, seed, overrides, **meta)
