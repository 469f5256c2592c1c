"""Where a release's feature files are and which slide of a cohort each one holds.

Layouts (:func:`discover_layout`), checked in this order under the folder given (``--features``):

- flat: ``<root>/<slide>.h5|.pt``, and CLAM's ``pt_files/``, ``h5_files/`` and ``features/`` sub-folders;
- one folder per encoder: ``<root>/<encoder>/<slide>.h5`` (each may have the CLAM sub-folders);
- TRIDENT: ``<root>/<mag>x_<size>px_<overlap>px_overlap/features_<encoder>/<slide>.h5``; ``<root>`` may
  also be the ``..._overlap`` folder or a ``features_<encoder>`` folder itself.

The encoder's name comes from the folder (``<encoder>``, ``features_<encoder>``); several encoder folders
under one root need ``--encoder NAME``. Files are matched (:func:`match_slides`) to the cohort's slide ids by
the full TCGA slide name (``TCGA-XX-XXXX-01Z-00-DX1.<UUID>``) or by its prefix (``TCGA-XX-XXXX-01Z-00-DX1``),
case-insensitively; a file whose prefix fits two slides, and a slide named by two different files, are errors
naming them. Copies of one slide under the same name (``X.h5`` and ``X.pt``, ``h5_files/`` and ``pt_files/``)
are grouped: the importer checks they hold the same features.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench._core.errors import BenchError
from bench.data.cohort import Cohort, short_name

SUBFOLDERS = ("", "pt_files", "h5_files", "features")
EXTENSIONS = (".h5", ".pt")
#: TRIDENT's patching folder, e.g. ``20x_256px_0px_overlap``.
TRIDENT_PATCHING = re.compile(r"^\d+(\.\d+)?x_\d+px_\d+px_overlap$")
TRIDENT_FEATURES = "features_"
#: Folders of patching/segmentation outputs (CLAM, TRIDENT) that hold coords or images, not features.
NOT_FEATURES = frozenset({"patches", "masks", "stitches", "visualization", "thumbnails", "contours"})
SLIDE_CHOICES = ("all", "dx")


@dataclass
class Layout:
    """The folder a release's features are read from, how it was found, and the files in it."""

    root: Path  # the folder given
    folder: Path  # the folder holding the files (root, an encoder folder or a TRIDENT features_<encoder>)
    kind: str  # "flat", "encoder" or "trident"
    encoder: str | None  # from the folder name; None for a flat folder of no telling name
    files: dict[str, list[Path]]  # file stem -> its files, .h5 first

    @property
    def relative(self) -> str:
        """The files' folder relative to the root (``.`` for a flat folder)."""
        return str(self.folder.relative_to(self.root)) if self.folder != self.root else "."


@dataclass
class SlideMatch:
    """The files of a cohort's slides (one name per slide; copies under that name grouped), and the rest."""

    files: dict[str, list[Path]]  # slide id -> its files
    unmatched: list[Path]  # files matching no slide of the cohort
    ambiguities: list[str]  # one sentence per ambiguity, naming the files and slides
    n_files: int = 0  # feature files in the layout's folder
    how: dict[str, str] = field(default_factory=dict)  # slide id -> "full" or "prefix" (how its file is named)


def find_feature_files(folder: Path) -> dict[str, list[Path]]:
    """File stem (without ``.svs``) -> its feature files in ``folder`` and its CLAM sub-folders, ``.h5`` first
    (they also carry coords), then in folder order."""
    if not folder.is_dir():
        raise BenchError(f"feature folder {folder} does not exist")
    found: dict[str, list[Path]] = {}
    for ext in EXTENSIONS:
        for sub in SUBFOLDERS:
            d = folder / sub if sub else folder
            if not d.is_dir():
                continue
            for p in sorted(d.glob(f"*{ext}")):
                if p.name.startswith(".") or not p.is_file():
                    continue
                stem = p.name[: -len(ext)]
                if stem.lower().endswith(".svs"):
                    stem = stem[:-4]
                found.setdefault(stem, []).append(p)
    return found


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _encoder_name(folder: Path) -> str:
    return folder.name.removeprefix(TRIDENT_FEATURES) if folder.name.startswith(TRIDENT_FEATURES) else folder.name


def _encoder_folders(root: Path) -> list[Layout]:
    """The encoder folders under ``root`` (one per encoder, or TRIDENT's), each with its files."""
    in_patching = bool(TRIDENT_PATCHING.match(root.name))  # root is TRIDENT's <mag>x_<size>px_<overlap>px_overlap
    patching = [root] if in_patching else []
    out: list[Layout] = []
    for d in _subdirs(root):
        if TRIDENT_PATCHING.match(d.name):
            patching.append(d)
        elif d.name in SUBFOLDERS or d.name in NOT_FEATURES or (in_patching and d.name.startswith(TRIDENT_FEATURES)):
            continue
        elif files := find_feature_files(d):
            out.append(Layout(root, d, "encoder", _encoder_name(d), files))
    for p in patching:
        for d in _subdirs(p):
            if d.name.startswith(TRIDENT_FEATURES) and (files := find_feature_files(d)):
                out.append(Layout(root, d, "trident", _encoder_name(d), files))
    return out


def discover_layout(root: Path, encoder: str | None = None) -> Layout:
    """The folder of feature files under ``root`` (see the module docstring), for ``encoder`` where given.

    Raises:
        BenchError: no feature files; files both directly under ``root`` and in encoder folders; several
            encoder folders and no ``encoder``; no folder of ``encoder``; ``encoder`` in several folders.
    """
    root = Path(root)
    direct = find_feature_files(root)
    folders = _encoder_folders(root)
    if direct and folders:
        first = next(iter(direct.values()))[0]
        raise BenchError(f"{root} holds feature files both directly (e.g. {first.name}) and in encoder folders "
                         f"({', '.join(x.relative for x in folders)}); point --features at one folder of one encoder")
    if direct:
        named = _encoder_name(root) if root.name.startswith(TRIDENT_FEATURES) else None
        if encoder is not None and named is not None and named != encoder:
            raise BenchError(f"{root} holds features of encoder {named} (by its name), not {encoder}; drop --encoder "
                             f"or pass --encoder {named}")
        kind = "trident" if named is not None and TRIDENT_PATCHING.match(root.parent.name) else "flat"
        return Layout(root, root, kind, named, direct)
    if not folders:
        raise BenchError(f"no feature files (.h5 or .pt) in {root} or its sub-folders; expected <slide>.h5 files "
                         "there, in <encoder>/ folders or in TRIDENT's <mag>x_<size>px_<overlap>px_overlap/"
                         "features_<encoder>/ folders")
    listing = ", ".join(f"{x.encoder} ({x.relative})" for x in folders)
    if encoder is None:
        if len(folders) > 1:
            raise BenchError(f"{root} holds features of {len(folders)} encoders: {listing}; choose one with "
                             "--encoder NAME")
        return folders[0]
    chosen = [x for x in folders if encoder in (x.encoder, x.relative)]
    if not chosen:
        raise BenchError(f"no features of encoder {encoder} in {root}; encoders found: {listing}")
    if len(chosen) > 1:
        raise BenchError(f"encoder {encoder} has features in {len(chosen)} folders of {root} "
                         f"({', '.join(x.relative for x in chosen)}); pass --encoder with one of these folders")
    return chosen[0]


def slide_prefix(slide_id: str) -> str:
    """``TCGA-XX-XXXX-01Z-00-DX1.<UUID>`` -> ``TCGA-XX-XXXX-01Z-00-DX1`` (the name before the first dot)."""
    return slide_id.split(".", 1)[0]


def is_diagnostic(slide_id: str) -> bool:
    """A diagnostic (formalin-fixed) slide: ``-DX`` in its TCGA name (frozen sections are ``-TS``/``-BS``/``-MS``)."""
    return "-DX" in slide_prefix(slide_id).upper()


def check_slides(slides: str) -> str:
    """``--slides``: ``all`` or ``dx`` (diagnostic slides only)."""
    if slides not in SLIDE_CHOICES:
        raise BenchError(f"bad --slides {slides!r}: all (every slide of the table) or dx (diagnostic slides only, "
                         "-DX in the slide name)")
    return slides


def wanted_slides(cohort: Cohort, slides: str = "all") -> list[list[str]]:
    """Each patient's slides to import: all of them, or the diagnostic ones with ``slides="dx"``."""
    check_slides(slides)
    if slides == "all":
        return [list(s) for s in cohort.slides]
    return [[s for s in sl if is_diagnostic(s)] for sl in cohort.slides]


def match_slides(cohort: Cohort, files: dict[str, list[Path]]) -> SlideMatch:
    """Match file stems to the cohort's slide ids, by full slide name or by its prefix (see the module docstring)."""
    full: dict[str, str] = {}
    prefix: dict[str, list[str]] = {}
    for sl in cohort.slides:
        for s in sl:
            full[s.upper()] = s
            prefix.setdefault(slide_prefix(s).upper(), []).append(s)
    by_slide: dict[str, list[str]] = {}  # slide id -> stems naming it
    how: dict[str, str] = {}
    unmatched: list[Path] = []
    ambiguities: list[str] = []
    for stem, paths in files.items():
        key = stem.upper()
        if key in full:
            by_slide.setdefault(full[key], []).append(stem)
            how[full[key]] = "full"
        elif key in prefix and len(prefix[key]) == 1:
            by_slide.setdefault(prefix[key][0], []).append(stem)
            how[prefix[key][0]] = "prefix"
        elif key in prefix:
            ambiguities.append(f"{paths[0]} matches {len(prefix[key])} slides of {short_name(cohort.name)} by its "
                               f"name ({', '.join(prefix[key])}); rename it to the full slide name")
        else:
            unmatched += paths
    for sid, stems in by_slide.items():
        if len(stems) > 1:
            named = " and ".join(str(files[s][0]) for s in stems)
            ambiguities.append(f"slide {sid} matches {len(stems)} feature files of different names ({named}); keep "
                               "one and move the others out of the feature folder")
    return SlideMatch(files={s: [p for st in stems for p in files[st]] for s, stems in by_slide.items()},
                      unmatched=sorted(unmatched), ambiguities=ambiguities,
                      n_files=sum(len(p) for p in files.values()), how=how)


def check_unambiguous(match: SlideMatch) -> None:
    """Refuse a match with an ambiguity: the first named in full, the count of the others."""
    if match.ambiguities:
        more = f" (and {len(match.ambiguities) - 1} more ambiguities)" if len(match.ambiguities) > 1 else ""
        raise BenchError(match.ambiguities[0] + more)


def _barcode(stem: str) -> str | None:
    """The patient barcode (``TCGA-XX-XXXX``) a file name starts with, if any."""
    m = re.match(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})", stem.upper())
    return m.group(1) if m else None


def bundled_case_ids(cohort: Cohort) -> dict[str, set[str]]:
    """The patients of the other cohorts whose tables sit beside ``cohort``'s (any genomics build)."""
    out: dict[str, set[str]] = {}
    for table in sorted(cohort.table.parent.parent.glob("*/*_all_clean.csv*")):
        name = table.name.split("_all_clean")[0]
        if name == cohort.name:
            continue
        try:
            ids = pd.read_csv(table, usecols=["case_id"], dtype=str)["case_id"]
        except Exception:  # a hint only: an unreadable table gives none
            continue
        out.setdefault(name, set()).update(ids.str.upper())
    return out


def foreign_files_message(cohort: Cohort, folder: Path, stems: Iterable[str]) -> str:
    """Why no file matches: the cohort whose patients the files name, where another bundled cohort fits."""
    stems = list(stems)
    codes = [_barcode(s) for s in stems]
    counts = {name: sum(c in ids for c in codes) for name, ids in bundled_case_ids(cohort).items()}
    best = max(counts, key=lambda n: counts[n], default=None)
    head = f"0 of {len(stems)} feature files in {folder} match a slide of {short_name(cohort.name)}"
    if best is not None and counts[best] > 0:
        return (f"{head}; they look like {short_name(best)} slides ({counts[best]} of {len(stems)} name "
                f"{short_name(best)} patients): pass --cohort {short_name(best)}")
    return f"{head} (e.g. {stems[0]}); name the files by slide id (TCGA-XX-XXXX-01Z-00-DX1[.<UUID>].h5)"
