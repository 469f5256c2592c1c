"""Feature folders laid out as the real releases are (flat, CLAM, one folder per encoder, TRIDENT), with tiny files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

TRIDENT = "20x_256px_0px_overlap"
LAYOUTS = ("flat", "clam", "encoder", "trident")


def write_h5(path: Path, x: np.ndarray, coords: bool = True) -> None:
    """A CLAM/TRIDENT-style .h5: ``features`` [N, D] and, with ``coords``, ``coords`` [N, 2]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["features"] = x
        if coords:
            f["coords"] = np.arange(2 * len(x), dtype=np.int32).reshape(len(x), 2)


def file_name(slide_id: str, naming: str, i: int = 0) -> str:
    """The file stem of a slide: its full name, its prefix (before the first dot), or alternately (``mixed``)."""
    prefix = slide_id.split(".", 1)[0]
    return {"full": slide_id, "prefix": prefix, "mixed": slide_id if i % 2 else prefix}[naming]


def files_folder(root: Path, layout: str, encoder: str = "uni_v1") -> Path:
    """Where ``layout`` puts the feature files under ``root`` (CLAM: its ``h5_files/``)."""
    return {"flat": root, "clam": root / "h5_files", "encoder": root / encoder,
            "trident": root / TRIDENT / f"features_{encoder}"}[layout]


def build_tree(cohort, root: Path, layout: str, *, encoder: str = "uni_v1", dim: int = 8, naming: str = "full",
               skip: tuple[str, ...] = (), seed: int = 0) -> dict[str, np.ndarray]:
    """One file per slide of ``cohort`` (but ``skip``) under ``root`` in ``layout``; the features by slide id.

    CLAM gets each slide twice (``h5_files/`` with coords and ``pt_files/``, the same features), TRIDENT a
    ``patches/`` folder of coords files beside its ``features_<encoder>/`` (not features: never read as such).
    """
    rng = np.random.default_rng(seed)
    folder = files_folder(root, layout, encoder)
    truth: dict[str, np.ndarray] = {}
    i = 0
    for slides in cohort.slides:
        for sid in slides:
            if sid in skip:
                continue
            x = rng.standard_normal((int(rng.integers(2, 5)), dim)).astype(np.float32)
            truth[sid] = x
            stem = file_name(sid, naming, i)
            write_h5(folder / f"{stem}.h5", x)
            if layout == "clam":
                (root / "pt_files").mkdir(parents=True, exist_ok=True)
                torch.save(torch.from_numpy(x), root / "pt_files" / f"{stem}.pt")
            if layout == "trident":
                write_h5(root / TRIDENT / "patches" / f"{stem}_patches.h5", np.zeros((len(x), 2), np.float32),
                         coords=False)
            i += 1
    return truth


def edit_table(settings, edit) -> None:
    """Rewrite the toy cohort's table through ``edit(DataFrame) -> DataFrame`` (the cohort is re-read on load)."""
    path = settings.data_dir / "genomics" / "mutsig" / "tcga_toy_all_clean.csv"
    df = edit(pd.read_csv(path))
    df.to_csv(path, index=False)


def add_other_cohort(settings, name: str = "tcga_oth", site: str = "OT") -> list[str]:
    """A second bundled table (``name``) whose patients are the toy ones under site code ``site``; its case ids."""
    src = settings.data_dir / "genomics" / "mutsig" / "tcga_toy_all_clean.csv"
    df = pd.read_csv(src)
    df["case_id"] = df["case_id"].str.replace("TCGA-TY-", f"TCGA-{site}-", regex=False)
    df["slide_id"] = df["slide_id"].str.replace("TCGA-TY-", f"TCGA-{site}-", regex=False)
    df.to_csv(src.with_name(f"{name}_all_clean.csv"), index=False)
    return list(dict.fromkeys(df["case_id"]))
