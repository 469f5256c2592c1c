"""Issue 14 in the tables: Antolini's C, D-calibration, fixed-horizon Brier scores through the evaluation path,
the paper's values on Harrell rows only, ranking within pathology kinds, and ``--style paper``."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sksurv.metrics import brier_score
from sksurv.util import Surv
from store_builder import add_cell, add_run, rows
from typer.testing import CliRunner

from bench.metrics import horizon as mh
from bench.report.evaluation import METRICS, Evaluation
from bench.report.render import Block, Mark, Table, render, sci_text
from bench.report.tables import Options, build_tables, format_p, paper_style, rank_marks, table1, table3

BLCA, BRCA = "tcga_blca", "tcga_brca"
EDGES = [0.0, 10.0, 20.0, 40.0, 100.0]


@pytest.fixture
def curve_store(tmp_path):
    """One cell (snn on BLCA), 5 folds with stored 4-bin curves and training rows; fold 4's training follow-up is
    short (tau below 60 months), so 60-month Brier cannot be scored there."""
    rng = np.random.default_rng(7)
    r = tmp_path / "results"
    for k in range(5):
        t, c = rng.uniform(2, 75, 30), (rng.random(30) < 0.4).astype(int)
        s = np.sort(rng.uniform(0.05, 1, (30, 4)), axis=1)[:, ::-1]
        top = 62.0 if k == 4 else 95.0
        train = rows([f"T{k}{i}" for i in range(80)], rng.uniform(1, top, 80), (rng.random(80) < 0.4).astype(int),
                     rng.normal(size=80), epoch=1, split="train")
        add_run(r, "snn", BLCA, k, [rows([f"V{k}{i}" for i in range(30)], t, c, -s.sum(1), epoch=1, surv=s), train],
                edges=EDGES)
    return Evaluation(r)


def _fold(ev, k):
    seed = ev.cell("snn", BLCA).used[0]
    val = seed.folds[k].val()
    t, c = val["survival_months"].to_numpy(float), val["censorship"].to_numpy(float)
    surv = val[[f"surv_{j}" for j in range(4)]].to_numpy(float)
    return seed, t, c, surv


def _step(surv, times):
    """The step rule by hand: S(t) = [1, S_0..S_3][number of inner/upper edges <= t]."""
    knots = np.concatenate([np.ones((surv.shape[0], 1)), surv], axis=1)
    idx = np.array([[sum(e <= x for e in EDGES[1:]) for x in row] for row in np.atleast_2d(times)])
    return np.take_along_axis(knots, idx, axis=1)


def test_antolini_through_the_store_equals_a_pairwise_count(curve_store):
    for k in (0, 3):
        seed, t, c, surv = _fold(curve_store, k)
        own = _step(surv, np.tile(t, (len(t), 1)))  # own[j, i] = S_j(T_i)
        num = den = 0.0
        for i in range(len(t)):
            if c[i] != 0:
                continue
            for j in range(len(t)):
                if t[j] > t[i] or (t[j] == t[i] and j != i and c[j] == 1):
                    den += 1
                    d = own[j, i] - own[i, i]
                    num += 0.5 if abs(d) <= 1e-8 else float(d > 0)
        assert seed.fold_metric(k, "antolini") == pytest.approx(num / den, abs=1e-12)
    per_fold = [curve_store.cell("snn", BLCA).used[0].fold_metric(k, "antolini") for k in range(5)]
    s = curve_store.cell("snn", BLCA).summary("antolini")
    assert s.mean == pytest.approx(np.mean(per_fold), abs=1e-12) and s.std == pytest.approx(np.std(per_fold))


def test_brier_horizons_match_scikit_survival_and_need_training_follow_up(curve_store):
    cell = curve_store.cell("snn", BLCA)
    seed = cell.used[0]
    for k in range(5):
        _, t, c, surv = _fold(curve_store, k)
        tt, tc = seed.training_labels(k)
        tau = float(np.quantile(tt, 0.8))  # training data only decides whether a horizon is covered
        for h in (12, 36, 60):
            got = seed.fold_metric(k, f"brier_{h}")
            if h > tau or not t.min() <= h < min(t.max(), tt.max()):  # also scikit-survival's scorable range
                assert math.isnan(got)
                continue
            cap = tt.max()
            val = Surv.from_arrays((c < 0.5) & (t < cap), np.minimum(t, cap))
            want = brier_score(Surv.from_arrays(tc < 0.5, tt), val, _step(surv, np.full((len(t), 1), h)), [h])[1][0]
            assert got == pytest.approx(want, abs=1e-12)
    assert math.isnan(seed.fold_metric(4, "brier_60")) and not math.isnan(seed.fold_metric(3, "brier_60"))
    assert math.isnan(cell.summary("brier_60").mean)  # a fold without the horizon: the cell is n/a
    b36 = [seed.fold_metric(k, "brier_36") for k in range(5)]
    assert cell.summary("brier_36").mean == pytest.approx(np.mean(b36), abs=1e-12)
    t = table1(curve_store, Options(metric="brier_60"))
    row = next(r for r in t.blocks[0].rows if r[1] == "SNN")
    assert row[t.blocks[0].headers.index("BLCA")] == Mark("n/a", None)
    assert any("tau" in n and "60 months" in n for n in t.notes)


def test_dcal_p_is_the_test_of_the_pooled_out_of_fold_histogram(curve_store):
    seed = curve_store.cell("snn", BLCA).used[0]
    hists, n = [], 0
    for k in range(5):
        _, t, c, surv = _fold(curve_store, k)
        own = _step(surv, t[:, None])[:, 0]
        h, _, p = mh.d_calibration(own, c)
        assert seed.fold_metric(k, "dcal_p") == pytest.approx(p, abs=1e-12)  # the fold's own p
        hists.append(h)
        n += len(t)
    pooled = np.sum(hists, axis=0)  # the histogram is additive over patients
    chi2 = float(np.sum((pooled - n / 10) ** 2) / (n / 10))
    want = stats.chi2.sf(chi2, 9)
    s = curve_store.cell("snn", BLCA).summary("dcal_p")
    assert s.mean == pytest.approx(want, rel=1e-10) and s.std is None
    t = table1(curve_store, Options(metric="dcal_p"))
    body, h = t.blocks[0].rows, t.blocks[0].headers
    snn = next(r for r in body if r[1] == "SNN")
    assert snn[h.index("BLCA")] == Mark(format_p(want), None) and snn[h.index("Overall")] == Mark("—", None)
    assert any("pooled" in n and "D-calibration" in n for n in t.notes)


def test_new_metrics_are_listed_and_build(curve_store):
    assert {"antolini", "dcal_p", "brier_12", "brier_36", "brier_60"} <= set(METRICS)
    built = build_tables(curve_store, "1", metrics=list(METRICS))
    assert [t.name for t in built] == [f"table1_best-val_{m}" for m in METRICS]
    csv = pd.read_csv(io.StringIO(render(built[list(METRICS).index("antolini")], "csv")))
    assert set(csv["metric"]) == {"antolini"}


# ----------------------------------------------------------------------------------------------
# The paper's values belong to Harrell's C


def test_paper_columns_only_on_harrell_rows(tmp_path):
    r = tmp_path / "results"
    add_cell(r, "snn", BLCA, [[1.0], [5 / 6], [2 / 3], [1.0], [0.5]])
    ev = Evaluation(r)
    for compare in (False, True):
        harrell = table1(ev, Options(compare_paper=compare)).frame
        snn = harrell[(harrell["method"] == "snn") & (harrell["cohort"] == "BLCA")].iloc[0]
        assert snn["paper_mean"] == 0.6339 and snn["paper_std"] == 0.0509
        for metric in ("uno", "ibs", "pooled", "antolini"):
            t = table1(ev, Options(metric=metric, compare_paper=compare))
            csv = pd.read_csv(io.StringIO(render(t, "csv")))
            assert csv["paper_mean"].isna().all() and csv["paper_std"].isna().all() and csv["diff"].isna().all()
            assert "BLCA paper" not in t.blocks[0].headers and "paper" not in render(t, "markdown").split("\n")[2]


# ----------------------------------------------------------------------------------------------
# Ranking marks


def test_rank_marks_within_kind_and_only_in_groups_of_three():
    kinds = ["none", "none", "none", "synthetic", "synthetic", "real", "real", "real", "real"]
    values = [0.70, 0.60, 0.65, 0.90, 0.80, 0.50, 0.55, 0.55, None]
    assert rank_marks(values, True, kinds) == ["best", None, "second", None, None, "second", "best", "best", None]
    assert rank_marks(values[:3], False) == [None, "best", "second"]  # lower is better
    assert rank_marks([0.7, 0.6, float("nan")], True) == [None, None, None]  # two valued rows: too few
    assert rank_marks([0.7, 0.6], True, min_group=2) == ["best", "second"]


def test_table1_ranks_synthetic_pathology_rows_apart_from_genomics(tmp_path):
    r = tmp_path / "results"
    patho = {"modality": "pathology", "pathology": "synthetic"}
    add_cell(r, "snn", BLCA, [[1.0]] * 5)  # genomics only: kind none, alone in its group
    add_cell(r, "snntrans", BLCA, [[0.5]] * 5)
    add_cell(r, "maxmil", BLCA, [[2 / 3]] * 5, **patho)
    add_cell(r, "meanmil", BLCA, [[5 / 6]] * 5, **patho)
    add_cell(r, "attmil", BLCA, [[0.5]] * 5, **patho)
    add_cell(r, "clam_sb", BLCA, [[1.0]] * 3, **patho)  # partial: never ranked
    t = table1(Evaluation(r), Options())
    blca, overall = t.blocks[0].headers.index("BLCA"), t.blocks[0].headers.index("Overall")
    got = {row[1]: row[blca].emphasis for row in t.blocks[0].rows if row[blca].text != "—"}
    assert got == {"SNN": None, "SNNTrans": None, "MaxMIL": "second", "MeanMIL": "best", "AttMIL": None,
                   "CLAM-SB": None}
    assert all(row[overall].emphasis is None for row in t.blocks[0].rows)
    csv = t.frame[t.frame["cohort"] == "BLCA"].set_index("method")["rank"]
    assert csv["meanmil"] == 1 and csv["maxmil"] == 2 and pd.isna(csv["snn"])
    assert any("same pathology features" in n for n in t.notes)


# ----------------------------------------------------------------------------------------------
# --style paper


@pytest.fixture
def paper_store(tmp_path):
    r = tmp_path / "results"
    mm = {"modality": "multimodal", "pathology": "synthetic"}
    add_cell(r, "snn", BLCA, [[1.0], [5 / 6], [2 / 3], [1.0], [0.5]])
    add_cell(r, "snn", BRCA, [[1.0]] * 5)
    add_cell(r, "mcat", BLCA, [[5 / 6]] * 5, **mm)
    add_cell(r, "ccl", BLCA, [[1.0]] * 5, **mm)
    return Evaluation(r)


def test_sci_text_writes_p_values_as_powers_of_ten():
    assert sci_text("1.7e-6", "latex") == r"$1.7\times10^{-6}$"
    assert sci_text("9.8e-32 (3/5 folds)", "markdown") == "9.8×10^-32 (3/5 folds)"
    assert sci_text("5.0e-1 & 100%", "latex") == r"$5.0\times10^{-1}$ \& 100\%"
    assert sci_text("0.6862 ± 0.0253", "terminal") == "0.6862 ± 0.0253"


def test_paper_style_table1_layout(paper_store):
    default, = build_tables(paper_store, "1", opts=Options(compare_paper=True))
    paper, = build_tables(paper_store, "1", opts=Options(style="paper", compare_paper=True))
    b = paper.blocks[0]
    assert b.super_headers == [("Methods", 1), ("Modality", 1), ("Datasets", 5), ("Overall", 1)]
    assert b.headers == ["", "", "BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC", ""]
    rows = {row[0]: row for row in b.rows}
    snn = default.blocks[0].rows[0]
    cols = default.blocks[0].headers
    assert rows["SNN"][:4] == ["SNN", "Genomics", snn[cols.index("BLCA")], snn[cols.index("BRCA")]]
    assert rows["SNNTrans"][1] == "Genomics" and rows["CCL"][1] == "Multimodal"  # every row names its modality
    tex = render(paper, "latex")
    assert r"Methods & Modality & \multicolumn{5}{c}{Datasets} & Overall \\" in tex
    names = next(line for line in tex.split("\n") if "BLCA" in line and "UCEC" in line and "Datasets" not in line)
    assert [x.strip() for x in names.rstrip("\\ ").split("&")] == ["", "", "BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC", ""]
    assert tex.index(r"\multicolumn{5}{c}{Datasets}") < tex.index(names)
    md = render(paper, "markdown").split("\n")
    assert md[2].replace(" ", "") == "|Methods|Modality|Datasets|||||Overall|"
    assert "**BLCA**" in md[4] and "**UCEC**" in md[4]
    term = render(paper, "terminal").split("\n")
    assert term[2].split() == ["Methods", "Modality", "Datasets", "Overall"] and term[3].split()[0] == "BLCA"
    assert any("default style" in n for n in paper.notes)  # the --compare-paper columns were left out
    assert paper.frame.equals(default.frame)  # CSV is the same tidy frame


def test_paper_style_table2_p_values_and_table3_models(paper_store):
    default, = build_tables(paper_store, "2")
    paper, = build_tables(paper_store, "2", opts=Options(style="paper"))
    assert paper.blocks[0].headers == ["Methods", "BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC"]
    p, _, _ = paper_store.cell("snn", BLCA).logrank("paper")
    text = format_p(p)
    mant, exp = text.split("e")
    snn = next(row for row in paper.blocks[0].rows if row[0] == "SNN")
    assert snn[1] == text and default.blocks[0].headers[1] == "BLCA median"
    assert rf"${mant}\times10^{{{exp}}}$" in render(paper, "latex")
    assert f"{mant}×10^{exp}" in render(paper, "markdown") and f"{mant}×10^{exp}" in render(paper, "terminal")
    assert text in render(default, "markdown")  # the default style keeps 1.7e-6
    t3 = table3(paper_store, Options())
    b = paper_style(t3, ["BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC"]).blocks[0]
    assert b.super_headers == [("Models", 4), ("Datasets", 5), ("Overall", 1)]
    assert b.headers[:4] == ["", "CCA", "MKD", "CGM"]


def test_super_headers_must_cover_the_columns():
    from bench._core.errors import BenchError

    t = Table("t", "T", [Block("", ["a", "b"], [["1", "2"]], [("ab", 3)])])
    with pytest.raises(BenchError, match="span 3 columns, the table has 2"):
        render(t, "markdown")


def test_cli_style_paper_and_bad_style(toy):
    from bench.cli import app
    from bench.data.cohort import load_cohort

    co = load_cohort(toy.settings, toy.cohort)
    for k, split in enumerate(co.splits):
        t, c = co.time[split.val], co.censorship[split.val].astype(int)
        ids = [co.case_ids[i] for i in split.val]
        add_run(toy.root / "results", "snn", "tcga_toy", k, [rows(ids, t, c, -t, epoch=1)])
    res = CliRunner().invoke(app, ["tables", "--table", "1", "--style", "paper", "--format", "latex",
                                   "--metric", "antolini"])
    assert res.exit_code == 0, res.output
    assert r"\multicolumn{6}{c}{Datasets}" in res.output and "Antolini" in res.output
    every = CliRunner().invoke(app, ["tables", "--table", "1", "--metric", "all", "--format", "csv",
                                     "--bootstrap", "100"])
    assert every.exit_code == 0, every.output
    assert all(f"table1_best-val_{m}," in every.output for m in METRICS)  # one CSV table per metric
    bad = CliRunner().invoke(app, ["tables", "--style", "journal"])
    assert "unknown style 'journal'; choose one of default, paper" in str(bad.exception)  # main() exits 2
