"""The data audit and site-preserved splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench._core.config import load_settings
from bench._core.errors import BenchError
from bench.data.audit import (
    audit_cohort,
    censoring_sanity,
    plot_audit,
    site_of,
    site_split_report,
    site_splits,
    write_site_splits,
)
from bench.data.cohort import load_cohort

ROOT = Path(__file__).resolve().parents[2]


def test_site_of():
    assert site_of("TCGA-A5-A0G9") == "A5"
    with pytest.raises(BenchError, match="not a TCGA barcode"):
        site_of("PATIENT-7")


def test_censoring_sanity_by_hand():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    cens = np.array([0, 1, 0, 1, 1, 1])
    out = censoring_sanity(time, cens)
    # last event at 3; censored at 2, 4, 5, 6: three of the four beyond the last event
    assert out["last_event_time"] == 3.0
    assert out["censored_beyond_last_event"] == 3
    assert out["share_censored_beyond_last_event"] == 0.75
    assert out["event_time_q50"] == 2.0 and out["censoring_time_q50"] == 4.5


def test_audit_of_the_bundled_ucec_cohort():
    settings = load_settings(ROOT)
    co = load_cohort(settings, "tcga_ucec")
    a = audit_cohort(co)
    assert len(a.labels) == 2 * len(co.splits)
    for split in co.splits:
        for name, idx in (("train", split.train), ("val", split.val)):
            row = a.labels[(a.labels["fold"] == split.k) & (a.labels["split"] == name)].iloc[0]
            assert row["patients"] == len(idx)
            assert row["events"] == int((co.censorship[idx] == 0).sum())
            assert sum(row[f"bin_{k}"] for k in range(4)) == len(idx)
            assert row["follow_up_max"] == co.time[idx].max()
        # shared sites, computed independently from the barcodes
        tr = {c.split("-")[1] for c in np.array(co.case_ids)[split.train]}
        va = [c.split("-")[1] for c in np.array(co.case_ids)[split.val]]
        srow = a.sites[a.sites["fold"] == split.k].iloc[0]
        assert srow["shared_sites"] == len(tr & set(va))
        assert srow["val_patients_from_shared_sites"] == pytest.approx(np.mean([s in tr for s in va]), abs=1e-15)
    assert sum(a.slides_per_patient.values()) == co.n_patients
    assert sum(k * v for k, v in a.slides_per_patient.items()) == co.n_slides
    assert a.censoring["patients"] == co.n_patients
    rec = a.record()
    assert rec["cohort"] == "tcga_ucec" and len(rec["labels"]) == 10


def _ids(sizes: dict[str, int]) -> list[str]:
    return [f"TCGA-{s}-{i:04d}" for s, n in sizes.items() for i in range(n)]


def test_site_splits_keep_each_site_in_one_fold():
    sizes = {"A1": 30, "B2": 25, "C3": 20, "D4": 10, "E5": 10, "F6": 5, "G7": 5, "H8": 3, "J9": 2}
    ids = _ids(sizes)
    folds = site_splits(ids)
    assert sorted(c for f in folds for c in f) == sorted(ids)
    for s in sizes:
        assert sum(any(site_of(c) == s for c in f) for f in folds) == 1
    # greedy by size: A1 -> 0, B2 -> 1, C3 -> 2, D4 -> 3, E5 -> 4, F6 -> 3 (10 < 20), G7 -> 4, H8 -> 3 ...
    assert [len(f) for f in folds] == [30, 25, 20, 18, 17]
    assert folds == site_splits(list(reversed(ids)))  # order of the input does not matter
    rep = site_split_report(ids, folds)
    assert rep["fold_sizes"] == [30, 25, 20, 18, 17] and rep["largest_site"] == "A1"


def test_site_splits_need_enough_sites(tmp_path):
    with pytest.raises(BenchError, match="only 3 tissue source site"):
        site_splits(_ids({"A1": 5, "B2": 5, "C3": 5}))
    paths = write_site_splits(tmp_path / "site", _ids({"A1": 4, "B2": 3, "C3": 3, "D4": 2, "E5": 1}))
    assert [p.name for p in paths] == [f"splits_{k}.csv" for k in range(5)]
    f0 = pd.read_csv(paths[0], dtype=str)
    assert list(f0.columns) == ["Unnamed: 0", "train", "val"]
    assert f0["val"].dropna().tolist() == [f"TCGA-A1-{i:04d}" for i in range(4)]
    assert not list((tmp_path / "site").glob(".*.tmp"))


def test_audit_figure_fits_and_carries_its_labels():
    settings = load_settings(ROOT)
    audits = [audit_cohort(load_cohort(settings, c)) for c in ("tcga_ucec", "tcga_luad")]
    fig = plot_audit(audits)
    assert tuple(fig.get_size_inches()) == (7.2, 2.6)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
    for ax in fig.axes:  # tick labels that are drawn: ticks inside the view limits
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            texts += [lab for tick, lab in zip(axis.get_ticklocs(), axis.get_ticklabels(), strict=True)
                      if min(lo, hi) <= tick <= max(lo, hi)]
        if ax.get_legend() is not None:
            texts += list(ax.get_legend().get_texts())
    texts = [t for t in texts if t.get_visible() and t.get_text()]
    found = {t.get_text() for t in texts}
    assert {"UCEC", "LUAD", "train", "val", "censored patients (%)"} <= found
    box = fig.bbox
    for t in texts:
        e = t.get_window_extent(renderer)
        assert e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1 and e.y0 >= box.y0 - 1 and e.y1 <= box.y1 + 1, t.get_text()
        assert t.get_fontsize() >= 7
