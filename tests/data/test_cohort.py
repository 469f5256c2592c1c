"""Cohorts: bundled real data facts, time bins and scaling fitted on the training fold, split integrity."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench._core.config import load_settings
from bench._core.errors import BenchError
from bench.data.cohort import assign_bins, canonical_name, fit_time_bins, load_cohort


@pytest.fixture(scope="module")
def real():
    return load_settings(Path(__file__).resolve().parents[2])  # the project bench.toml and bundled data


def test_time_bins_known_answer():
    t = np.arange(1.0, 9.0)
    edges = fit_time_bins(t, np.zeros(8), 4)
    np.testing.assert_allclose(edges, [1 - 1e-6, 2.75, 4.5, 6.25, 8 + 1e-6])
    np.testing.assert_array_equal(assign_bins(np.array([0.5, 1, 2.75, 4.49, 6.25, 9]), edges), [0, 0, 1, 1, 3, 3])


def test_censored_patients_do_not_move_quantiles():
    t = np.array([1.0, 2, 3, 4, 5, 100])
    c = np.array([0, 0, 0, 0, 0, 1])
    edges = fit_time_bins(t, c, 2)
    assert edges[1] == pytest.approx(3.0)  # median of uncensored 1..5
    assert edges[-1] == pytest.approx(100 + 1e-6)  # outer edge covers every patient


@pytest.mark.parametrize("name,n,slides", [("BLCA", 373, 437), ("brca", 956, 1022), ("tcga_gbmlgg", 569, 1011),
                                           ("Luad", 453, 515), ("UCEC", 480, 538)])
def test_real_cohorts(real, name, n, slides):
    co = load_cohort(real, name)
    assert co.name == canonical_name(name) and co.n_patients == n and co.n_slides == slides
    val = np.concatenate([s.val for s in co.splits])
    assert len(val) == n and len(np.unique(val)) == n  # val folds are disjoint and cover the cohort
    for s in co.splits:
        assert not set(s.train) & set(s.val)
        assert len(s.train) + len(s.val) == n


def test_whole_cohort_bins_match_published(real):
    # spec §1.3: edges recomputed from the CSVs with the published whole-cohort rule
    ucec = load_cohort(real, "UCEC").fold(0, bins="cohort").edges
    np.testing.assert_allclose(ucec, [0.07, 12.12, 23.46, 33.86, 225.33], atol=0.01)
    blca = load_cohort(real, "BLCA").fold(0, bins="cohort").edges
    np.testing.assert_allclose(blca, [0.49, 7.62, 13.57, 21.85, 163.17], atol=0.01)


def test_group_sizes_match_published_mcat_build(real):
    # CCL hard-codes these BLCA sizes for the MCAT build; the bundled mcat_sig build must reproduce them
    co = load_cohort(real, "BLCA", "mcat_sig")
    assert co.group_sizes == (94, 334, 521, 468, 1496, 479)
    assert load_cohort(real, "UCEC", "mcat_full").group_sizes == (3, 24, 21, 22, 65, 15)
    for idx in co.groups.values():  # column names sorted as strings inside each group
        names = [co.genomic_columns[i] for i in idx]
        assert names == sorted(names)


def test_fold_preprocessing_fitted_on_train_only(toy):
    co = load_cohort(toy.settings, "toy")
    f = co.fold(0)
    np.testing.assert_allclose(f.genomics[f.train].mean(axis=0), 0, atol=1e-5)
    # moving a validation patient's time changes nothing fitted on the training fold
    t = co.time.copy()
    co.time[f.val[0]] = 1e4
    try:
        g = co.fold(0)
        np.testing.assert_array_equal(g.edges, f.edges)
        assert co.fold(0, bins="cohort").edges[-1] > 1e4  # the published whole-cohort rule would move
    finally:
        co.time[:] = t


def test_metadata_never_a_feature(real):
    co = load_cohort(real, "BLCA", "mcat_sig")
    assert not {"train", "censorship", "survival_months", "age"} & set(co.genomic_columns)
    assert not any(c.startswith("Unnamed") for c in co.genomic_columns)


def _table(toy):
    return toy.root / "data" / "genomics" / "mutsig" / "tcga_toy_all_clean.csv"


def test_nan_in_genomics_names_patient_and_column(toy):
    df = pd.read_csv(_table(toy))
    df.loc[3, "TP53_rnaseq"] = np.nan
    df.to_csv(_table(toy), index=False)
    with pytest.raises(BenchError, match=rf"patient {df.loc[3, 'case_id']} .*TP53_rnaseq"):
        load_cohort(toy.settings, "toy")


def test_split_id_absent_from_table(toy):
    f = toy.root / "splits" / "tcga_toy" / "splits_2.csv"
    s = pd.read_csv(f, index_col=0)
    s.loc[0, "train"] = "TCGA-XX-9999"
    s.to_csv(f)
    with pytest.raises(BenchError, match=r"splits_2.csv: train patient TCGA-XX-9999 is not in the cohort table"):
        load_cohort(toy.settings, "toy")


def test_patient_in_train_and_val(toy):
    f = toy.root / "splits" / "tcga_toy" / "splits_1.csv"
    s = pd.read_csv(f, index_col=0)
    s.loc[0, "train"] = s.loc[0, "val"]
    s.to_csv(f)
    with pytest.raises(BenchError, match="is in both train and val"):
        load_cohort(toy.settings, "toy")


def test_unknown_cohort_lists_valid(toy):
    with pytest.raises(BenchError, match="unknown cohort 'kirc'; valid cohorts: TOY"):
        load_cohort(toy.settings, "kirc")
