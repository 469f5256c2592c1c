"""Import users' real patch features (CLAM ``.pt`` tensors, CLAM/TRIDENT ``.h5``) into a store.

Files are matched by slide id (the table's ``slide_id`` without ``.svs``) in the given folder and
in its ``pt_files/``, ``h5_files/`` and ``features/`` sub-folders. Every slide of the cohort must be
found; with ``allow_missing`` the patients that lack a slide are dropped and recorded in the store.
Everything is checked before anything is written: readable files, 2-D features, one dimension,
no empty bag; NaN/inf is reported with the slide and patient.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from bench.cohort import Cohort
from bench.errors import BenchError
from bench.features.store import SlideFeatures, StoreInfo, write_store

SUBFOLDERS = ("", "pt_files", "h5_files", "features")


@dataclass
class SourceFile:
    slide_id: str
    case_id: str
    path: Path
    n: int = 0
    dim: int = 0
    has_coords: bool = False


def find_feature_files(folder: Path) -> dict[str, Path]:
    """slide id -> feature file; ``.h5`` preferred over ``.pt`` (it also carries coords)."""
    if not folder.is_dir():
        raise BenchError(f"feature folder {folder} does not exist")
    found: dict[str, Path] = {}
    for sub in SUBFOLDERS:
        d = folder / sub if sub else folder
        if not d.is_dir():
            continue
        for ext in (".h5", ".pt"):
            for p in sorted(d.glob(f"*{ext}")):
                stem = p.name[: -len(ext)]
                if stem.lower().endswith(".svs"):
                    stem = stem[:-4]
                if stem not in found or (found[stem].suffix == ".pt" and ext == ".h5"):
                    found[stem] = p
    return found


def _probe(src: SourceFile) -> None:
    """Read a file's shape (and whether it has coords) without loading its features."""
    try:
        if src.path.suffix == ".h5":
            with h5py.File(src.path, "r") as f:
                if "features" not in f:
                    raise BenchError(f"{src.path} has no 'features' dataset (CLAM/TRIDENT .h5 files have one)")
                shape = f["features"].shape
                src.has_coords = "coords" in f
        else:
            t = torch.load(src.path, map_location="cpu", weights_only=True, mmap=True)
            if not isinstance(t, torch.Tensor):
                raise BenchError(f"{src.path} holds a {type(t).__name__}, expected an N x D tensor")
            shape = tuple(t.shape)
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(f"feature file {src.path} (slide {src.slide_id}, patient {src.case_id}) is unreadable: "
                         f"{exc}; re-extract it or remove the slide and use --allow-missing-slides") from exc
    shape = tuple(shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise BenchError(f"{src.path}: features have shape {shape}, expected N x D")
    if shape[0] == 0:
        raise BenchError(f"{src.path}: slide {src.slide_id} of patient {src.case_id} has no patches")
    src.n, src.dim = int(shape[0]), int(shape[1])


def _read(src: SourceFile) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        if src.path.suffix == ".h5":
            with h5py.File(src.path, "r") as f:
                x = np.asarray(f["features"][...])
                c = np.asarray(f["coords"][...]) if "coords" in f else None
        else:
            t = torch.load(src.path, map_location="cpu", weights_only=True)
            x, c = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy(), None
    except Exception as exc:
        raise BenchError(f"feature file {src.path} (slide {src.slide_id}) is unreadable: {exc}") from exc
    x = x.reshape(src.n, src.dim)
    if not np.isfinite(x).all():
        row, col = map(int, np.argwhere(~np.isfinite(x))[0])
        raise BenchError(f"{src.path}: slide {src.slide_id} of patient {src.case_id} has {x[row, col]} at patch {row}, "
                         f"feature {col}; re-extract the slide")
    return x, c


def import_features(
    cohort: Cohort,
    folder: Path,
    dest: Path,
    *,
    encoder: str = "unknown",
    allow_missing: bool = False,
    expected_dim: int | None = None,
    dtype: str = "float16",
) -> StoreInfo:
    """Convert a folder of per-slide feature files into the cohort's contiguous store at ``dest``."""
    files = find_feature_files(folder)
    sources: list[SourceFile] = []
    missing: list[tuple[str, str]] = []
    dropped: list[str] = []
    for case_id, slide_ids in zip(cohort.case_ids, cohort.slides, strict=True):
        lacking = [s for s in slide_ids if s not in files]
        if lacking:
            missing += [(case_id, s) for s in lacking]
            dropped.append(case_id)
            continue
        sources += [SourceFile(slide_id=s, case_id=case_id, path=files[s]) for s in slide_ids]
    if missing and not allow_missing:
        shown = "; ".join(f"{s} (patient {c})" for c, s in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise BenchError(f"{len(missing)} slide(s) of {cohort.name} have no feature file in {folder}: {shown}{more}. "
                         "Extract them, or pass --allow-missing-slides to drop those patients (recorded in the store)")
    if not sources:
        raise BenchError(f"no feature files for any slide of {cohort.name} in {folder}")
    for src in sources:
        _probe(src)
    dim = expected_dim or sources[0].dim
    for src in sources:
        if src.dim != dim:
            ref = f"--dim {expected_dim}" if expected_dim else f"{sources[0].path.name} ({sources[0].dim})"
            raise BenchError(f"feature dimension mismatch: {src.path} has {src.dim}-d features, expected {dim} "
                             f"as {ref}; all slides must come from one encoder")
    with_coords = all(s.has_coords for s in sources)

    def slides() -> Iterator[SlideFeatures]:
        for src in sources:
            x, c = _read(src)
            yield SlideFeatures(src.slide_id, x, c if with_coords else None)

    return write_store(
        dest,
        cohort.name,
        slides(),
        total_patches=sum(s.n for s in sources),
        dim=dim,
        synthetic=False,
        source=str(folder.resolve()),
        encoder=encoder,
        params={"files": len(sources), "format": sorted({s.path.suffix for s in sources})},
        dropped_patients=dropped if allow_missing else [],
        dtype=dtype,
        with_coords=with_coords,
    )
