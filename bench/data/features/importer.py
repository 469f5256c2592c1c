"""Import users' real patch features (CLAM ``.pt`` tensors, CLAM/TRIDENT ``.h5``) into a store.

Files are matched by slide id (the table's ``slide_id`` without ``.svs``) in the given folder and
in its ``pt_files/``, ``h5_files/`` and ``features/`` sub-folders. Every slide of the cohort must be
found; with ``allow_missing`` the patients that lack a slide are dropped and recorded in the store.
A slide found in several files (``X.pt`` and ``X.h5``, ``pt_files/`` and ``h5_files/``) is imported
once if they hold the same features (the copy with coords is used), else it is an error naming them.
Checked before anything is written: readable files, real-valued 2-D features, one dimension, no
empty bag, coords of shape [N, 2]; while writing (into a temporary file): the same content in every
copy of a slide, no NaN/inf and no value too large for the stored dtype, each reported with the
slide and patient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from bench._core.errors import BenchError
from bench.data.cohort import Cohort
from bench.data.features.store import SlideFeatures, StoreInfo, write_store

SUBFOLDERS = ("", "pt_files", "h5_files", "features")


@dataclass
class SourceFile:
    slide_id: str
    case_id: str
    path: Path
    n: int = 0
    dim: int = 0
    has_coords: bool = False
    copies: list[SourceFile] = field(default_factory=list)  # other files of the slide: must hold the same


def find_feature_files(folder: Path) -> dict[str, list[Path]]:
    """slide id -> its feature files, ``.h5`` first (they also carry coords), then in folder order."""
    if not folder.is_dir():
        raise BenchError(f"feature folder {folder} does not exist")
    found: dict[str, list[Path]] = {}
    for ext in (".h5", ".pt"):
        for sub in SUBFOLDERS:
            d = folder / sub if sub else folder
            if not d.is_dir():
                continue
            for p in sorted(d.glob(f"*{ext}")):
                stem = p.name[: -len(ext)]
                if stem.lower().endswith(".svs"):
                    stem = stem[:-4]
                found.setdefault(stem, []).append(p)
    return found


def _real_dtype(src: SourceFile, name: str, kind: str) -> None:
    """Refuse features that are not real numbers (complex, boolean, strings): casting would lose or invent data."""
    if kind not in "fiu":
        what = f"complex-valued ({name})" if kind == "c" else name
        raise BenchError(f"{src.path}: slide {src.slide_id} of patient {src.case_id} has {what} features, expected "
                         "real numbers (float16/32/64); re-extract the slide")


def _probe(src: SourceFile) -> None:
    """Read a file's shape (and whether it has coords) without loading its features."""
    try:
        if src.path.suffix == ".h5":
            with h5py.File(src.path, "r") as f:
                if "features" not in f:
                    raise BenchError(f"{src.path} has no 'features' dataset (CLAM/TRIDENT .h5 files have one)")
                shape = f["features"].shape
                _real_dtype(src, f["features"].dtype.name, f["features"].dtype.kind)
                src.has_coords = "coords" in f
                coords = (f["coords"].shape, f["coords"].dtype.kind) if src.has_coords else None
        else:
            t = torch.load(src.path, map_location="cpu", weights_only=True, mmap=True)
            if not isinstance(t, torch.Tensor):
                raise BenchError(f"{src.path} holds a {type(t).__name__}, expected an N x D tensor")
            shape = tuple(t.shape)
            kind = "c" if t.is_complex() else "b" if t.dtype == torch.bool else "f"
            _real_dtype(src, str(t.dtype).removeprefix("torch."), kind)
            coords = None
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
    if shape[1] == 0:
        raise BenchError(f"{src.path}: slide {src.slide_id} of patient {src.case_id} has features of shape {shape}, "
                         "with no feature columns; re-extract the slide")
    src.n, src.dim = int(shape[0]), int(shape[1])
    if coords is not None:
        cshape = tuple(coords[0])
        flat = cshape[1:] if len(cshape) == 3 and cshape[0] == 1 else cshape
        if flat != (src.n, 2) or coords[1] not in "fiu":
            raise BenchError(f"{src.path}: coords have shape {cshape} for features of shape {shape} (slide "
                             f"{src.slide_id}); coords must be [N, 2] numbers with the features' N ({src.n}); "
                             "re-extract the slide")


def _read(src: SourceFile, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A slide's features (and coords, if any), checked to be finite and to fit ``dtype``, the store's."""
    try:
        if src.path.suffix == ".h5":
            with h5py.File(src.path, "r") as f:
                x = np.asarray(f["features"][...])
                c = np.asarray(f["coords"][...]).reshape(src.n, 2) if "coords" in f else None
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
    largest = np.abs(x).max()
    # rounding is monotone: the store overflows exactly when the largest magnitude does
    with np.errstate(over="ignore"):
        overflows = not np.isfinite(np.asarray(largest).astype(dtype))
    if overflows:
        fix = ("import with --dtype float32 to store them as they are" if np.dtype(dtype) == np.float16 else
               "re-extract the slide")
        raise BenchError(f"{src.path}: slide {src.slide_id} of patient {src.case_id} has values up to {largest:g} "
                         f"in magnitude, beyond the largest {dtype} ({np.finfo(dtype).max:g}); {fix}")
    return x, c


def _choose(slide_id: str, case_id: str, paths: list[Path]) -> SourceFile:
    """The file a slide is imported from; its other files become ``copies`` (read and compared when written)."""
    found = [SourceFile(slide_id=slide_id, case_id=case_id, path=p) for p in paths]
    for src in found:
        _probe(src)
    found.sort(key=lambda s: not s.has_coords)  # stable: .h5 first, then folder order
    src, src.copies = found[0], found[1:]
    for other in src.copies:
        if (other.n, other.dim) != (src.n, src.dim):
            raise _differ(src, other, f"{src.n} x {src.dim} vs {other.n} x {other.dim} features")
    return src


def _differ(src: SourceFile, other: SourceFile, what: str) -> BenchError:
    return BenchError(f"slide {src.slide_id} of patient {src.case_id} is in two feature files with different "
                      f"content ({what}): {src.path} and {other.path}; keep the right one and move the other out "
                      "of the feature folder")


def _read_checked(src: SourceFile, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_read` of the slide's file, after checking that every copy of it holds the same features."""
    x, c = _read(src, dtype)
    for other in src.copies:
        ox, oc = _read(other, dtype)
        if not np.array_equal(x, ox):
            raise _differ(src, other, "different feature values")
        if c is not None and oc is not None and not np.array_equal(c, oc):
            raise _differ(src, other, "different coords")
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
    notify: Callable[[str], None] | None = None,
) -> StoreInfo:
    """Convert a folder of per-slide feature files into the cohort's contiguous store at ``dest``.

    ``dtype`` (float16 or float32) is the stored dtype, recorded in the store; ``notify`` receives a line
    about anything resolved on the way (slides found in several identical files).
    """
    if expected_dim is not None and expected_dim < 1:
        raise BenchError(f"bad --dim {expected_dim}: the feature dimension is a positive number (e.g. 1024); "
                         "leave --dim out to take it from the files")
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
        sources += [SourceFile(slide_id=s, case_id=case_id, path=files[s][0]) for s in slide_ids]
    if missing and not allow_missing:
        shown = "; ".join(f"{s} (patient {c})" for c, s in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise BenchError(f"{len(missing)} slide(s) of {cohort.name} have no feature file in {folder}: {shown}{more}. "
                         "Extract them, or pass --allow-missing-slides to drop those patients (recorded in the store)")
    if not sources:
        raise BenchError(f"no feature files for any slide of {cohort.name} in {folder}")
    sources = [_choose(s.slide_id, s.case_id, files[s.slide_id]) for s in sources]
    dim = expected_dim if expected_dim is not None else sources[0].dim
    for src in sources:
        if src.dim != dim:
            ref = f"--dim {expected_dim}" if expected_dim else f"{sources[0].path.name} ({sources[0].dim})"
            raise BenchError(f"feature dimension mismatch: {src.path} has {src.dim}-d features, expected {dim} "
                             f"as {ref}; all slides must come from one encoder")
    with_coords = all(s.has_coords for s in sources)

    def slides() -> Iterator[SlideFeatures]:
        for src in sources:
            x, c = _read_checked(src, dtype)
            yield SlideFeatures(src.slide_id, x, c if with_coords else None)

    info = write_store(
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
    copied = [s for s in sources if s.copies]
    if copied and notify is not None:
        first = copied[0]
        notify(f"{len(copied)} slide(s) are in more than one feature file with the same content (e.g. {first.path} "
               f"and {first.copies[0].path}); imported each once, from the copy with coords where there is one")
    return info
