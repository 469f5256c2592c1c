"""Figures 6 and 7 and the per-epoch plots are written, and show the statistics of known predictions."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test
from matplotlib.text import Text
from scipy.stats import ttest_ind
from store_builder import add_cell, add_run, rows
from typer.testing import CliRunner

from bench._core.errors import BenchError
from bench.report.evaluation import Evaluation
from bench.report.figures import (
    CALIBRATION_SIZE,
    MAX_CENSOR_MARKS,
    MIN_FONT,
    PNG_DPI,
    WIDTH,
    build_calibration,
    build_epochs,
    build_km,
    build_ttest,
    censor_mark_times,
    check_formats,
    choose_method,
    draw_figures,
    epoch_figures,
    km_figure,
    numbers_at_risk,
    time_ticks,
    ttest_figure,
)
from bench.report.tables import format_p

PNG = b"\x89PNG\r\n\x1a\n"
FIVE = ("tcga_blca", "tcga_brca", "tcga_gbmlgg", "tcga_luad", "tcga_ucec")
EDGES = [0.0, 25.0, 50.0, 75.0, 101.0]


def _store(results, method: str = "ccl", cohorts=("tcga_blca", "tcga_luad"), epochs: int = 3, splits=None,
           censored: dict[str, float] | None = None, surv: bool = False, whole: bool = False):
    """5 folds x 12 patients per cohort; risk = -time at the last epoch (noisier before). ``splits``: the
    (val ids, train ids) of each cohort's folds, for a store that verifies against a project's splits.
    ``censored``: a cohort's censoring rate (default 0.3); ``surv``: store 4 survival columns (falling with
    the risk) and the bin edges :data:`EDGES`; ``whole``: whole-month times, so that some equal a tick."""
    rng = np.random.default_rng(1)
    for cohort in cohorts:
        for k in range(5):
            ids, train = splits[cohort][k] if splits else ([f"{cohort}-{k}-{i}" for i in range(12)],
                                                           [f"T{k}{i}" for i in range(40)])
            t = rng.integers(1, 101, len(ids)).astype(float) if whole else rng.uniform(1, 100, len(ids)).round(2)
            c = (rng.random(len(ids)) < (censored or {}).get(cohort, 0.3)).astype(int)

            def curves(risk):
                return np.exp(-np.outer(np.exp(risk / 50.0), [0.2, 0.5, 0.9, 1.4])) if surv else None

            frames = []
            for e in range(1, epochs + 1):
                risk = -t + rng.normal(0, 30 * (epochs - e), len(ids))
                frames.append(rows(ids, t, c, risk, epoch=e, surv=curves(risk)))
            train_time, train_risk = rng.uniform(1, 100, len(train)), rng.normal(size=len(train))
            frames.append(rows(train, train_time, np.zeros(len(train), int), train_risk, epoch=epochs, split="train",
                               surv=curves(train_risk)))
            add_run(results, method, cohort, k, frames, modality="multimodal", pathology="real", title=method.upper(),
                    edges=EDGES if surv else None)
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
    assert stats[0]["p"] == pytest.approx(logrank_test(t[high], t[~high], e[high], e[~high]).p_value, rel=1e-9)
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
    assert names == [f"{stem}.{fmt}" for stem in ("epochs_meanmil_TOY", "fig6_km_meanmil", "fig7_ttest_meanmil")
                     for fmt in ("pdf", "png")]
    assert "log-rank p" in res.output and "Welch's t-test" in res.output
    # no survival columns stored: no calibration figure, and it says why
    assert "no calibration figure of meanmil on TOY: fold 0 has no stored survival columns" in res.output
    res = CliRunner().invoke(app, ["figures", "--out", "png-only", "--fig", "6", "--format", "png"])
    assert res.exit_code == 0, res.output
    assert [p.name for p in (toy.root / "png-only").iterdir()] == ["fig6_km_meanmil.png"]
    res = CliRunner().invoke(app, ["figures", "--format", "svg"])
    assert isinstance(res.exception, BenchError) and "choose png, pdf or both" in str(res.exception)
    res = CliRunner().invoke(app, ["figures", "--fig", "7", "--method", "nope"])
    assert isinstance(res.exception, BenchError) and "no stored runs of method 'nope'" in str(res.exception)


# ----------------------------------------------------------------------------------------------
# Journal layout: numbers at risk, censor marks, sizes, text on the canvas


def test_numbers_at_risk_count_patients_with_time_at_least_tick():
    time = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 8.0])
    # a patient whose time equals the tick is still at risk there (T >= t, not T > t)
    assert numbers_at_risk(time, [0, 2, 3, 5, 6, 8, 9]).tolist() == [7, 6, 4, 3, 1, 1, 0]
    # lifelines' event table counts the risk set the same way at every observed time
    at = KaplanMeierFitter().fit(time, np.ones(len(time))).event_table["at_risk"]
    assert numbers_at_risk(time, at.index.to_numpy()).tolist() == at.astype(int).tolist()


def test_time_ticks_are_round_and_inside_the_follow_up():
    assert time_ticks(100.0).tolist() == [0, 20, 40, 60, 80, 100]
    assert time_ticks(163.2).tolist() == [0, 50, 100, 150]
    assert time_ticks(37.2).tolist() == [0, 10, 20, 30]


def test_censor_marks_thinned_evenly_in_time_order():
    time = np.arange(1.0, 101.0)
    cens = np.ones(100)
    cens[::10] = 0  # 90 censored at 2..10, 12..20, ...
    marks = censor_mark_times(time, cens)
    pool = time[cens == 1]
    assert len(marks) == MAX_CENSOR_MARKS and (marks[0], marks[-1]) == (pool[0], pool[-1])
    assert set(np.diff(np.searchsorted(pool, marks)).tolist()) <= {4, 5}  # every 89/19-th censoring
    few = censor_mark_times(time[:20], cens[:20])  # 18 censorings: all marked
    assert few.tolist() == time[:20][cens[:20] == 1].tolist()


def test_formats_both_or_one():
    assert check_formats("both") == ("png", "pdf") and check_formats("pdf") == ("pdf",)
    with pytest.raises(BenchError, match="unknown figure format 'svg'"):
        check_formats("svg")


def _texts(fig):
    """Every visible, non-empty text artist a draw places: figure texts, titles, labels, legend entries and the
    tick labels inside each axis' view (ticks outside it exist but are not drawn)."""
    tick_labels, drawn = set(), set()
    for ax in fig.axes:
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                tick_labels |= {id(tick.label1), id(tick.label2)}
                if min(lo, hi) - 1e-9 <= tick.get_loc() <= max(lo, hi) + 1e-9:
                    drawn |= {id(tick.label1), id(tick.label2)}
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
            and (id(t) not in tick_labels or id(t) in drawn)]


def _check_canvas(fig, size):
    """The figure's size in inches, every text inside the canvas and at least MIN_FONT pt, legends outside the
    data areas; returns all its text."""
    assert tuple(fig.get_size_inches()) == pytest.approx(size)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    canvas = fig.bbox
    texts = _texts(fig)
    for t in texts:
        bb = t.get_window_extent(r)
        assert (bb.x0 >= canvas.x0 - 0.5 and bb.y0 >= canvas.y0 - 0.5 and bb.x1 <= canvas.x1 + 0.5
                and bb.y1 <= canvas.y1 + 0.5), f"text {t.get_text()!r} leaves the canvas: {bb} vs {canvas}"
        assert t.get_fontsize() >= MIN_FONT, f"text {t.get_text()!r} at {t.get_fontsize()} pt"
    assert all(ax.get_legend() is None for ax in fig.axes)
    for leg in fig.legends:
        lb = leg.get_window_extent(r)
        assert not any(lb.overlaps(ax.get_window_extent(r)) for ax in fig.axes), "a legend covers an axes"
        assert canvas.x0 <= lb.x0 and lb.x1 <= canvas.x1 and canvas.y0 <= lb.y0 and lb.y1 <= canvas.y1
    return "\n".join(t.get_text() for t in texts)


def _png_width(path) -> int:
    data = path.read_bytes()
    assert data[:8] == PNG
    return struct.unpack(">I", data[16:20])[0]


def _pdf_width_pt(path) -> float:
    box = re.search(rb"/MediaBox \[ *0 0 ([0-9.]+) ([0-9.]+) *\]", path.read_bytes())
    assert box is not None
    return float(box.group(1))


def test_every_figure_at_journal_size_with_its_text_on_the_canvas(tmp_path):
    ev = _store(tmp_path / "results", cohorts=FIVE, censored={"tcga_brca": 0.9}, surv=True, whole=True)

    # Fig. 6: 7.2 in wide, 5 panels in rows of 3 / 2, numbers at risk (T >= t) at exactly the axis' ticks
    fig, stats = build_km(ev, "ccl")
    text = _check_canvas(fig, (WIDTH, fig.get_size_inches()[1]))
    assert fig.get_size_inches()[1] < 9.7  # fits a page
    km_axes, risk_axes = fig.axes[0::2], fig.axes[1::2]
    assert len(km_axes) == 5 and sorted({round(ax.get_position().y0, 3) for ax in km_axes}, reverse=True) == [
        round(km_axes[0].get_position().y0, 3), round(km_axes[3].get_position().y0, 3)]
    assert len({round(ax.get_position().y0, 3) for ax in km_axes[:3]}) == 1
    assert "T ≥ t" in text and "high risk (risk ≥ median)" in text
    differs = False
    for ax, rax, s, cohort in zip(km_axes, risk_axes, stats, FIVE, strict=True):
        t, _, high = _pooled(ev, "ccl", cohort)
        lo, hi = ax.get_xlim()
        ticks = [x for x in ax.get_xticks() if lo <= x <= hi]
        assert ticks == s["ticks"] and ticks[0] == 0 and hi >= t.max()
        placed = {(round(x.get_position()[0], 9), x.get_position()[1]): x.get_text() for x in rax.texts}
        for row, group in ((1, high), (0, ~high)):
            expected = [int((t[group] >= x).sum()) for x in ticks]
            assert [placed[(round(x, 9), row)] for x in ticks] == [str(n) for n in expected]
            differs |= expected != [int((t[group] > x).sum()) for x in ticks]
        assert len(rax.texts) == 2 * len(ticks)
        assert f"log-rank p = {format_p(s['p'])}" in ax.get_title()
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("months", "survival probability")
        marks = [ln for ln in ax.get_lines() if ln.get_marker() == "|"]
        if cohort == "tcga_brca":  # 90% censored: no marks, and the panel says so
            assert not s["censor_marks"] and not marks and "no censor marks" in ax.get_title()
        else:
            assert s["censor_marks"] and marks and all(len(ln.get_xdata()) <= MAX_CENSOR_MARKS for ln in marks)
    assert differs  # some times sit on a tick, so T >= t and T > t differ somewhere

    # Fig. 7: the caption says what the sign of t means; risk = -time, so the high-risk group lived shorter
    fig, stats = build_ttest(ev, "ccl")
    text = _check_canvas(fig, (WIDTH, fig.get_size_inches()[1]))
    assert "t < 0 means the high-risk group lived shorter than the low-risk group" in text
    for ax, s in zip(fig.axes, stats, strict=True):
        assert f"t = {s['t']:.2f}, p = {format_p(s['p'])}" in ax.get_title() and s["t"] < 0
    assert fig.axes[0].get_ylabel() == "survival months (uncensored)"

    # per-epoch plot: legend below the axes
    fig = build_epochs(ev, "ccl", "tcga_blca")
    text = _check_canvas(fig, (WIDTH, 4.4))
    assert "best-val mean" in text and fig.legends
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("epoch", "validation C-index")

    # calibration: tau from the training folds, KM-observed and mean predicted S(tau) per risk decile
    fig, info = build_calibration(ev, "ccl", "tcga_blca")
    text = _check_canvas(fig, CALIBRATION_SIZE)
    seed = ev.cell("ccl", "tcga_blca").used[0]
    tau = round(min(float(np.quantile(f.train.drop_duplicates("case_id")["survival_months"], 0.8))
                    for f in seed.ordered()), 1)
    assert info["tau"] == tau and info["n"] == 60 and len(info["table"]) == 10
    assert f"Predicted survival at {tau:g} months" in text and "folds pooled" in text
    pooled = seed.pooled()
    risk, t = pooled["risk"].to_numpy(), pooled["survival_months"].to_numpy()
    step = np.column_stack([np.ones(len(pooled)), pooled[[f"surv_{k}" for k in range(4)]].to_numpy()])
    s_tau = step[:, np.searchsorted(EDGES[1:], tau, side="right")]
    for g in info["table"]:
        m = (risk >= g["risk_min"]) & (risk <= g["risk_max"])
        assert g["n"] == m.sum() and g["predicted"] == pytest.approx(s_tau[m].mean())
        km = float(KaplanMeierFitter().fit(t[m], pooled["censorship"].to_numpy()[m] < 0.5).predict(tau))
        # horizon.py: unknown (NaN) past a group's last time unless its curve reached 0
        expected = km if tau <= t[m].max() or km == 0 else float("nan")
        assert g["observed"] == pytest.approx(expected, nan_ok=True)
    assert any(np.isfinite(g["observed"]) for g in info["table"])



def test_figures_written_as_png_and_pdf_at_their_own_size(tmp_path):
    ev = _store(tmp_path / "results", cohorts=("tcga_ucec",), surv=True)
    out = tmp_path / "figs"
    lines: list[str] = []
    draw_figures(ev, ["ccl"], ("6", "7", "epochs", "calibration"), out, epoch_methods=["ccl"], log=lines.append)
    stems = ["fig6_km_ccl", "fig7_ttest_ccl", "epochs_ccl_UCEC", "calibration_ccl_UCEC"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.{f}" for s in stems for f in ("png", "pdf"))
    assert all(f"wrote {out / f'{s}.pdf'}" in "\n".join(lines) for s in stems)
    assert _png_width(out / "fig6_km_ccl.png") == round(WIDTH * PNG_DPI)
    assert _pdf_width_pt(out / "fig6_km_ccl.pdf") == pytest.approx(WIDTH * 72)
    assert _pdf_width_pt(out / "fig7_ttest_ccl.pdf") == pytest.approx(WIDTH * 72)
    assert _png_width(out / "calibration_ccl_UCEC.png") == round(CALIBRATION_SIZE[0] * PNG_DPI)


def test_saved_figures_are_byte_identical_across_saves(tmp_path):
    import matplotlib.pyplot as plt

    from bench.report.figures import save

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    for fmt in ("pdf", "png"):
        a, b = save(fig, tmp_path / f"a.{fmt}", fmt), save(fig, tmp_path / f"b.{fmt}", fmt)
        assert a.read_bytes() == b.read_bytes()
    assert b"CreationDate" not in (tmp_path / "a.pdf").read_bytes()
    plt.close(fig)
