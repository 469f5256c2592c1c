"""Figures 6 and 7 and the per-epoch plots are written, and show the statistics of known predictions."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines.statistics import logrank_test
from scipy.stats import ttest_ind
from store_builder import add_cell, add_run, rows
from typer.testing import CliRunner

from bench._core.errors import BenchError
from bench.report.evaluation import Evaluation
from bench.report.figures import choose_method, epoch_figures, km_figure, ttest_figure

PNG = b"\x89PNG\r\n\x1a\n"


def _store(results, method: str = "ccl", cohorts=("tcga_blca", "tcga_luad"), epochs: int = 3, splits=None):
    """5 folds x 12 patients per cohort; risk = -time at the last epoch (noisier before). ``splits``: the
    (val ids, train ids) of each cohort's folds, for a store that verifies against a project's splits."""
    rng = np.random.default_rng(1)
    for cohort in cohorts:
        for k in range(5):
            ids, train = splits[cohort][k] if splits else ([f"{cohort}-{k}-{i}" for i in range(12)],
                                                           [f"T{k}{i}" for i in range(40)])
            t = rng.uniform(1, 100, len(ids)).round(2)
            c = (rng.random(len(ids)) < 0.3).astype(int)
            frames = [rows(ids, t, c, -t + rng.normal(0, 30 * (epochs - e), len(ids)), epoch=e)
                      for e in range(1, epochs + 1)]
            frames.append(rows(train, rng.uniform(1, 100, len(train)), np.zeros(len(train), int),
                               rng.normal(size=len(train)), epoch=epochs, split="train"))
            add_run(results, method, cohort, k, frames, modality="multimodal", pathology="real", title=method.upper())
    return Evaluation(results)


def _pooled(ev, method, cohort):
    pooled = ev.cell(method, cohort, protocol="best-val").used[0].pooled()
    t, e, r = pooled["survival_months"].to_numpy(), pooled["censorship"].to_numpy() < 0.5, pooled["risk"].to_numpy()
    return t, e, r >= np.median(r)


def test_fig6_km_curves_and_logrank(tmp_path):
    ev = _store(tmp_path / "results")
    path, stats = km_figure(ev, "ccl", tmp_path / "figs" / "fig6.png")
    assert path.read_bytes()[:8] == PNG
    assert [s["cohort"] for s in stats] == ["BLCA", "LUAD"]
    t, e, high = _pooled(ev, "ccl", "tcga_blca")
    assert stats[0]["p"] == logrank_test(t[high], t[~high], e[high], e[~high]).p_value
    assert (stats[0]["n_high"], stats[0]["n_low"]) == (30, 30)


def test_fig7_welch_ttest_of_uncensored_times(tmp_path):
    ev = _store(tmp_path / "results")
    path, stats = ttest_figure(ev, "ccl", tmp_path / "fig7.pdf", fmt="pdf")
    assert path.read_bytes()[:4] == b"%PDF"
    t, e, high = _pooled(ev, "ccl", "tcga_luad")
    expected = ttest_ind(t[e & high], t[e & ~high], equal_var=False)
    assert (stats[1]["t"], stats[1]["p"]) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    assert stats[1]["n_high"] == int((e & high).sum())
    _, every = ttest_figure(ev, "ccl", tmp_path / "fig7_all.png", on="all")
    assert every[1]["p"] == pytest.approx(ttest_ind(t[high], t[~high], equal_var=False).pvalue)
    with pytest.raises(BenchError, match="unknown --ttest"):
        ttest_figure(ev, "ccl", tmp_path / "x.png", on="censored")


def test_epoch_plots_per_method_and_cohort(tmp_path):
    _store(tmp_path / "results")
    add_cell(tmp_path / "results", "snn", "tcga_blca", [[1.0]] * 5)  # single epoch: nothing to plot
    paths = epoch_figures(Evaluation(tmp_path / "results"), tmp_path / "figs")
    assert sorted(p.name for p in paths) == ["epochs_ccl_BLCA.png", "epochs_ccl_LUAD.png"]
    assert all(p.read_bytes()[:8] == PNG for p in paths)


def test_default_method_is_ccl_else_the_best(tmp_path):
    ev = _store(tmp_path / "a", method="ccl")
    assert choose_method(ev, "best-val") == "ccl"
    add_cell(tmp_path / "b", "snn", "tcga_blca", [[2 / 3]] * 5)
    add_cell(tmp_path / "b", "maxmil", "tcga_blca", [[1.0]] * 5)
    add_cell(tmp_path / "b", "attmil", "tcga_blca", [[1.0]] * 4)  # partial: not a candidate
    assert choose_method(Evaluation(tmp_path / "b"), "best-val") == "maxmil"


def test_cli_figures(toy):
    from bench.cli import app
    from bench.data.cohort import load_cohort

    co = load_cohort(toy.settings, toy.cohort)
    splits = {"tcga_toy": [([co.case_ids[i] for i in s.val], [co.case_ids[i] for i in s.train]) for s in co.splits]}
    _store(toy.root / "results", method="meanmil", cohorts=("tcga_toy",), splits=splits)
    res = CliRunner().invoke(app, ["figures", "--out", "figs"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (toy.root / "figs").iterdir())
    assert names == ["epochs_meanmil_TOY.png", "fig6_km_meanmil.png", "fig7_ttest_meanmil.png"]
    assert "log-rank p" in res.output and "Welch's t-test" in res.output
    res = CliRunner().invoke(app, ["figures", "--fig", "7", "--method", "nope"])
    assert isinstance(res.exception, BenchError) and "no stored runs of method 'nope'" in str(res.exception)
