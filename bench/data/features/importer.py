"""Import users' real patch features (CLAM ``.pt`` tensors, CLAM/TRIDENT ``.h5``) into a store.

The folder may be in any layout of :mod:`bench.data.features.layouts` (flat, CLAM sub-folders, one folder per
encoder, TRIDENT); files are matched to the cohort's slides by full slide name or its prefix.
:func:`feature_coverage` says, from file headers alone, which patients and slides (per fold) the folder covers;
``bench data coverage`` prints it and ``bench data import`` prints it before importing. Every slide of the
cohort (or every diagnostic slide, with ``slides="dx"``) must be found; with ``allow_missing`` the patients
that lack a slide are dropped and recorded in the store.
A slide found in several files (``X.pt`` and ``X.h5``, ``pt_files/`` and ``h5_files/``) is imported
once if they hold the same features (the copy with coords is used), else it is an error naming them.
Checked before anything is written: readable HDF5 files, real-valued 2-D features, one dimension, no
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
from bench.data.cohort import Cohort, short_name
from bench.data.features.layouts import (
    SUBFOLDERS,
    Layout,
    SlideMatch,
    check_unambiguous,
    discover_layout,
    find_feature_files,
    foreign_files_message,
    match_slides,
    wanted_slides,
)
from bench.data.features.store import SlideFeatures, StoreInfo, write_store

__all__ = ["SUBFOLDERS", "Coverage", "SourceFile", "feature_coverage", "find_feature_files", "import_features"]


@dataclass
class SourceFile:
    slide_id: str
    case_id: str
    path: Path
    n: int = 0
    dim: int = 0
    has_coords: bool = False
    copies: list[SourceFile] = field(default_factory=list)  # other files of the slide: must hold the same


def _real_dtype(src: SourceFile, name: str, kind: str) -> None:
    """Refuse features that are not real numbers (complex, boolean, strings): casting would lose or invent data."""
    if kind not in "fiu":
        what = f"complex-valued ({name})" if kind == "c" else name
        raise BenchError(f"{src.path}: slide {src.slide_id} of patient {src.case_id} has {what} features, expected "
                         "real numbers (float16/32/64); re-extract the slide")


def _probe(src: SourceFile) -> None:
    """Read a file's shape (and whether it has coords) without loading its features."""
    if src.path.suffix == ".h5" and not h5py.is_hdf5(src.path):
        raise BenchError(f"{src.path} is not an HDF5 file (slide {src.slide_id} of patient {src.case_id}); "
                         "re-extract the slide, or move the file out and use --allow-missing-slides")
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


@dataclass
class Coverage:
    """Which patients and slides of a cohort a feature folder covers, per fold, read from file headers only."""

    cohort: Cohort
    layout: Layout
    match: SlideMatch
    slides: str  # "all" or "dx"
    wanted: list[list[str]]  # each patient's slides to import
    sources: dict[str, SourceFile]  # wanted slide id -> its (first) file, probed
    dim: int | None

    @property
    def covered(self) -> np.ndarray:
        """Per patient: every slide to import has a file (patients without one are dropped at import)."""
        return np.array([bool(sl) and all(s in self.sources for s in sl) for sl in self.wanted], dtype=bool)

    @property
    def missing_slides(self) -> list[tuple[str, str]]:
        """(patient, slide) of each slide to import that has no file."""
        return [(c, s) for c, sl in zip(self.cohort.case_ids, self.wanted, strict=True) for s in sl
                if s not in self.sources]

    @property
    def no_slide(self) -> list[str]:
        """Patients with no slide to import (with ``slides="dx"``: no diagnostic slide in the table)."""
        return [c for c, sl in zip(self.cohort.case_ids, self.wanted, strict=True) if not sl]

    @property
    def skipped(self) -> list[str]:
        """Slides with a file that are not imported (not diagnostic, with ``slides="dx"``)."""
        keep = {s for sl in self.wanted for s in sl}
        return sorted(s for s in self.match.files if s not in keep)

    @property
    def encoder(self) -> str | None:
        return self.layout.encoder

    @property
    def formats(self) -> list[str]:
        return sorted({s.path.suffix for s in self.sources.values()})

    def _counts(self, idx: np.ndarray) -> dict[str, int]:
        cov = self.covered
        return {"patients_covered": int(cov[idx].sum()), "patients": len(idx),
                "slides_covered": sum(s in self.sources for i in idx for s in self.wanted[i]),
                "slides": sum(len(self.wanted[i]) for i in idx)}

    def folds(self) -> list[dict[str, int | str]]:
        """One row per fold and part (train, val) of the cohort's fixed splits."""
        return [{"fold": sp.k, "split": part, **self._counts(idx)}
                for sp in self.cohort.splits for part, idx in (("train", sp.train), ("val", sp.val))]

    def record(self) -> dict:
        """Everything, as JSON-ready values (all missing patients, slides and unmatched files)."""
        cov = self.covered
        return {
            "cohort": self.cohort.name,
            "folder": str(self.layout.folder),
            "layout": self.layout.kind,
            "encoder": self.encoder,
            "dim": self.dim,
            "formats": self.formats,
            "selection": self.slides,  # all or dx
            **self._counts(np.arange(self.cohort.n_patients)),
            "files": self.match.n_files,
            "folds": self.folds(),
            "missing_patients": [c for c, ok in zip(self.cohort.case_ids, cov, strict=True) if not ok],
            "missing_slides": [s for _, s in self.missing_slides],
            "patients_without_slides": self.no_slide,
            "skipped_slides": self.skipped,
            "unmatched_files": [str(p) for p in self.match.unmatched],
            "ambiguities": self.match.ambiguities,
        }


def feature_coverage(cohort: Cohort, folder: Path, *, encoder: str | None = None, slides: str = "all",
                     expected_dim: int | None = None) -> Coverage:
    """How far the feature folder ``folder`` covers ``cohort``; reads file headers (shapes), never the features.

    Args:
        cohort: the cohort whose slides are looked for.
        folder: the folder given (``--features``), in any layout of :mod:`bench.data.features.layouts`.
        encoder: the encoder folder to read, where the folder holds several.
        slides: ``all`` or ``dx`` (diagnostic slides only).
        expected_dim: the dimension every file must have (``--dim``); default: the first file's.

    Raises:
        BenchError: a layout error, an unreadable or non-HDF5 file, files of two dimensions.
    """
    _check_expected_dim(expected_dim)
    layout = discover_layout(Path(folder), encoder)
    match = match_slides(cohort, layout.files)
    wanted = wanted_slides(cohort, slides)
    sources: dict[str, SourceFile] = {}
    for case_id, sl in zip(cohort.case_ids, wanted, strict=True):
        for s in sl:
            if s in match.files:
                src = SourceFile(slide_id=s, case_id=case_id, path=match.files[s][0])
                _probe(src)
                sources[s] = src
    first = next(iter(sources.values()), None)
    _check_dims(list(sources.values()), expected_dim)
    return Coverage(cohort, layout, match, slides, wanted, sources, first.dim if first else None)


def _check_expected_dim(expected_dim: int | None) -> None:
    if expected_dim is not None and expected_dim < 1:
        raise BenchError(f"bad --dim {expected_dim}: the feature dimension is a positive number (e.g. 1024); "
                         "leave --dim out to take it from the files")


def _check_dims(sources: list[SourceFile], expected_dim: int | None) -> None:
    """One dimension in all files (``expected_dim`` where given), else an error naming two files and their D."""
    for src in sources:
        dim = expected_dim if expected_dim is not None else sources[0].dim
        if src.dim != dim:
            ref = f"--dim {expected_dim}" if expected_dim else f"{sources[0].path} ({sources[0].dim}-d)"
            raise BenchError(f"feature dimension mismatch: {src.path} has {src.dim}-d features, expected {dim} "
                             f"as {ref}; all slides must come from one encoder: keep one encoder's files in the "
                             "folder")


def import_features(
    cohort: Cohort,
    folder: Path,
    dest: Path,
    *,
    encoder: str | None = None,
    allow_missing: bool = False,
    expected_dim: int | None = None,
    dtype: str = "float16",
    slides: str = "all",
    coverage: Coverage | None = None,
    notify: Callable[[str], None] | None = None,
) -> StoreInfo:
    """Convert a folder of per-slide feature files into the cohort's contiguous store at ``dest``.

    Args:
        cohort: the cohort the slides belong to.
        folder: the folder given, in any layout of :mod:`bench.data.features.layouts`.
        dest: the store to write (atomically: nothing is left behind on an error).
        encoder: the encoder folder to read where there are several (by name or path under ``folder``); the
            name recorded is the encoder folder's, else ``encoder``, else ``unknown``.
        allow_missing: drop the patients lacking a slide (recorded in the store) instead of refusing.
        expected_dim: the feature dimension the files must have.
        dtype: the stored dtype (float16 or float32), recorded in the store.
        slides: ``all``, or ``dx`` for the diagnostic slides only (recorded in the store's params).
        coverage: :func:`feature_coverage` of the same arguments, if already computed (the CLI prints it).
        notify: receives a line about anything resolved on the way (slides found in several identical files).
    """
    _check_expected_dim(expected_dim)
    cov = coverage if coverage is not None else feature_coverage(cohort, folder, encoder=encoder, slides=slides,
                                                                      expected_dim=expected_dim)
    check_unambiguous(cov.match)
    files = cov.match.files
    if not files and cov.layout.files:
        raise BenchError(foreign_files_message(cohort, cov.layout.folder, cov.layout.files))
    missing = cov.missing_slides
    dropped = [c for c, ok in zip(cohort.case_ids, cov.covered, strict=True) if not ok]
    if missing and not allow_missing:
        shown = "; ".join(f"{s} (patient {c})" for c, s in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise BenchError(f"{len(missing)} slide(s) of {cohort.name} have no feature file in {folder}: {shown}{more}. "
                         "Extract them, or pass --allow-missing-slides to drop those patients (recorded in the store)")
    if cov.no_slide and not allow_missing:
        shown = ", ".join(cov.no_slide[:10]) + (f" and {len(cov.no_slide) - 10} more" if len(cov.no_slide) > 10 else "")
        raise BenchError(f"{len(cov.no_slide)} patient(s) of {short_name(cohort.name)} have no diagnostic slide (-DX) "
                         f"in the table: {shown}; pass --allow-missing-slides to drop them (recorded in the store) or "
                         "--slides all")
    covered = [(c, sl) for c, sl, ok in zip(cohort.case_ids, cov.wanted, cov.covered, strict=True) if ok]
    if not covered:
        raise BenchError(f"no feature files for any slide of {cohort.name} in {folder}")
    sources = [_choose(s, c, files[s]) for c, sl in covered for s in sl]
    _check_dims(sources, expected_dim)
    dim = sources[0].dim
    with_coords = all(s.has_coords for s in sources)

    def slide_features() -> Iterator[SlideFeatures]:
        for src in sources:
            x, c = _read_checked(src, dtype)
            yield SlideFeatures(src.slide_id, x, c if with_coords else None)

    params = {"files": len(sources), "format": sorted({s.path.suffix for s in sources})}
    if cov.layout.kind != "flat":
        params["layout"] = f"{cov.layout.kind}:{cov.layout.relative}"
    if cov.slides != "all":
        params["slides"] = cov.slides
    info = write_store(
        dest,
        cohort.name,
        slide_features(),
        total_patches=sum(s.n for s in sources),
        dim=dim,
        synthetic=False,
        source=str(cov.layout.folder.resolve()),
        encoder=cov.encoder or encoder or "unknown",
        params=params,
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
