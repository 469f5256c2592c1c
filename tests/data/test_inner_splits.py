"""Inner validation splits: sizes, strata, determinism and the file round trip."""

from __future__ import annotations

import numpy as np
import pytest

from bench._core.errors import BenchError
from bench.data.cohort import assign_bins, fit_time_bins
from bench.data.inner_splits import draw_inner, inner_frame, read_inner


def _fold(n=203, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"TCGA-AA-{i:04d}" for i in rng.permutation(n)]
    return ids, rng.exponential(30.0, n), (rng.random(n) < 0.6).astype(float)


def test_inner_size_strata_and_determinism():
    ids, time, cens = _fold()
    inner = draw_inner(ids, time, cens, fold=2, fraction=0.2, seed=0)
    assert len(inner) == round(0.2 * 203) and len(set(inner)) == len(inner) and set(inner) <= set(ids)
    assert inner == draw_inner(ids, time, cens, fold=2, fraction=0.2, seed=0)
    assert inner != draw_inner(ids, time, cens, fold=3, fraction=0.2, seed=0)
    assert inner != draw_inner(ids, time, cens, fold=2, fraction=0.2, seed=1)
    # the order of the training fold does not matter
    perm = np.random.default_rng(9).permutation(len(ids))
    assert inner == draw_inner([ids[i] for i in perm], time[perm], cens[perm], fold=2, fraction=0.2, seed=0)
    # every time bin x censorship stratum keeps its share, to within one patient
    strata = assign_bins(time, fit_time_bins(time, cens)) * 2 + cens.astype(int)
    held = np.isin(ids, inner)
    for s in np.unique(strata):
        size, got = (strata == s).sum(), (held & (strata == s)).sum()
        assert abs(got - 0.2 * size) < 1.0, (s, size, got)


def test_inner_fraction_checked():
    ids, time, cens = _fold(20)
    with pytest.raises(BenchError, match="strictly between 0 and 1"):
        draw_inner(ids, time, cens, fold=0, fraction=1.0)
    with pytest.raises(BenchError, match="duplicate case ids"):
        draw_inner(ids[:-1] + ids[:1], time, cens, fold=0)


def test_inner_file_round_trip_and_errors(tmp_path):
    ids, time, cens = _fold(50)
    inner = draw_inner(ids, time, cens, fold=0)
    path = tmp_path / "inner_0.csv"
    inner_frame(ids, inner).to_csv(path)
    rest, got = read_inner(path, ids)
    assert got == inner and rest == [c for c in ids if c not in set(inner)]
    with pytest.raises(BenchError, match="not in the training fold"):
        read_inner(path, ids[1:] if ids[0] in rest else ids[:-1])
    bad = inner_frame(ids, inner)
    bad.loc[0, "train"] = inner[0]
    bad.to_csv(path)
    with pytest.raises(BenchError, match="in both columns"):
        read_inner(path, ids)
    with pytest.raises(BenchError, match="bench data inner-splits"):
        read_inner(tmp_path / "inner_4.csv", ids)


def test_write_inner_splits_on_the_toy_cohort(toy):
    from bench.data.cohort import load_cohort
    from bench.data.inner_splits import write_inner_splits

    co = load_cohort(toy.settings, toy.cohort)
    out = write_inner_splits(co, fraction=0.2, seed=0)
    assert [s for _, s in out] == ["written"] * 5
    assert [s for _, s in write_inner_splits(co, fraction=0.2, seed=0)] == ["unchanged"] * 5
    with pytest.raises(BenchError, match="--force"):
        write_inner_splits(co, fraction=0.25, seed=0)
    assert [s for _, s in write_inner_splits(co, fraction=0.2, seed=0)] == ["unchanged"] * 5  # nothing half-written
    for split, (path, _) in zip(co.splits, out, strict=True):
        train = [co.case_ids[i] for i in split.train]
        rest, inner = read_inner(path, train)
        assert len(inner) == round(0.2 * len(train)) and sorted(rest + inner) == sorted(train)
    assert [s for _, s in write_inner_splits(co, fraction=0.25, seed=0, force=True)] == ["replaced"] * 5
