"""Inner validation splits: a patient-disjoint part of each training fold for choosing the epoch.

The ``inner`` selection protocol picks a fold's reported epoch on these patients, never on the
outer validation fold it then reports. An inner split holds ``fraction`` of the training fold,
stratified by discrete time bin × censorship: the bins are the fold's own (quartiles of the
training fold's uncensored times, :func:`bench.data.cohort.fit_time_bins`), so every stratum of the
training fold keeps its share. Each stratum gets ``fraction × size`` patients rounded by largest
remainder (ties to the earlier stratum), so the total is ``round(fraction × n)``; within a stratum
the patients, sorted by case id, are permuted by ``numpy.random.default_rng((seed, fold))`` and the
first ones are taken. The same (training fold, labels, fraction, seed) always gives the same split.

Files: ``splits/<cohort>/inner_<k>.csv`` with two columns, ``train`` (the training fold minus the
inner patients) and ``inner``, padded like the outer ``splits_<k>.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench._core.errors import BenchError
from bench.data.cohort import Cohort, assign_bins, fit_time_bins


def draw_inner(case_ids: Sequence[str], time: np.ndarray, censorship: np.ndarray, *, fold: int,
               fraction: float = 0.2, seed: int = 0, n_bins: int = 4) -> list[str]:
    """The inner patients of one training fold (sorted case ids); see the module docstring.

    Args:
        case_ids: the training fold's patients.
        time: their survival months.
        censorship: their censorship (1 = censored).
        fold: the outer fold (part of the random stream, so folds draw independently).
        fraction: share of the training fold held out, in (0, 1).
        seed: the draw's seed.
        n_bins: discrete time bins used for the stratification.
    """
    if not 0.0 < fraction < 1.0:
        raise BenchError(f"inner fraction must lie strictly between 0 and 1, got {fraction}")
    ids = np.asarray(case_ids, dtype=object)
    time, censorship = np.asarray(time, dtype=float), np.asarray(censorship, dtype=float)
    if not len(ids) == len(time) == len(censorship):
        raise BenchError(f"fold {fold}: {len(ids)} case ids for {len(time)} times and {len(censorship)} censorships")
    if len(set(ids.tolist())) != len(ids):
        raise BenchError(f"fold {fold}: duplicate case ids in the training fold")
    bins = assign_bins(time, fit_time_bins(time, censorship, n_bins))
    strata = bins * 2 + (censorship > 0.5).astype(np.int64)
    keys = np.unique(strata)
    sizes = np.array([(strata == s).sum() for s in keys])
    quota = fraction * sizes
    take = np.floor(quota).astype(int)
    rest = round(fraction * len(ids)) - int(take.sum())
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:rest]] += 1
    rng = np.random.default_rng((seed, fold))
    inner: list[str] = []
    for s, m in zip(keys, take, strict=True):
        members = np.sort(ids[strata == s])
        inner.extend(members[rng.permutation(len(members))[:m]].tolist())
    return sorted(inner)


def inner_path(split_dir: Path, k: int) -> Path:
    """Where fold ``k``'s inner split lives."""
    return Path(split_dir) / f"inner_{k}.csv"


def inner_frame(train: Sequence[str], inner: Sequence[str]) -> pd.DataFrame:
    """The file's table: the training fold minus the inner patients, and the inner patients."""
    held = set(inner)
    rest = [c for c in train if c not in held]
    n = max(len(rest), len(inner))
    return pd.DataFrame({"train": rest + [None] * (n - len(rest)), "inner": list(inner) + [None] * (n - len(inner))})


def read_inner(path: Path, train: Sequence[str]) -> tuple[list[str], list[str]]:
    """(inner-training patients, inner patients) of an inner split file, checked against the fold's
    training patients: the two columns must be disjoint and together the training fold."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"no inner split {path}; draw it with `bench data inner-splits --cohort <cohort>`")
    try:
        df = pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BenchError(f"{path}: not a readable CSV ({e}); redraw it with `bench data inner-splits`") from e
    if not {"train", "inner"} <= set(df.columns):
        raise BenchError(f"{path}: needs columns 'train' and 'inner', found {list(df.columns)}")
    rest = df["train"].dropna().tolist()
    inner = df["inner"].dropna().tolist()
    both = sorted(set(rest) & set(inner))
    if both:
        raise BenchError(f"{path}: patient {both[0]} is in both columns; redraw with `bench data inner-splits`")
    if sorted(rest + inner) != sorted(train) or len(set(rest + inner)) != len(rest + inner):
        extra = sorted(set(rest + inner) - set(train))
        missing = sorted(set(train) - set(rest + inner))
        what = f"patient {extra[0]} is not in the training fold" if extra else (
            f"training patient {missing[0]} is missing" if missing else "a patient appears twice")
        raise BenchError(f"{path}: {what}; redraw with `bench data inner-splits`")
    if not inner:
        raise BenchError(f"{path}: no inner patients")
    return rest, inner


def write_inner_splits(cohort: Cohort, fraction: float = 0.2, seed: int = 0, *, force: bool = False,
                       n_bins: int = 4) -> list[tuple[Path, str]]:
    """Draw and write ``inner_<k>.csv`` for every fold of ``cohort`` beside its ``splits_<k>.csv``.

    Returns ``(path, status)`` per fold: ``written``, ``unchanged`` (an identical file was there) or
    ``replaced`` (with ``force``). A different existing file without ``force`` is an error naming it,
    and nothing is written then; each file is written to a temporary name and renamed.
    """
    frames = []
    for split in cohort.splits:
        ids = [cohort.case_ids[i] for i in split.train]
        inner = draw_inner(ids, cohort.time[split.train], cohort.censorship[split.train], fold=split.k,
                           fraction=fraction, seed=seed, n_bins=n_bins)
        path = inner_path(split.path.parent, split.k)
        text = inner_frame(ids, inner).to_csv()
        status = "written"
        if path.is_file():
            if path.read_text() == text:
                status = "unchanged"
            elif not force:
                raise BenchError(f"{path} exists and differs from the split drawn with fraction {fraction} and seed "
                                 f"{seed}; runs with selection=inner used it. Pass --force to replace it")
            else:
                status = "replaced"
        frames.append((path, text, status))
    out = []
    for path, text, status in frames:
        if status != "unchanged":
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
        out.append((path, status))
    return out
