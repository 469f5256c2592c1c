"""Figures from the prediction store, drawn with matplotlib's Agg canvas (no screen needed).

* Fig. 6: Kaplan–Meier curves of the high- and low-risk groups per cohort (published convention:
  the five folds' out-of-fold risks pooled and split at their median, risk ≥ median = high risk),
  with the log-rank p (lifelines ``logrank_test``) and the numbers at risk
  (``lifelines.plotting.add_at_risk_counts``).
* Fig. 7: the paper says only "t-test between the two risk groups". We compare the observed
  survival months of the *uncensored* patients of the high- and low-risk groups (same split as
  Fig. 6) with Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``): a censored time is only
  a lower bound of the survival time, so mixing it in would compare follow-up, not survival; Welch
  because the groups need not share a variance. ``ttest_on="all"`` compares every patient's
  observed time instead.
* Per-epoch validation C-index of every fold of a method and cohort, with each fold's best-val
  epoch marked: what best-epoch selection picks, against the last epoch.

With several seeds, Fig. 6 and 7 use the lowest seed that has every fold (stated on the figure).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lifelines import KaplanMeierFitter
from lifelines.plotting import add_at_risk_counts
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tabulate import tabulate

from bench._core.errors import BenchError
from bench._core.files import atomic_path
from bench.api.paper import PAPER_COHORTS
from bench.data.cohort import canonical_name, short_name
from bench.metrics import survival as sm
from bench.report.evaluation import DEFAULT, Cell, Evaluation, Overrides, variant_label
from bench.report.tables import format_p

FIGURES = ("6", "7", "epochs")
FORMATS = ("png", "pdf")
TTEST_ON = ("uncensored", "all")
HIGH, LOW = "tab:red", "tab:blue"


@dataclass
class RiskGroups:
    """One cohort's pooled out-of-fold patients and their median-split risk groups."""

    cohort: str
    seed: int
    time: np.ndarray
    censorship: np.ndarray
    high: np.ndarray
    partial: bool


def risk_groups(cell: Cell) -> RiskGroups:
    """The published split of a cell's first used seed: pooled risks, high = risk >= median."""
    seed = cell.used[0]
    pooled = seed.pooled()
    risk = pooled["risk"].to_numpy(dtype=float)
    return RiskGroups(cell.cohort, seed.seed, pooled["survival_months"].to_numpy(dtype=float),
                      pooled["censorship"].to_numpy(dtype=float), sm.high_risk(risk, float(np.median(risk))),
                      cell.partial)


def _cohort_order(cohorts: list[str]) -> list[str]:
    paper = [canonical_name(c) for c in PAPER_COHORTS]
    return [c for c in paper if c in cohorts] + sorted(c for c in cohorts if c not in paper)


def method_cells(ev: Evaluation, method: str, protocol: str, variant: Overrides = DEFAULT) -> list[Cell]:
    cells = [ev.cell(method, c, variant, protocol) for c in _cohort_order(ev.cohorts())]
    return [c for c in cells if c is not None]


def complete_methods(ev: Evaluation, protocol: str, variant: Overrides = DEFAULT) -> list[str]:
    """Methods stored with every fold of every paper cohort (their Figs. 6-7 have all five panels)."""
    paper = [canonical_name(c) for c in PAPER_COHORTS]
    return [m for m in ev.methods()
            if all((cell := ev.cell(m, c, variant, protocol)) is not None and not cell.partial for c in paper)]


def choose_method(ev: Evaluation, protocol: str, variant: Overrides = DEFAULT) -> str:
    """CCL if stored, else the method with the most cohorts and then the highest mean C-index."""
    if method_cells(ev, "ccl", protocol, variant):
        return "ccl"
    best: tuple[int, float, str] | None = None
    for m in ev.methods():
        cells = [c for c in method_cells(ev, m, protocol, variant) if not c.partial]
        if cells:
            score = (len(cells), float(np.mean([c.summary().mean for c in cells])), m)
            best = score if best is None or score[:2] > best[:2] else best
    if best is None:
        raise BenchError(f"no method has every fold of a cohort in {ev.results}"
                         f"{'' if variant == DEFAULT else f' (variant {variant_label(variant)})'}; "
                         "run `bench tables` to see what to run")
    return best[2]


def _title(ev: Evaluation, method: str) -> str:
    return str(ev.method_meta(method).get("title") or method)


def data_label(cells: list[Cell]) -> str:
    """Which data the plotted cells came from: genomics build and pathology kind (SYNTHETIC in capitals)."""
    provs = {pv for c in cells for pv in c.provenances()}
    builds = ", ".join(sorted({pv.genomics_build for pv in provs}))
    kinds = sorted({pv.pathology for pv in provs})
    patho = ", ".join("SYNTHETIC (not comparable with the paper)" if k == "synthetic" else k for k in kinds)
    return f"genomics: {builds}; pathology features: {patho}"


def save(fig: Figure, dest: Path, fmt: str) -> Path:
    """Write ``fig`` atomically as ``fmt``."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown figure format '{fmt}'; choose one of {', '.join(FORMATS)}")
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    return dest


def km_figure(ev: Evaluation, method: str, dest: Path, *, protocol: str = "best-val", variant: Overrides = DEFAULT,
              fmt: str = "png") -> tuple[Path, list[dict]]:
    """Fig. 6 for ``method``: one Kaplan–Meier panel per cohort; returns the path and per-cohort stats."""
    cells = method_cells(ev, method, protocol, variant)
    if not cells:
        raise BenchError(f"no stored runs of {method} ({variant_label(variant)}) to plot")
    fig = Figure(figsize=(4.4 * len(cells), 5.2), layout="constrained")
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    stats = []
    for ax, cell in zip(axes, cells, strict=True):
        g = risk_groups(cell)
        event = g.censorship < 0.5
        kh = KaplanMeierFitter(label=f"high risk (n={int(g.high.sum())})").fit(g.time[g.high], event[g.high])
        kl = KaplanMeierFitter(label=f"low risk (n={int((~g.high).sum())})").fit(g.time[~g.high], event[~g.high])
        kh.plot_survival_function(ax=ax, ci_show=False, color=HIGH, show_censors=True)
        kl.plot_survival_function(ax=ax, ci_show=False, color=LOW, show_censors=True)
        p = sm.logrank_p(g.time, g.censorship, g.high)
        ax.set_title(f"{short_name(cell.cohort)}{' (partial)' if g.partial else ''}\nlog-rank p = {format_p(p)}")
        ax.set_xlabel("months")
        ax.set_ylabel("survival probability")
        ax.set_ylim(0, 1.05)
        add_at_risk_counts(kh, kl, ax=ax, fig=fig, rows_to_show=["At risk"], labels=["high", "low"])
        stats.append({"cohort": short_name(cell.cohort), "p": p, "n_high": int(g.high.sum()),
                      "n_low": int((~g.high).sum()), "seed": g.seed})
    fig.suptitle(f"{_title(ev, method)}: Kaplan–Meier curves, high vs low risk\n(out-of-fold risks of the folds "
                 f"pooled, split at the median; protocol {protocol}; seed {stats[0]['seed']})\n{data_label(cells)}",
                 fontsize=10)
    return save(fig, dest, fmt), stats


def ttest_figure(ev: Evaluation, method: str, dest: Path, *, protocol: str = "best-val",
                 variant: Overrides = DEFAULT, fmt: str = "png", on: str = "uncensored") -> tuple[Path, list[dict]]:
    """Fig. 7 for ``method``: observed survival months of high vs low risk per cohort with Welch's t-test."""
    if on not in TTEST_ON:
        raise BenchError(f"unknown --ttest '{on}'; choose one of {', '.join(TTEST_ON)}")
    cells = method_cells(ev, method, protocol, variant)
    if not cells:
        raise BenchError(f"no stored runs of {method} ({variant_label(variant)}) to plot")
    fig = Figure(figsize=(3.2 * len(cells), 4.4), layout="constrained")
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    rng = np.random.default_rng(0)  # jitter of the dots only
    stats = []
    for ax, cell in zip(axes, cells, strict=True):
        g = risk_groups(cell)
        t, p, n_high, n_low = sm.risk_group_ttest(g.time, g.censorship, g.high, on=on)
        keep = g.censorship < 0.5 if on == "uncensored" else np.ones(len(g.time), dtype=bool)
        groups = [g.time[keep & ~g.high], g.time[keep & g.high]]
        ax.boxplot(groups, tick_labels=[f"low\n(n={n_low})", f"high\n(n={n_high})"], widths=0.5, showfliers=False)
        for x, values, color in ((1, groups[0], LOW), (2, groups[1], HIGH)):
            ax.scatter(x + rng.uniform(-0.15, 0.15, len(values)), values, s=8, alpha=0.5, color=color)
        ax.set_title(f"{short_name(cell.cohort)}{' (partial)' if g.partial else ''}\nt = {t:.2f}, p = {format_p(p)}")
        ax.set_ylabel("survival months" + (" (uncensored patients)" if on == "uncensored" else " (observed)"))
        stats.append({"cohort": short_name(cell.cohort), "t": t, "p": p, "n_high": n_high, "n_low": n_low,
                      "seed": g.seed, "on": on})
    who = "uncensored patients" if on == "uncensored" else "all patients (censored times included)"
    fig.suptitle(f"{_title(ev, method)}: Welch's t-test of observed survival months of {who}, high vs low risk\n"
                 f"(median split of pooled out-of-fold risks; protocol {protocol}; seed {stats[0]['seed']})\n"
                 f"{data_label(cells)}", fontsize=9)
    return save(fig, dest, fmt), stats


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=.,_-]", "_", text)


def epoch_figure(ev: Evaluation, method: str, cohort: str, dest: Path, *, variant: Overrides = DEFAULT,
                 fmt: str = "png") -> Path | None:
    """Per-epoch validation C-index of every fold with its best-val epoch marked; None for single-epoch runs."""
    best, last = ev.cell(method, cohort, variant, "best-val"), ev.cell(method, cohort, variant, "last")
    if best is None or last is None or len(best.used[0].ordered()[0].per_epoch) < 2:
        return None
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    curves = []
    for seed in best.used:
        for f in seed.ordered():
            label = f"fold {f.fold}" + (f" seed {seed.seed}" if len(best.used) > 1 else "")
            (line,) = ax.plot(f.per_epoch.index, f.per_epoch.to_numpy(), lw=1, alpha=0.7, label=label)
            ax.plot([f.epoch], [f.cindex], "o", color=line.get_color(), ms=6)
            curves.append(f.per_epoch)
    mean = np.nanmean(np.vstack([c.reindex(curves[0].index).to_numpy() for c in curves]), axis=0)
    ax.plot(curves[0].index, mean, color="black", lw=2.5, label="mean over folds")
    b, lst = best.summary().mean, last.summary().mean
    ax.axhline(b, color="tab:red", ls="--", lw=1, label=f"best-val mean {b:.4f}")
    ax.axhline(lst, color="tab:gray", ls=":", lw=1.5, label=f"last-epoch mean {lst:.4f}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation C-index")
    ax.set_title(f"{_title(ev, method)} on {short_name(cohort)} ({variant_label(variant)}): dots = each fold's "
                 f"best-val epoch\nselection optimism (best-val − last) = {b - lst:+.4f}\n{data_label([best])}",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return save(fig, dest, fmt)


def epoch_figures(ev: Evaluation, out: Path, *, methods: list[str] | None = None, variant: Overrides = DEFAULT,
                  fmt: str = "png") -> list[Path]:
    """:func:`epoch_figure` for every stored method (or ``methods``) and cohort of ``variant``."""
    paths = []
    for m in methods or ev.methods():
        for c in _cohort_order(ev.cohorts()):
            stem = f"epochs_{_safe(m)}" + ("" if variant == DEFAULT else f"_{_safe(variant_label(variant))}")
            p = epoch_figure(ev, m, c, Path(out) / f"{stem}_{short_name(c)}.{fmt}", variant=variant, fmt=fmt)
            if p is not None:
                paths.append(p)
    return paths


def draw_figures(ev: Evaluation, names: list[str], wanted: Sequence[str], out: Path, *, fmt: str = "png",
                 protocol: str = "best-val", ttest: str = "uncensored", variant: Overrides = DEFAULT,
                 epoch_methods: list[str] | None = None, log: Callable[[str], None] = print) -> None:
    """Figs. 6 and 7 for each of ``names`` and the per-epoch plots (of ``epoch_methods``, default all), from ``ev``,
    into ``out``; ``log`` hears each file written and the statistics behind it."""
    for name in names:
        if "6" in wanted:
            path, stats = km_figure(ev, name, out / f"fig6_km_{name}.{fmt}", protocol=protocol, variant=variant,
                                    fmt=fmt)
            log(f"wrote {path}")
            log(tabulate([[s["cohort"], s["n_high"], s["n_low"], format_p(s["p"])] for s in stats],
                         headers=["cohort", "high risk", "low risk", "log-rank p"], disable_numparse=True))
        if "7" in wanted:
            path, stats = ttest_figure(ev, name, out / f"fig7_ttest_{name}.{fmt}", protocol=protocol,
                                       variant=variant, fmt=fmt, on=ttest)
            log(f"wrote {path} (Welch's t-test of survival months, {ttest} patients, high vs low risk)")
            log(tabulate([[s["cohort"], s["n_high"], s["n_low"], f"{s['t']:.3f}", format_p(s["p"])]
                          for s in stats], headers=["cohort", "high", "low", "t", "p"], disable_numparse=True))
    if "epochs" in wanted:
        paths = epoch_figures(ev, out, methods=epoch_methods, variant=variant, fmt=fmt)
        for p in paths:
            log(f"wrote {p}")
        if not paths:
            log("no per-epoch plots: every stored run has a single epoch")
