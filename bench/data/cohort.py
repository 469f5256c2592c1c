"""Cohorts: the clinical/genomic table, the fixed splits, signature groups and per-fold preprocessing.

A cohort is one TCGA study (``tcga_blca`` ...). Its table has one row per slide; all slides of a
patient form one bag, so everything here is indexed by patient in the order patients first appear
in the table. Per-fold preprocessing (genomic standardisation, discrete time bins) is fitted on the
training fold only, unless ``bins = "cohort"`` asks for the published whole-cohort binning.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from bench._core.config import SPLIT_KINDS, Settings
from bench._core.errors import BenchError
from bench._core.files import sha256_file
from bench.api.bins import assign_bins, fit_time_bins
from bench.api.model import GROUP_NAMES

#: Non-genomic columns, excluded by name (the published loaders exclude "the first 12 columns",
#: which drops the last genomic column and lets ``train`` or ``censorship`` leak in).
META_COLUMNS = frozenset(
    {"case_id", "slide_id", "site", "is_female", "oncotree_code", "age", "survival_months", "censorship", "train"}
)
REQUIRED_COLUMNS = ("case_id", "slide_id", "survival_months", "censorship")
SUFFIXES = ("_mut", "_cnv", "_rnaseq")

#: The genomic table builds we bundle (see data/README.md).
BUILDS = {
    "mutsig": "PORPOISE datasets_csv_mutsig (all five cohorts)",
    "mcat_sig": "MCAT datasets_csv_sig, signature genes only (BLCA, LUAD, UCEC)",
    "mcat_full": "MCAT dataset_csv, full build used by MCAT/MOTCat/CMTA/CCL (UCEC only)",
}



def canonical_name(text: str) -> str:
    """``UCEC``, ``ucec`` and ``tcga_ucec`` all name ``tcga_ucec``."""
    t = text.strip().lower()
    return t if t.startswith("tcga_") else f"tcga_{t}"


def short_name(name: str) -> str:
    """``tcga_ucec`` -> ``UCEC`` (the paper's column names)."""
    return name.removeprefix("tcga_").upper()


def available_cohorts(settings: Settings) -> list[str]:
    """Cohorts with splits under ``splits/`` and a table in at least one build."""
    out = []
    if settings.splits_dir.is_dir():
        for d in sorted(settings.splits_dir.iterdir()):
            if (d / "splits_0.csv").is_file() and table_builds(settings, d.name):
                out.append(d.name)
    return out


def table_path(settings: Settings, name: str, build: str) -> Path | None:
    """The table file of ``name`` in ``build``, or None."""
    folder = settings.data_dir / "genomics" / build
    for suffix in (".csv.zip", ".csv"):
        p = folder / f"{name}_all_clean{suffix}"
        if p.is_file():
            return p
    return None


def table_builds(settings: Settings, name: str) -> list[str]:
    """Builds that hold a table for cohort ``name``."""
    root = settings.data_dir / "genomics"
    if not root.is_dir():
        return []
    return [b.name for b in sorted(root.iterdir()) if b.is_dir() and table_path(settings, name, b.name)]


def resolve_cohort(settings: Settings, text: str) -> str:
    """Canonical cohort name, or an error listing the valid ones."""
    name = canonical_name(text)
    valid = available_cohorts(settings)
    if name not in valid:
        shown = ", ".join(short_name(v) for v in valid) or "none (no splits/ folder)"
        raise BenchError(f"unknown cohort '{text}'; valid cohorts: {shown}")
    return name


def split_folder(splits_dir: Path, name: str, splits: str = "fixed") -> Path:
    """The folder of cohort ``name``'s split files of kind ``splits`` (:data:`bench._core.config.SPLIT_KINDS`):
    ``<splits>/<cohort>`` for the fixed splits, ``<splits>/<cohort>/site`` for the site-preserved ones."""
    if splits not in SPLIT_KINDS:
        raise BenchError(f"bad --splits '{splits}': choose one of {', '.join(SPLIT_KINDS)}")
    return splits_dir / name if splits == "fixed" else splits_dir / name / "site"


@dataclass
class Split:
    """One fold of the fixed splits, as patient indices into the cohort."""

    k: int
    train: np.ndarray
    val: np.ndarray
    path: Path


@dataclass
class Cohort:
    """A cohort's patients, labels, genomics, signature groups and splits (immutable once loaded)."""

    name: str
    build: str
    case_ids: list[str]
    time: np.ndarray  # survival_months per patient
    censorship: np.ndarray  # 1 = censored
    slides: list[list[str]]  # slide ids (without .svs) per patient
    genomics: np.ndarray  # [P, G] raw genomic values (float32)
    genomic_columns: list[str]
    groups: dict[str, np.ndarray]  # signature family -> column indices into genomic_columns
    splits: list[Split]
    table: Path
    hashes: dict[str, str] = field(default_factory=dict)
    split_kind: str = "fixed"  # which split family ``splits`` came from (SPLIT_KINDS)

    @property
    def split_dir(self) -> Path:
        """The folder the split files were read from."""
        return self.splits[0].path.parent

    @property
    def n_patients(self) -> int:
        return len(self.case_ids)

    @property
    def n_slides(self) -> int:
        return sum(len(s) for s in self.slides)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """case_id -> patient index."""
        return {c: i for i, c in enumerate(self.case_ids)}

    @property
    def group_sizes(self) -> tuple[int, ...]:
        return tuple(len(self.groups[g]) for g in GROUP_NAMES)

    def split(self, k: int) -> Split:
        """Fold ``k`` of the fixed splits, or an error naming the valid folds."""
        if not 0 <= k < len(self.splits):
            raise BenchError(f"fold {k} out of range for {self.name}: folds 0..{len(self.splits) - 1}")
        return self.splits[k]

    def fold(self, k: int, bins: str = "train", n_bins: int = 4, inner: Sequence[str] | None = None) -> Fold:
        """Preprocessing of fold ``k`` fitted on its training patients (see :class:`Fold`).

        ``inner``: training patients held out as the fold's inner validation split (``selection=inner``,
        :mod:`bench.data.inner_splits`); ``train`` is then the rest and the preprocessing is fitted on the rest only.
        """
        split = self.split(k)
        train, held = split.train, np.empty(0, dtype=np.int64)
        if inner is not None:
            held_set = set(inner)
            stray = sorted(held_set - {self.case_ids[i] for i in split.train})
            if stray:
                raise BenchError(f"inner patient {stray[0]} is not a training patient of fold {k} of {self.name}")
            train = np.array([i for i in split.train if self.case_ids[i] not in held_set], dtype=np.int64)
            held = np.array(sorted(self.index[c] for c in held_set), dtype=np.int64)
        fit_on = np.arange(self.n_patients) if bins == "cohort" else train
        edges = fit_time_bins(self.time[fit_on], self.censorship[fit_on], n_bins)
        labels = assign_bins(self.time, edges)
        scaler = StandardScaler().fit(self.genomics[train])
        genomics = scaler.transform(self.genomics).astype(np.float32)
        return Fold(k=k, train=train, val=split.val, edges=edges, bins=labels, genomics=genomics,
                    bins_fitted_on=bins, inner=held)


@dataclass
class Fold:
    """One fold ready for training: indices, time-bin edges and labels, standardised genomics.

    ``bins`` and ``genomics`` cover every patient of the cohort (val included), computed with
    parameters fitted on ``train`` (or on the whole cohort when ``bins_fitted_on == "cohort"``).
    """

    k: int
    train: np.ndarray
    val: np.ndarray
    edges: np.ndarray
    bins: np.ndarray
    genomics: np.ndarray
    bins_fitted_on: str
    inner: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # selection=inner only


# ----------------------------------------------------------------------------------------------
# Loading


@functools.lru_cache(maxsize=16)
def _load_cached(data_dir: str, splits_dir: str, name: str, build: str, stamp: tuple, splits: str = "fixed"
                 ) -> Cohort:
    return _load(Path(data_dir), Path(splits_dir), name, build, splits)


def _stamp(settings: Settings, name: str, build: str, splits: str = "fixed") -> tuple:
    """Modification stamps of the files a cohort is read from (a changed file is re-read)."""
    files = [table_path(settings, name, build), settings.data_dir / "signatures.csv",
             *sorted(split_folder(settings.splits_dir, name, splits).glob("splits_*.csv"))]
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f is not None and f.exists())


def load_cohort(settings: Settings, text: str, build: str | None = None, splits: str = "fixed") -> Cohort:
    """Load a cohort by (case-insensitive) name in a genomic ``build`` (default: bench.toml's) with its split
    family ``splits``: ``fixed`` (the published splits) or ``site`` (``bench data site-splits``)."""
    name = resolve_cohort(settings, text)
    folder = split_folder(settings.splits_dir, name, splits)
    if splits != "fixed" and not any(folder.glob("splits_*.csv")):
        raise BenchError(f"no {splits} splits for {short_name(name)}: {folder} holds no splits_<k>.csv; write them "
                         f"with `bench data site-splits --cohort {short_name(name)}`")
    build = build or settings["data"]["genomics"]
    if build not in BUILDS and not (settings.data_dir / "genomics" / build).is_dir():
        raise BenchError(f"unknown genomics build '{build}'; valid builds: {', '.join(BUILDS)}")
    if table_path(settings, name, build) is None:
        have = table_builds(settings, name)
        raise BenchError(
            f"cohort {short_name(name)} has no table in genomics build '{build}'; "
            f"builds available for it: {', '.join(have)} (--set genomics=<build>)"
        )
    return _load_cached(str(settings.data_dir), str(settings.splits_dir), name, build,
                        _stamp(settings, name, build, splits), splits)


def _load(data_dir: Path, splits_dir: Path, name: str, build: str, splits: str = "fixed") -> Cohort:
    folder = data_dir / "genomics" / build
    path = next(p for p in (folder / f"{name}_all_clean.csv.zip", folder / f"{name}_all_clean.csv") if p.is_file())
    try:
        df = pd.read_csv(path, low_memory=False)
    except Exception as exc:
        raise BenchError(f"cannot read cohort table {path}: {exc}") from exc
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise BenchError(f"{path} has no '{col}' column; the table needs {', '.join(REQUIRED_COLUMNS)}")
    genomic_columns = [c for c in df.columns if c not in META_COLUMNS and not str(c).startswith("Unnamed")]
    if not genomic_columns:
        raise BenchError(f"{path} has no genomic columns (anything besides {', '.join(sorted(META_COLUMNS))})")

    case_ids_all = df["case_id"].astype(str).to_numpy()
    _check_numeric(df, genomic_columns, case_ids_all, path)
    genomic = df[genomic_columns].to_numpy(dtype=np.float64)
    _check_finite(genomic, genomic_columns, case_ids_all, path)
    time_all = pd.to_numeric(df["survival_months"], errors="coerce").to_numpy(dtype=np.float64)
    cens_all = pd.to_numeric(df["censorship"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(time_all) | (time_all < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BenchError(f"{path}: patient {case_ids_all[i]} has survival_months={df['survival_months'].iloc[i]!r}; "
                         "it must be a number >= 0")
    bad = ~np.isin(cens_all, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BenchError(f"{path}: patient {case_ids_all[i]} has censorship={df['censorship'].iloc[i]!r}; "
                         "it must be 0 (event) or 1 (censored)")

    # One patient = first row of its case_id; all its rows must agree on the patient fields.
    codes, first_rows = _first_rows(case_ids_all)
    for label, values in (("survival_months", time_all), ("censorship", cens_all)):
        differs = values != values[first_rows][codes]
        if differs.any():
            i = int(np.flatnonzero(differs)[0])
            raise BenchError(f"{path}: patient {case_ids_all[i]} has different {label} on different slide rows")
    differs = genomic != genomic[first_rows][codes]
    if differs.any():
        r, c = map(int, np.argwhere(differs)[0])
        raise BenchError(f"{path}: patient {case_ids_all[r]} has different values of column "
                         f"{genomic_columns[c]} on different slide rows")

    slide_ids = [strip_svs(s) for s in df["slide_id"].astype(str)]
    slides: list[list[str]] = [[] for _ in first_rows]
    for code, sid in zip(codes, slide_ids, strict=True):
        slides[code].append(sid)
    case_ids = [str(case_ids_all[i]) for i in first_rows]
    groups = signature_groups(data_dir / "signatures.csv", genomic_columns)
    folds, split_hashes = _load_splits(split_folder(splits_dir, name, splits), case_ids, path)
    return Cohort(
        name=name,
        build=build,
        case_ids=case_ids,
        time=time_all[first_rows],
        censorship=cens_all[first_rows],
        slides=slides,
        genomics=genomic[first_rows].astype(np.float32),
        genomic_columns=genomic_columns,
        groups=groups,
        splits=folds,
        table=path,
        hashes={"table": sha256_file(path), **split_hashes},
        split_kind=splits,
    )


def strip_svs(slide_id: str) -> str:
    """Slide id without a trailing ``.svs`` (exact suffix, not a character set)."""
    return slide_id[:-4] if slide_id.lower().endswith(".svs") else slide_id


def _first_rows(case_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Patient code per row (patients in order of first appearance) and the first row of each patient."""
    _uniq, first, inverse = np.unique(case_ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # appearance order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse], first[order]


def _check_numeric(df: pd.DataFrame, cols: list[str], case_ids: np.ndarray, path: Path) -> None:
    for c in cols:
        if not pd.api.types.is_numeric_dtype(df[c]):
            values = pd.to_numeric(df[c], errors="coerce")
            i = int(np.flatnonzero(values.isna() & df[c].notna())[0]) if (values.isna() & df[c].notna()).any() else 0
            raise BenchError(f"{path}: genomic column {c} is not numeric (patient {case_ids[i]} has "
                             f"{df[c].iloc[i]!r}); fix the value or drop the column")


def _check_finite(values: np.ndarray, cols: list[str], case_ids: np.ndarray, path: Path) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise BenchError(f"{path}: patient {case_ids[r]} has {values[r, c]} in genomic column {cols[c]}; "
                         f"{int(bad.sum())} non-finite value(s) in all — impute or drop them before use")


def signature_groups(signatures_csv: Path, genomic_columns: list[str]) -> dict[str, np.ndarray]:
    """Column indices of each signature family: gene + ``_mut/_cnv/_rnaseq`` present, names sorted as strings."""
    if not signatures_csv.is_file():
        raise BenchError(f"signature file {signatures_csv} is missing; restore it from git")
    sig = pd.read_csv(signatures_csv)
    if sig.shape[1] != len(GROUP_NAMES):
        raise BenchError(f"{signatures_csv} must have {len(GROUP_NAMES)} columns (one per family), has {sig.shape[1]}")
    position = {c: i for i, c in enumerate(genomic_columns)}
    groups = {}
    for short, col in zip(GROUP_NAMES, sig.columns, strict=True):
        genes = sig[col].dropna().astype(str)
        names = sorted({g + s for g in genes for s in SUFFIXES} & position.keys())
        groups[short] = np.array([position[n] for n in names], dtype=np.int64)
    return groups


def _load_splits(folder: Path, case_ids: list[str], table: Path) -> tuple[list[Split], dict[str, str]]:
    index = {c: i for i, c in enumerate(case_ids)}
    files = sorted(folder.glob("splits_*.csv"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise BenchError(f"no split files in {folder}; expected splits_0.csv ... splits_4.csv")
    splits, hashes = [], {}
    seen_val: dict[str, int] = {}
    for k, f in enumerate(files):
        if f.stem != f"splits_{k}":
            raise BenchError(f"split files in {folder} must be numbered 0..n without gaps; {f.name} found at {k}")
        try:
            s = pd.read_csv(f, dtype=str)
        except Exception as exc:
            raise BenchError(f"cannot read split file {f}: {exc}") from exc
        for col in ("train", "val"):
            if col not in s.columns:
                raise BenchError(f"split file {f} has no '{col}' column (header must be ',train,val')")
        parts = {}
        for col in ("train", "val"):
            ids = s[col].dropna().str.strip().tolist()
            missing = [c for c in ids if c not in index]
            if missing:
                more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
                raise BenchError(f"split file {f}: {col} patient {missing[0]}{more} is not in the cohort table "
                                 f"{table}; fix the split or use a table that has these patients")
            if len(set(ids)) != len(ids):
                raise BenchError(f"split file {f}: a patient appears twice in the {col} column")
            parts[col] = np.array([index[c] for c in ids], dtype=np.int64)
        both = set(parts["train"].tolist()) & set(parts["val"].tolist())
        if both:
            raise BenchError(f"split file {f}: patient {case_ids[min(both)]} is in both train and val")
        for i in parts["val"].tolist():
            if case_ids[i] in seen_val:
                raise BenchError(f"split file {f}: val patient {case_ids[i]} is also a val patient of fold "
                                 f"{seen_val[case_ids[i]]}; the val folds must be disjoint")
            seen_val[case_ids[i]] = k
        splits.append(Split(k=k, train=parts["train"], val=parts["val"], path=f))
        hashes[f"splits_{k}"] = sha256_file(f)
    return splits, hashes
