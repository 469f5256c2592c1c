"""Run manifests: everything needed to know how a stored prediction came to be.

A manifest records the run key (method, variant, config hash, cohort, fold, seed), the full resolved
config and the user's overrides, the data it saw (table, split file and feature store hashes, the
fitted time-bin edges, excluded patients; the split family, folder and file; the store's name, encoder and
dimension), the software (package versions, git commit) and the
machine, and the timing of every epoch.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._core.files import sha256_json
from bench._core.version import __version__
from bench.data.cohort import Cohort, Fold
from bench.data.features import describe_store
from bench.data.features.store import StoreInfo

PACKAGES = ("torch", "numpy", "pandas", "scipy", "scikit-learn", "scikit-survival", "lifelines", "h5py", "POT")


def data_identity(cohort: Cohort, fold: int, store: StoreInfo | None, inner_sha256: str | None = None
                  ) -> dict[str, Any]:
    """What a run's inputs are, as hashes: the table, the fold's split file, the feature store and, under
    ``selection=inner``, the fold's inner split file (absent otherwise, so earlier runs keep their hash)."""
    identity = {
        "cohort": cohort.name,
        "genomics_build": cohort.build,
        "table_sha256": cohort.hashes["table"],
        "split_sha256": cohort.hashes[f"splits_{fold}"],
        "features_fingerprint": store.fingerprint if store is not None else None,
    }
    if inner_sha256 is not None:
        identity["inner_sha256"] = inner_sha256
    return identity


def data_hash(identity: Mapping[str, Any]) -> str:
    return sha256_json(dict(identity))[:12]


@functools.cache
def versions() -> dict[str, str]:
    """Versions of Python, survbench and the packages a result depends on."""
    out = {"python": sys.version.split()[0], "survbench": __version__}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


@functools.cache
def git_state(root: str) -> dict[str, Any]:
    """The project's git commit and whether tracked files differ from it."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


def machine(device: torch.device) -> dict[str, Any]:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "device": str(device), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to the project root when it lies under it (manifests hold no machine paths there)."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def build_manifest(
    *,
    key: Mapping[str, Any],
    method: Any,
    config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    cohort: Cohort,
    fold: Fold,
    store: StoreInfo | None,
    excluded: list[str],
    n_train: int,
    n_val: int,
    device: torch.device,
    root: Path,
    epochs: list[Any],
    seconds: float,
    resumed_from: int = 0,
    placement: str | None = None,
    memory_share: float | None = None,
    inner_sha256: str | None = None,
    inner_patients: list[str] | None = None,
) -> dict[str, Any]:
    """The manifest of one finished run (see module docstring)."""
    identity = data_identity(cohort, fold.k, store, inner_sha256)
    return {
        "survbench_manifest": 1,
        "key": dict(key),
        "method": {"name": method.name, "title": method.title, "modality": method.modality, "source": method.source,
                   "selection": method.selection, "tie": method.tie, "reimplementation": method.reimplementation},
        "config": dict(config),
        "overrides": dict(overrides),
        "data": {
            **identity,
            "data_hash": data_hash(identity),
            "table": _shown(cohort.table, root),
            "split_file": cohort.splits[fold.k].path.name,
            "splits": cohort.split_kind,
            "split_folder": _shown(cohort.split_dir, root),
            "n_train": n_train,
            "n_val": n_val,
            "excluded_patients": excluded,
            "bins_fitted_on": fold.bins_fitted_on,
            "bin_edges": np.asarray(fold.edges).round(6).tolist(),
            "pathology": store.describe() if store is not None else None,
            "store": describe_store(store),
            **({"inner_file": f"inner_{fold.k}.csv", "n_inner": len(inner_patients),
                "inner_patients": inner_patients} if inner_patients is not None else {}),
        },
        "environment": {**versions(), "git": git_state(str(root)),
                        "machine": {**machine(device), "feature_placement": placement,
                                    **({"feature_memory_share": memory_share} if memory_share is not None else {})}},
        "timing": {"wall_seconds": round(seconds, 3),
                   "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                   "resumed_from_epoch": resumed_from},
        "epochs": [
            {"epoch": e.epoch, "train_loss": round(e.train_loss, 6), "aux": {k: round(v, 6) for k, v in e.aux.items()},
             "val_cindex": e.val_cindex, "seconds": round(e.seconds, 3)}
            for e in epochs
        ],
    }
