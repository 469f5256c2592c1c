"""Tables I-IV from hand-built stores with known predictions: exact values, p-values, formats, marks, gaps."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from lifelines.statistics import logrank_test
from sksurv.metrics import concordance_index_ipcw, integrated_brier_score
from store_builder import RISKS, TIMES, add_cell, add_run, rows
from typer.testing import CliRunner

from bench.api import paper_table
from bench.metrics import survival as sm
from bench.metrics.concordance import cindex
from bench.report.evaluation import Evaluation, parse_variant
from bench.report.render import Mark, render
from bench.report.tables import Options, build_tables, format_p, table1, table2, table3, table4

BLCA, BRCA = "tcga_blca", "tcga_brca"


def test_risk_orders_have_the_stated_cindex():
    for c, risk in RISKS.items():
        assert cindex(np.array(TIMES), np.zeros(4), np.array(risk)) == pytest.approx(c, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Table I


@pytest.fixture
def store(tmp_path):
    """SNN (2 epochs) with known per-fold C, MeanMIL, partial AttMIL, 2-seed SNN on BRCA, MaxMIL on all
    five cohorts, SNNTrans with the 'latest' tie rule, an imported unregistered method."""
    r = tmp_path / "results"
    snn = [[1, 5 / 6], [5 / 6, 5 / 6], [2 / 3, 1], [1, 0.5], [5 / 6, 1]]  # per fold: epoch 1, epoch 2
    add_cell(r, "snn", BLCA, snn)
    add_cell(r, "snntrans", "tcga_ucec", snn, tie="latest")
    add_cell(r, "meanmil", BLCA, [[5 / 6]] * 5, modality="pathology", pathology="synthetic")
    add_cell(r, "attmil", BLCA, [[1.0]] * 3, modality="pathology", pathology="synthetic")
    add_cell(r, "snn", BRCA, [[1.0]] * 5, seed=0)
    add_cell(r, "snn", BRCA, [[0.5]] * 5, seed=1)
    for cohort, c in zip([BLCA, BRCA, "tcga_gbmlgg", "tcga_luad", "tcga_ucec"], [0.5, 5 / 6, 2 / 3, 0.5, 1.0],
                         strict=True):
        add_cell(r, "maxmil", cohort, [[c]] * 5, modality="pathology", pathology="real")
    add_cell(r, "ext", BLCA, [[2 / 3]] * 5, title="External", imported=True)
    return Evaluation(r)


def _row(table, label, block=0):
    return next(row for row in table.blocks[block].rows if row[1] == label)


def _col(table, header, block=0):
    return table.blocks[block].headers.index(header)


def test_table1_best_val_values_marks_and_gaps(store):
    t = table1(store, Options(protocol="best-val"))
    blca, brca, overall = _col(t, "BLCA"), _col(t, "BRCA"), _col(t, "Overall")
    # SNN best-val folds: 1, 5/6 (tie, earliest), 1, 1, 1 -> mean 29/30, population std 1/15
    # no marks anywhere: each pathology kind (none: SNN, External; synthetic: MeanMIL, AttMIL; real: MaxMIL) has
    # fewer than 3 complete cells per column (ranking rules: tests/report/test_tables_metrics.py)
    assert _row(t, "SNN")[blca] == Mark("0.9667 ± 0.0667", None)
    assert _row(t, "MeanMIL")[blca] == Mark("0.8333 ± 0.0000", None)
    assert _row(t, "AttMIL")[blca] == Mark("1.0000 ± 0.0000 (3/5 folds)", None)  # partial: never ranked
    assert _row(t, "External")[blca] == Mark("0.6667 ± 0.0000", None)
    assert _row(t, "MaxMIL")[blca] == Mark("0.5000 ± 0.0000", None)
    # two seeds: each fold averaged over the seeds (0.75), then mean ± std over folds
    assert _row(t, "SNN")[brca] == Mark("0.7500 ± 0.0000", None)
    assert _row(t, "MaxMIL")[brca] == Mark("0.8333 ± 0.0000 (1/2 seeds)", None)  # fewer seeds than SNN
    # Overall only where all five cohorts are complete: (0.5 + 5/6 + 2/3 + 0.5 + 1) / 5
    assert _row(t, "MaxMIL")[overall] == Mark("0.7000", None)
    assert _row(t, "SNN")[overall] == Mark("—", None)
    assert _row(t, "SNN")[_col(t, "GBMLGG")] == Mark("—", None)
    spread = t.blocks[1]
    assert spread.rows == [["Genomics", "SNN", "—", "0.2500 (n=2)", "—", "—", "—"]]


def test_table1_lists_every_paper_row_grouped_and_store_methods_last(store):
    t = table1(store, Options())
    labels = [row[1] for row in t.blocks[0].rows]
    paper = list(paper_table("table1_cindex")["method"])
    assert [x for x in labels if x in paper] == paper
    assert labels[-1] == "External"
    modalities = [row[0] for row in t.blocks[0].rows if row[0]]
    assert modalities[:3] == ["Genomics", "Pathology", "Multimodal"]


def test_table1_commands_fill_missing_and_partial_cells(store):
    t = table1(store, Options(runnable=None))
    assert "bench run --method attmil --cohort BLCA --folds 3,4" in t.commands
    assert "bench run --method snn --cohort GBMLGG" in t.commands
    assert "bench results import FILE --method ext --cohort BRCA" in t.commands
    assert not any(c.startswith("bench run --method snn --cohort BLCA") for c in t.commands)
    assert not any("--seed" in c for c in t.commands)  # the default seed 0 is in the store
    only = table1(store, Options(runnable=(BLCA,)))
    assert all("--cohort BLCA" in c for c in only.commands)


def test_table1_last_protocol_ties_share_bold(store):
    t = table1(store, Options(protocol="last"))
    blca = _col(t, "BLCA")
    # SNN last epoch: 5/6, 5/6, 1, 1/2, 1 -> 5/6 ± sqrt(1/30)
    assert _row(t, "SNN")[blca] == Mark("0.8333 ± 0.1826", None)  # ties sharing marks: test_tables_metrics.py
    assert _row(t, "MeanMIL")[blca] == Mark("0.8333 ± 0.0000", None)
    assert _row(t, "External")[blca] == Mark("0.6667 ± 0.0000", None)


def test_tie_rule_comes_from_the_manifest(store):
    earliest = store.cell("snn", BLCA, protocol="best-val").used[0].folds[1]
    latest = store.cell("snntrans", "tcga_ucec", protocol="best-val").used[0].folds[1]
    assert (earliest.epoch, latest.epoch) == (1, 2)
    assert earliest.cindex == latest.cindex == pytest.approx(5 / 6)


def test_compare_paper_columns(store):
    t = table1(store, Options(protocol="best-val", compare_paper=True))
    snn = _row(t, "SNN")
    assert snn[_col(t, "BLCA paper")] == "0.6339 ± 0.0509"
    assert snn[_col(t, "BLCA Δ")] == "+0.3328"  # 29/30 - 0.6339
    assert snn[_col(t, "BLCA opt.")] == "+0.1333"  # best-val 29/30 minus last 5/6
    maxmil = _row(t, "MaxMIL")
    assert maxmil[_col(t, "Overall paper")] == "0.6039"
    assert maxmil[_col(t, "Overall Δ")] == "+0.0961"
    assert maxmil[_col(t, "Overall opt.")] == "+0.0000"
    assert _row(t, "External")[_col(t, "BLCA paper")] == "—"


def test_formats_markup(store):
    t = table1(store, Options())
    blca = _col(t, "BLCA")  # marks set by hand: this store's groups are too small to be ranked
    _row(t, "SNN")[blca] = Mark(_row(t, "SNN")[blca].text, "best")
    _row(t, "MeanMIL")[blca] = Mark(_row(t, "MeanMIL")[blca].text, "second")
    md = render(t, "markdown")
    assert "**0.9667 ± 0.0667**" in md and "<u>0.8333 ± 0.0000</u>" in md
    assert "| Genomics   | SNN" in md
    tex = render(t, "latex")
    assert r"\textbf{0.9667 $\pm$ 0.0667}" in tex and r"\underline{0.8333 $\pm$ 0.0000}" in tex
    assert r"\begin{tabular}" in tex and "% bench run --method snn --cohort GBMLGG" in tex
    plain = render(t, "terminal")
    assert "0.9667 ± 0.0667" in plain and "**" not in plain and "\x1b[" not in plain
    assert "\x1b[1m0.9667 ± 0.0667\x1b[0m" in render(t, "terminal", color=True)
    csv = pd.read_csv(io.StringIO(render(t, "csv")))
    snn = csv[(csv["method"] == "snn") & (csv["cohort"] == "BLCA")].iloc[0]
    assert snn["mean"] == pytest.approx(29 / 30, abs=1e-12) and snn["std"] == pytest.approx(1 / 15, abs=1e-12)
    assert pd.isna(snn["rank"]) and snn["protocol"] == "best-val" and snn["genomics_build"] == "mutsig"
    brca = csv[(csv["method"] == "snn") & (csv["cohort"] == "BRCA")].iloc[0]
    assert brca["n_seeds"] == 2 and brca["seed_spread"] == pytest.approx(0.25) and brca["seeds"] == "0;1"


def test_notes_state_the_data(store):
    notes = " ".join(table1(store, Options(protocol="last")).notes)
    assert "Protocol last" in notes
    assert "Genomics build: mutsig (every cell)." in notes
    assert "synthetic (MeanMIL, AttMIL)" in notes and "real (MaxMIL)" in notes and "SYNTHETIC" in notes
    assert "Seeds: 0, 1 — a cell with several seeds" in notes
    assert "Imported predictions (bench results import): External." in notes


# ----------------------------------------------------------------------------------------------
# Table II


@pytest.fixture
def logrank_store(tmp_path):
    """SNN on BLCA: 5 folds x 4 patients, times 1..20 (every 4th censored), risk = 21 - time; each
    fold's training risks are [5, 20] (median 12.5)."""
    r = tmp_path / "results"
    for k in range(5):
        t = np.arange(4 * k + 1, 4 * k + 5, dtype=float)
        ids = [f"V{k}{i}" for i in range(4)]
        val = rows(ids, t, [0, 0, 0, 1], 21 - t, epoch=1)
        train = rows([f"T{k}0", f"T{k}1"], [1.0, 2.0], [0, 0], [5.0, 20.0], epoch=1, split="train")
        add_run(r, "snn", BLCA, k, [val, train])
    return Evaluation(r)


def _p(time, event, high):
    return logrank_test(time[high], time[~high], event[high], event[~high]).p_value


def test_table2_pvalues_both_conventions(logrank_store):
    time = np.arange(1, 21, dtype=float)
    event = np.array([i % 4 != 3 for i in range(20)])
    paper_p = _p(time, event, time <= 10)  # risks 11..20 are >= the pooled median 10.5
    safe_p = _p(time, event, time <= 8)  # risks >= 12.5, the training median of every fold
    t = table2(logrank_store, Options(protocol="last", compare_paper=True))
    snn = next(row for row in t.blocks[0].rows if row[0] == "SNN")
    h = t.blocks[0].headers
    assert snn[h.index("BLCA median")] == format_p(paper_p)
    assert snn[h.index("BLCA fold-safe")] == format_p(safe_p)
    assert snn[h.index("BLCA paper")] == "1.7e-6"
    assert snn[h.index("BRCA median")] == "—"
    f = t.frame.set_index(["method", "cohort", "convention"])
    assert f.loc[("snn", "BLCA", "paper"), "p"] == pytest.approx(paper_p, rel=1e-12)
    assert f.loc[("snn", "BLCA", "fold-safe"), "p"] == pytest.approx(safe_p, rel=1e-12)
    assert (f.loc[("snn", "BLCA", "paper"), "n_high"], f.loc[("snn", "BLCA", "fold-safe"), "n_high"]) == (10, 8)
    labels = [row[0] for row in t.blocks[0].rows]
    assert labels[:7] == list(paper_table("table2_logrank_p")["method"])
    assert "fold-safe" in " ".join(t.notes) and "risk ≥ median" in " ".join(t.notes)


def test_format_p():
    assert format_p(1.7e-6) == "1.7e-6"
    assert format_p(0.0008422345714155695) == "8.4e-4"
    assert format_p(0.056) == "5.6e-2"
    assert format_p(float("nan")) == "n/a" and format_p(None) == "—"


def test_high_risk_includes_the_median():
    assert sm.high_risk(np.array([1, 2, 3, 4, 5.0]), 3.0).tolist() == [False, False, True, True, True]


# ----------------------------------------------------------------------------------------------
# Tables III and IV


@pytest.fixture
def ccl_store(tmp_path):
    r = tmp_path / "results"
    mm = {"modality": "multimodal", "pathology": "real"}
    add_cell(r, "ccl", BLCA, [[1.0]] * 5, **mm)
    add_cell(r, "ccl", BLCA, [[5 / 6]] * 5, overrides={"model.cgm": False}, **mm)
    add_cell(r, "ccl", BLCA, [[2 / 3]] * 5, overrides={"model.k": 9}, **mm)
    add_cell(r, "ccl", BLCA, [[0.5]] * 5, overrides={"model.k": 12}, **mm)
    add_cell(r, "ccl", BLCA, [[2 / 3]] * 5, overrides={"model.tau": 0.3}, **mm)
    add_cell(r, "dualtrans", BLCA, [[0.5]] * 5, **mm)
    add_cell(r, "ccl", BRCA, [[2 / 3]] * 5, overrides={"model.cca": False, "model.mkd": False, "model.cgm": False},
             **mm)
    return Evaluation(r)


def test_table3_ablation_rows_fallback_and_commands(ccl_store):
    t = table3(ccl_store, Options(compare_paper=True, runnable=None))
    body, h = t.blocks[0].rows, t.blocks[0].headers
    assert [row[:4] for row in body] == [["DualTrans (baseline)", "", "", ""], ["+CCA", "✓", "", ""],
                                         ["+CCA+MKD", "✓", "✓", ""], ["+CCA+MKD+CGM (CCL)", "✓", "✓", "✓"]]
    blca = h.index("BLCA")
    assert [row[blca] for row in body] == [Mark("0.5000 ± 0.0000", None), Mark("—", None),
                                           Mark("0.8333 ± 0.0000", "second"), Mark("1.0000 ± 0.0000", "best")]
    assert body[0][h.index("BRCA")] == Mark("0.6667 ± 0.0000", None)  # one row in the column: not ranked
    assert body[3][h.index("BLCA paper")] == "0.6862 ± 0.0253"
    assert any("dualtrans" in n and "BLCA" in n for n in t.notes)
    assert "bench run --method ccl --cohort BLCA --set mkd=false,cgm=false" in t.commands
    assert "bench run --method ccl --cohort BRCA --set cgm=false" in t.commands
    assert "bench run --method ccl --cohort GBMLGG --set cca=false,mkd=false,cgm=false" in t.commands
    assert "bench run --method ccl --cohort BLCA --set cca=false,mkd=false,cgm=false" not in t.commands


def test_table4_parameters_by_overrides(ccl_store):
    t = table4(ccl_store, Options(compare_paper=True, runnable=None))
    body, h = t.blocks[0].rows, t.blocks[0].headers
    blca = h.index("BLCA")
    k_rows = {row[1]: row for row in body[:4]}
    assert list(k_rows) == ["4", "6 (default)", "9", "12"]  # 12 is only in the store
    assert k_rows["6 (default)"][blca] == Mark("1.0000 ± 0.0000", "best")
    assert k_rows["9"][blca] == Mark("0.6667 ± 0.0000", "second")
    assert k_rows["12"][blca] == Mark("0.5000 ± 0.0000", None)
    assert k_rows["9"][h.index("BLCA paper")] == "0.6792" and k_rows["9"][h.index("BLCA Δ")] == "-0.0125"
    assert k_rows["12"][h.index("BLCA paper")] == "—"
    tau = {row[1]: row for row in body if row[1].startswith(("0.", "0.1"))}
    # ranked within the tau rows: only two of them stored, too few for marks
    assert tau["0.1 (default)"][blca] == Mark("1.0000 ± 0.0000", None)
    assert tau["0.3"][blca] == Mark("0.6667 ± 0.0000", None)
    assert body[0][0] == "k" and body[1][0] == ""
    assert "bench run --method ccl --cohort BLCA --set k=4" in t.commands
    assert "bench run --method ccl --cohort BLCA --set tau=0.05" in t.commands
    assert "bench run --method ccl --cohort BRCA" in t.commands


def test_build_tables_protocols_and_metrics(ccl_store):
    names = [t.name for t in build_tables(ccl_store, "all", ["best-val", "last"], ["cindex", "uno"], Options())]
    assert names == ["table1_best-val_cindex", "table1_best-val_uno", "table2_best-val", "table3_best-val_cindex",
                     "table3_best-val_uno", "table4_best-val_cindex", "table4_best-val_uno", "table1_last_cindex",
                     "table1_last_uno", "table2_last", "table3_last_cindex", "table3_last_uno",
                     "table4_last_cindex", "table4_last_uno"]


def test_variant_parsing_matches_overrides():
    assert parse_variant("cgm=false,mkd=false") == (("cgm", "false"), ("mkd", "false"))
    assert parse_variant("k=9.0") == parse_variant("k=9") == (("k", "9"),)
    assert parse_variant("default") == ()


# ----------------------------------------------------------------------------------------------
# Extra metrics


def test_curve_rule_steps_at_upper_edges():
    edges = [0.0, 10.0, 20.0, 30.0, 40.0]
    surv = np.array([[0.9, 0.7, 0.4, 0.2]])
    got = sm.curve_at(surv, edges, np.array([0.0, 9.99, 10.0, 15.0, 20.0, 35.0, 40.0, 99.0]))
    assert got.tolist() == [[1.0, 1.0, 0.9, 0.9, 0.7, 0.4, 0.2, 0.2]]


def test_ipcw_metrics_match_scikit_survival_on_hand_data():
    rng = np.random.default_rng(3)
    tt, tc = rng.uniform(1, 60, 80), (rng.random(80) < 0.3).astype(float)
    vt, vc = rng.uniform(1, 50, 30), (rng.random(30) < 0.3).astype(float)
    risk = -vt + rng.normal(0, 10, 30)
    train, val = sm.surv_labels(tt, tc), sm.surv_labels(vt, vc)
    assert sm.uno_cindex(tt, tc, vt, vc, risk) == concordance_index_ipcw(train, val, risk, tau=tt.max())[0]
    edges = [0.0, 15.0, 30.0, 45.0, 70.0]
    surv = np.sort(rng.uniform(0, 1, (30, 4)), axis=1)[:, ::-1]
    times = np.unique(np.percentile(vt[vc < 0.5], np.arange(10, 91, 5)))
    times = times[times < vt.max()]
    steps = np.concatenate([np.ones((30, 1)), surv], axis=1)[:, np.searchsorted(edges[1:], times, side="right")]
    assert sm.integrated_brier(tt, tc, vt, vc, surv, edges) == pytest.approx(
        integrated_brier_score(train, val, steps, times), rel=1e-12)
    assert 0.0 <= sm.mean_auc(tt, tc, vt, vc, surv, edges) <= 1.0


def test_training_labels_fall_back_to_other_folds(store):
    seed = store.cell("ext", BLCA).used[0]
    time, _ = seed.training_labels(0)
    assert len(time) == 16  # the other four folds' four validation patients


def test_pooled_metric_with_bootstrap_interval(store):
    s = store.cell("maxmil", BRCA).summary("pooled", n_resamples=200)
    pooled = store.cell("maxmil", BRCA).used[0].pooled()
    assert s.mean == cindex(pooled["survival_months"].to_numpy(), pooled["censorship"].to_numpy(),
                            pooled["risk"].to_numpy())
    assert s.low <= s.mean <= s.high and s.std is None
    assert s == store.cell("maxmil", BRCA).summary("pooled", n_resamples=200)  # seeded: reproducible


def test_uno_and_ibs_tables_are_filled(tmp_path):
    rng = np.random.default_rng(0)
    r = tmp_path / "results"
    edges = [0.0, 10.0, 20.0, 40.0, 100.0]
    for k in range(5):
        t, c = rng.uniform(1, 80, 30), (rng.random(30) < 0.3).astype(int)
        s = np.sort(rng.uniform(0, 1, (30, 4)), axis=1)[:, ::-1]
        frames = [rows([f"V{k}{i}" for i in range(30)], t, c, -s.sum(1), epoch=1, surv=s),
                  rows([f"T{k}{i}" for i in range(60)], rng.uniform(1, 90, 60), (rng.random(60) < 0.3).astype(int),
                       rng.normal(size=60), epoch=1, split="train")]
        add_run(r, "snn", BLCA, k, frames, edges=edges)
    ev = Evaluation(r)
    for metric in ("uno", "ibs", "ibs_km", "ibs_skill", "auc"):
        s = ev.cell("snn", BLCA).summary(metric)
        assert not math.isnan(s.mean) and s.std is not None
    t = table1(ev, Options(metric="ibs"))
    assert t.title.startswith("Table I — integrated Brier score")
    # the wiring, recomputed independently for fold 2: tau from the training rows only, the cohort grid from all
    # folds, Uno's C by scikit-survival at that tau, IBS of the model and of the training Kaplan-Meier on the grid
    from sksurv.nonparametric import kaplan_meier_estimator
    from sksurv.util import Surv

    seed = ev.cell("snn", BLCA).used[0]
    f = seed.folds[2]
    tt, tc = seed.training_labels(2)
    val = f.val()
    vt, vc = val["survival_months"].to_numpy(float), val["censorship"].to_numpy(float)
    tau = float(np.quantile(tt, 0.8))
    want_uno = concordance_index_ipcw(Surv.from_arrays(tc < 0.5, tt), Surv.from_arrays(vc < 0.5, vt),
                                      val["risk"].to_numpy(float), tau=tau, tied_tol=1e-8)[0]
    assert seed.fold_metric(2, "uno") == pytest.approx(want_uno, abs=1e-12)
    grid = seed.grid()
    assert grid[0] >= 10.0 and grid[-1] <= min(float(np.quantile(seed.training_labels(k)[0], 0.8)) for k in range(5))
    surv = val[[f"surv_{j}" for j in range(4)]].to_numpy(float)
    steps = np.searchsorted(edges[1:], grid, side="right")
    curves = np.concatenate([np.ones((len(val), 1)), surv], axis=1)[:, steps]
    cap = tt.max()
    labels = Surv.from_arrays((vc < 0.5) & (vt < cap), np.minimum(vt, cap))
    want_ibs = integrated_brier_score(Surv.from_arrays(tc < 0.5, tt), labels, curves, grid)
    km_t, km_s = kaplan_meier_estimator(tc < 0.5, tt)
    km = km_s[np.searchsorted(km_t, grid, side="right") - 1]
    want_km = integrated_brier_score(Surv.from_arrays(tc < 0.5, tt), labels, np.tile(km, (len(val), 1)), grid)
    assert seed.fold_metric(2, "ibs") == pytest.approx(want_ibs, abs=1e-12)
    assert seed.fold_metric(2, "ibs_km") == pytest.approx(want_km, abs=1e-12)
    assert seed.fold_metric(2, "ibs_skill") == pytest.approx(1 - want_ibs / want_km, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# CLI


def test_cli_tables_on_empty_store_explains(toy):
    from bench.cli import app

    res = CliRunner().invoke(app, ["tables"])
    assert res.exit_code == 0, res.output
    assert "holds no complete runs" in res.output and "bench run --method" in res.output


def test_cli_tables_writes_files(toy):
    from bench.cli import app
    from bench.data.cohort import load_cohort

    co = load_cohort(toy.settings, toy.cohort)
    for k, split in enumerate(co.splits):  # the fold's own val patients: tables read only runs that verify
        t, c = co.time[split.val], co.censorship[split.val].astype(int)
        ids = [co.case_ids[i] for i in split.val]
        add_run(toy.root / "results", "snn", "tcga_toy", k, [rows(ids, t, c, -t, epoch=1), rows(ids, t, c, t, epoch=2)])
    out = toy.root / "tables"
    res = CliRunner().invoke(app, ["tables", "--format", "markdown", "--out", str(out), "--protocol", "both"])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in out.iterdir())
    assert "table1_best-val_cindex.md" in files and "table2_last.md" in files and len(files) == 8
    text = (out / "table1_last_cindex.md").read_text()
    # last epoch: risk = time, every pair discordant; one genomics row, too few to rank
    assert "0.0000 ± 0.0000" in text and "**0.0000" not in text and "| TOY " in text
    assert "bench run --method snntrans --cohort TOY" in text and "--cohort BLCA" not in text


def test_notes_name_variants_a_table_does_not_show(ccl_store):
    t1 = " ".join(table1(ccl_store, Options()).notes)
    assert "Other variants in the store (show one with --variant): ccl: " in t1 and "k=9" in t1
    t3 = " ".join(table3(ccl_store, Options()).notes)
    assert "CCL variants stored but not in this table: ccl: k=12, k=9, tau=0.3." in t3
    t4 = " ".join(table4(ccl_store, Options()).notes)
    assert "CCL variants stored but not in this table: ccl: cca=false,cgm=false,mkd=false, cgm=false." in t4
