"""The CCL paper's published numbers, bundled as package data under bench/api/paper_tables.

One source for every method's ``MethodInfo.reported`` (``table1_row``) and for the paper columns of
the tables. It sits in the method API because a method's metadata reads it when it registers.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from bench._core.errors import BenchError

PAPER_COHORTS = ("BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC")


_PAPER_TABLES = Path(__file__).resolve().parent / "paper_tables"


@functools.cache
def paper_table(name: str) -> pd.DataFrame:
    """One of the bundled CSVs of the CCL paper's tables (``table1_cindex`` ...)."""
    path = _PAPER_TABLES / f"{name}.csv"
    if not path.is_file():
        raise BenchError(f"bundled paper table {path} is missing; restore bench/api/paper_tables from git")
    return pd.read_csv(path)


def table1_row(title: str) -> dict[str, tuple[float, float]]:
    """The CCL paper's Table I C-index (mean, std) per cohort for the row ``title``."""
    t = paper_table("table1_cindex")
    row = t[t["method"] == title]
    if row.empty:
        raise BenchError(f"'{title}' is not a row of the paper's Table I")
    r = row.iloc[0]
    return {c: (float(r[f"{c}_mean"]), float(r[f"{c}_std"])) for c in PAPER_COHORTS}
