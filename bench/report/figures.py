"""Figures from the prediction store, drawn with matplotlib's Agg canvas (no screen needed).

* Fig. 6: Kaplan–Meier curves of the high- and low-risk groups per cohort (published convention:
  the five folds' out-of-fold risks pooled and split at their median, risk ≥ median = high risk),
  with the log-rank p (lifelines ``logrank_test``) and, under each panel, the numbers at risk at
  exactly the x-axis' ticks, counting the patients with ``T >= t`` (:func:`numbers_at_risk`).
  Censor marks are thinned to :data:`MAX_CENSOR_MARKS` per curve and left out where more than
  :data:`CENSOR_MARKS_OFF_ABOVE` of a cohort is censored (BRCA, UCEC); the caption says so.
* Fig. 7: the paper says only "t-test between the two risk groups". We compare the observed
  survival months of the *uncensored* patients of the high- and low-risk groups (same split as
  Fig. 6) with Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``): a censored time is only
  a lower bound of the survival time, so mixing it in would compare follow-up, not survival; Welch
  because the groups need not share a variance. ``ttest_on="all"`` compares every patient's
  observed time instead. ``t = (mean high - mean low) / SE``: t < 0 means the high-risk group lived
  shorter (the caption says so).
* Per-epoch validation C-index of every fold of a method and cohort, with each fold's best-val
  epoch marked: what best-epoch selection picks, against the last epoch.
* Calibration per method and cohort: predicted against Kaplan–Meier-observed survival at a horizon
  ``tau`` by risk decile (:func:`bench.metrics.horizon.calibration_by_decile`). ``tau`` is the smallest of
  the folds' training horizons (:func:`bench.metrics.horizon.horizon`, 80% follow-up quantile of each
  training fold); each fold's predicted ``S(tau)`` comes from its own bins (step rule); the out-of-fold
  predictions of the folds are pooled and cut at the deciles of their risks.

Journal style: Figs. 6 and 7 are :data:`WIDTH` inches wide (two-column width) with at most
:data:`PANELS_PER_ROW` panels per row; every text is at least :data:`MIN_FONT` pt (set explicitly);
legends sit outside the data areas; figures are saved at their own size (no tight cropping), PNG at
:data:`PNG_DPI` dpi, and as PDF. With several seeds, the figures use the lowest seed that has every
fold (stated on the figure).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lifelines import KaplanMeierFitter
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from tabulate import tabulate

from bench._core.errors import BenchError
from bench._core.files import atomic_path
from bench.api.paper import PAPER_COHORTS
from bench.data.cohort import canonical_name, short_name
from bench.metrics import horizon as mh
from bench.metrics import survival as sm
from bench.report.evaluation import DEFAULT, UNO_QUANTILE, Cell, Evaluation, Overrides, variant_label
from bench.report.tables import format_p

FIGURES = ("6", "7", "epochs", "calibration")
FORMATS = ("png", "pdf")
TTEST_ON = ("uncensored", "all")
HIGH, LOW = "tab:red", "tab:blue"
WIDTH = 7.2  # inches: a two-column journal figure
PANELS_PER_ROW = 3
MIN_FONT = 7.0  # pt, at the figure's own size
TITLE_FONT = 8.0
PANEL_TITLE_FONT = 7.5
PNG_DPI = 200  # the PDF is the print copy; PNGs are for docs/ and the README
MAX_CENSOR_MARKS = 20  # per Kaplan–Meier curve
CENSOR_MARKS_OFF_ABOVE = 0.8  # censored fraction of a cohort above which no censor mark is drawn
CALIBRATION_SIZE = (3.5, 4.4)  # one journal column
CAPTION_CHARS = 135  # wrap width of a caption line at WIDTH inches and MIN_FONT pt
STYLE = {"font.size": MIN_FONT, "axes.titlesize": TITLE_FONT, "axes.labelsize": MIN_FONT,
         "xtick.labelsize": MIN_FONT, "ytick.labelsize": MIN_FONT, "legend.fontsize": MIN_FONT,
         "figure.titlesize": TITLE_FONT}


@contextmanager
def _style() -> Iterator[None]:
    """The journal font sizes for every artist created (and drawn) inside."""
    with rc_context(STYLE):
        yield


def _new_figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _caption(*parts: str, width: int = CAPTION_CHARS) -> str:
    return "\n".join(textwrap.fill(p, width) for p in parts if p)


def _layout(n: int) -> tuple[int, int]:
    """(rows, columns) of ``n`` panels with at most :data:`PANELS_PER_ROW` per row."""
    cols = min(n, PANELS_PER_ROW)
    return -(-n // cols), cols


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


def numbers_at_risk(time: np.ndarray, ticks: Sequence[float]) -> np.ndarray:
    """Patients still at risk at each tick ``t``: those with observed time ``T >= t`` (a patient whose event
    or censoring is at ``t`` itself is still at risk at ``t``)."""
    time = np.asarray(time, dtype=float).ravel()
    return (time[None, :] >= np.asarray(ticks, dtype=float).ravel()[:, None]).sum(axis=1)


def time_ticks(t_max: float) -> np.ndarray:
    """The x-axis ticks of a Kaplan–Meier panel: round numbers from 0 up to at most ``t_max``."""
    ticks = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(0.0, max(float(t_max), 1e-9))
    return ticks[(ticks >= 0) & (ticks <= t_max + 1e-9)]


def censor_mark_times(time: np.ndarray, censorship: np.ndarray, max_marks: int = MAX_CENSOR_MARKS) -> np.ndarray:
    """The censoring times to mark on a curve: all of them when at most ``max_marks``, else ``max_marks``
    of them evenly spaced in time order (the first and the last included)."""
    t = np.sort(np.asarray(time, dtype=float)[np.asarray(censorship) >= 0.5])
    if len(t) <= max_marks:
        return t
    return t[np.unique(np.linspace(0, len(t) - 1, max_marks).round().astype(int))]


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


def check_formats(fmt: str | Sequence[str]) -> tuple[str, ...]:
    """``fmt`` as a tuple of formats: one of :data:`FORMATS`, ``"both"``, or a sequence of them."""
    formats = FORMATS if fmt == "both" else (fmt,) if isinstance(fmt, str) else tuple(fmt)
    for f in formats:
        if f not in FORMATS:
            raise BenchError(f"unknown figure format '{f}'; choose one of {', '.join(FORMATS)} or both")
    return formats


def save(fig: Figure, dest: Path, fmt: str) -> Path:
    """Write ``fig`` atomically as ``fmt`` at its own size (PNG at :data:`PNG_DPI` dpi). No creation date is
    written, so the same store gives byte-identical files (``make reproduce`` leaves the tree unchanged)."""
    check_formats(fmt)
    metadata = {"CreationDate": None} if fmt == "pdf" else None
    with _style(), atomic_path(dest) as tmp:
        fig.savefig(tmp, format=fmt, dpi=PNG_DPI, metadata=metadata)
    return dest


def save_all(fig: Figure, stem: Path, fmt: str | Sequence[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``<stem>.<format>`` for each format of ``fmt`` (:func:`check_formats`)."""
    return [save(fig, Path(f"{stem}.{f}"), f) for f in check_formats(fmt)]


def _cells_or_fail(ev: Evaluation, method: str, protocol: str, variant: Overrides) -> list[Cell]:
    cells = method_cells(ev, method, protocol, variant)
    if not cells:
        raise BenchError(f"no stored runs of {method} ({variant_label(variant)}) to plot")
    return cells


# ----------------------------------------------------------------------------------------------
# Fig. 6


def _km_panel(ax: Axes, risk_ax: Axes, cell: Cell) -> dict[str, Any]:
    """One cohort's Kaplan–Meier curves on ``ax`` and its numbers at risk on ``risk_ax``; its statistics."""
    g = risk_groups(cell)
    event = g.censorship < 0.5
    censored = float(np.mean(~event))
    marks = censored <= CENSOR_MARKS_OFF_ABOVE
    t_max = float(g.time.max())
    ticks = time_ticks(t_max)
    at_risk: dict[str, list[int]] = {}
    for name, mask, color, row in (("high", g.high, HIGH, 1), ("low", ~g.high, LOW, 0)):
        at_risk[name] = [int(n) for n in numbers_at_risk(g.time[mask], ticks)]
        for t, n in zip(ticks, at_risk[name], strict=True):
            risk_ax.text(t, row, str(n), ha="center", va="center", color=color, fontsize=MIN_FONT)
        if not mask.any():
            continue
        km = KaplanMeierFitter().fit(g.time[mask], event[mask])
        sf = km.survival_function_.iloc[:, 0]
        ax.step(sf.index.to_numpy(), sf.to_numpy(), where="post", color=color, lw=1.0)
        if marks:
            ct = censor_mark_times(g.time[mask], g.censorship[mask])
            ax.plot(ct, km.survival_function_at_times(ct).to_numpy(), ls="none", marker="|", ms=4, mew=0.7,
                    color=color)
    p = sm.logrank_p(g.time, g.censorship, g.high)
    note = "" if marks else f"; {censored:.0%} censored: no censor marks"
    ax.set_title(f"{short_name(cell.cohort)}{' (partial)' if g.partial else ''}\nlog-rank p = {format_p(p)}{note}",
                 fontsize=PANEL_TITLE_FONT)
    ax.set_xticks(ticks)
    ax.set_xlim(0, t_max * 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("months", fontsize=MIN_FONT)
    ax.set_ylabel("survival probability", fontsize=MIN_FONT)
    ax.tick_params(labelsize=MIN_FONT)
    risk_ax.set_ylim(-0.6, 1.6)
    risk_ax.set_yticks([1, 0], ["high", "low"])
    for label, color in zip(risk_ax.get_yticklabels(), (HIGH, LOW), strict=True):
        label.set_color(color)
    # the pad keeps the row labels clear of the numbers centred on the tick at t = 0
    risk_ax.tick_params(axis="both", length=0, labelsize=MIN_FONT, labelbottom=False)
    risk_ax.tick_params(axis="y", pad=10)
    for spine in risk_ax.spines.values():
        spine.set_visible(False)
    risk_ax.set_title("number at risk (T ≥ t)", fontsize=MIN_FONT, loc="left")
    return {"cohort": short_name(cell.cohort), "p": p, "n_high": int(g.high.sum()), "n_low": int((~g.high).sum()),
            "seed": g.seed, "ticks": [float(t) for t in ticks], "at_risk": at_risk, "censored": censored,
            "censor_marks": marks}


def build_km(ev: Evaluation, method: str, *, protocol: str = "best-val",
             variant: Overrides = DEFAULT) -> tuple[Figure, list[dict[str, Any]]]:
    """Fig. 6 for ``method`` as a figure (one Kaplan–Meier panel per cohort) and its per-cohort statistics."""
    cells = _cells_or_fail(ev, method, protocol, variant)
    rows, cols = _layout(len(cells))
    with _style():
        fig = _new_figure((WIDTH, 1.25 + 2.85 * rows))
        gs = fig.add_gridspec(2 * rows, cols, height_ratios=[4.0, 1.15] * rows)
        stats = []
        for i, cell in enumerate(cells):
            r, c = divmod(i, cols)
            ax = fig.add_subplot(gs[2 * r, c])
            stats.append(_km_panel(ax, fig.add_subplot(gs[2 * r + 1, c], sharex=ax), cell))
        handles = [Line2D([], [], color=HIGH, lw=1.0, label="high risk (risk ≥ median)"),
                   Line2D([], [], color=LOW, lw=1.0, label="low risk (risk < median)")]
        if any(s["censor_marks"] for s in stats):
            handles.append(Line2D([], [], color="0.3", ls="none", marker="|", ms=4, mew=0.7, label="censored"))
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False,
                   fontsize=MIN_FONT)
        fig.suptitle(_caption(
            f"{_title(ev, method)}: Kaplan–Meier curves, high vs low risk (out-of-fold risks of the folds pooled, "
            f"split at the median; protocol {protocol}; seed {stats[0]['seed']})",
            "Numbers at risk: patients with observed time T ≥ t at each tick of the time axis. Censor marks: at "
            f"most {MAX_CENSOR_MARKS} per curve, evenly spaced in time order; none in a cohort more than "
            f"{CENSOR_MARKS_OFF_ABOVE:.0%} censored.",
            data_label(cells)), fontsize=MIN_FONT)
    return fig, stats


def km_figure(ev: Evaluation, method: str, dest: Path, *, protocol: str = "best-val", variant: Overrides = DEFAULT,
              fmt: str = "png") -> tuple[Path, list[dict[str, Any]]]:
    """Fig. 6 for ``method`` written to ``dest`` as ``fmt``; returns the path and per-cohort stats."""
    fig, stats = build_km(ev, method, protocol=protocol, variant=variant)
    return save(fig, dest, fmt), stats


# ----------------------------------------------------------------------------------------------
# Fig. 7

TTEST_SIGN = "t = (mean high − mean low) / SE, so t < 0 means the high-risk group lived shorter than the low-risk group"


def build_ttest(ev: Evaluation, method: str, *, protocol: str = "best-val", variant: Overrides = DEFAULT,
                on: str = "uncensored") -> tuple[Figure, list[dict[str, Any]]]:
    """Fig. 7 for ``method`` as a figure (survival months of high vs low risk per cohort, Welch's t-test)."""
    if on not in TTEST_ON:
        raise BenchError(f"unknown --ttest '{on}'; choose one of {', '.join(TTEST_ON)}")
    cells = _cells_or_fail(ev, method, protocol, variant)
    rows, cols = _layout(len(cells))
    rng = np.random.default_rng(0)  # jitter of the dots only
    stats = []
    with _style():
        fig = _new_figure((WIDTH, 1.2 + 2.5 * rows))
        for i, cell in enumerate(cells):
            ax = fig.add_subplot(rows, cols, i + 1)
            g = risk_groups(cell)
            t, p, n_high, n_low = sm.risk_group_ttest(g.time, g.censorship, g.high, on=on)
            keep = g.censorship < 0.5 if on == "uncensored" else np.ones(len(g.time), dtype=bool)
            groups = [g.time[keep & ~g.high], g.time[keep & g.high]]
            ax.boxplot(groups, tick_labels=[f"low\n(n={n_low})", f"high\n(n={n_high})"], widths=0.5,
                       showfliers=False)
            for x, values, color in ((1, groups[0], LOW), (2, groups[1], HIGH)):
                ax.scatter(x + rng.uniform(-0.15, 0.15, len(values)), values, s=5, alpha=0.5, color=color,
                           linewidths=0)
            ax.set_title(f"{short_name(cell.cohort)}{' (partial)' if g.partial else ''}\n"
                         f"t = {t:.2f}, p = {format_p(p)}", fontsize=TITLE_FONT)
            if i % cols == 0:
                ax.set_ylabel("survival months" + (" (uncensored)" if on == "uncensored" else " (observed)"),
                              fontsize=MIN_FONT)
            ax.tick_params(labelsize=MIN_FONT)
            stats.append({"cohort": short_name(cell.cohort), "t": t, "p": p, "n_high": n_high, "n_low": n_low,
                          "seed": g.seed, "on": on})
        who = "uncensored patients" if on == "uncensored" else "all patients (censored times included)"
        fig.suptitle(_caption(
            f"{_title(ev, method)}: Welch's t-test of observed survival months of {who}, high vs low risk "
            f"(median split of pooled out-of-fold risks; protocol {protocol}; seed {stats[0]['seed']}).",
            f"{TTEST_SIGN}.", data_label(cells)), fontsize=MIN_FONT)
    return fig, stats


def ttest_figure(ev: Evaluation, method: str, dest: Path, *, protocol: str = "best-val",
                 variant: Overrides = DEFAULT, fmt: str = "png",
                 on: str = "uncensored") -> tuple[Path, list[dict[str, Any]]]:
    """Fig. 7 for ``method`` written to ``dest`` as ``fmt``; returns the path and per-cohort stats."""
    fig, stats = build_ttest(ev, method, protocol=protocol, variant=variant, on=on)
    return save(fig, dest, fmt), stats


# ----------------------------------------------------------------------------------------------
# Per-epoch plots


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=.,_-]", "_", text)


def _stem(kind: str, method: str, variant: Overrides, cohort: str) -> str:
    """``<kind>_<method>[_<variant>]_<COHORT>``: the stable file stem of a per-method-and-cohort figure."""
    v = "" if variant == DEFAULT else f"_{_safe(variant_label(variant))}"
    return f"{kind}_{_safe(method)}{v}_{short_name(cohort)}"


def build_epochs(ev: Evaluation, method: str, cohort: str, *, variant: Overrides = DEFAULT) -> Figure | None:
    """Per-epoch validation C-index of every fold with its best-val epoch marked; None for single-epoch runs."""
    best, last = ev.cell(method, cohort, variant, "best-val"), ev.cell(method, cohort, variant, "last")
    if best is None or last is None or len(best.used[0].ordered()[0].per_epoch) < 2:
        return None
    with _style():
        fig = _new_figure((WIDTH, 4.4))
        ax = fig.add_subplot()
        curves = []
        for seed in best.used:
            for f in seed.ordered():
                label = f"fold {f.fold}" + (f" seed {seed.seed}" if len(best.used) > 1 else "")
                (line,) = ax.plot(f.per_epoch.index, f.per_epoch.to_numpy(), lw=1, alpha=0.7, label=label)
                ax.plot([f.epoch], [f.cindex], "o", color=line.get_color(), ms=5)
                curves.append(f.per_epoch)
        mean = np.nanmean(np.vstack([c.reindex(curves[0].index).to_numpy() for c in curves]), axis=0)
        ax.plot(curves[0].index, mean, color="black", lw=2.0, label="mean over folds")
        b, lst = best.summary().mean, last.summary().mean
        ax.axhline(b, color="tab:red", ls="--", lw=1, label=f"best-val mean {b:.4f}")
        ax.axhline(lst, color="tab:gray", ls=":", lw=1.5, label=f"last-epoch mean {lst:.4f}")
        ax.plot([], [], "o", color="0.3", ms=5, label="a fold's best-val epoch")
        ax.set_xlabel("epoch", fontsize=MIN_FONT)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation C-index", fontsize=MIN_FONT)
        ax.tick_params(labelsize=MIN_FONT)
        ax.set_title(f"{_title(ev, method)} on {short_name(cohort)} ({variant_label(variant)}): dots = each fold's "
                     f"best-val epoch\nselection optimism (best-val − last) = {b - lst:+.4f}\n{data_label([best])}",
                     fontsize=TITLE_FONT)
        fig.legend(loc="outside lower center", ncols=5, fontsize=MIN_FONT, frameon=False)
    return fig


def epoch_figure(ev: Evaluation, method: str, cohort: str, dest: Path, *, variant: Overrides = DEFAULT,
                 fmt: str = "png") -> Path | None:
    """:func:`build_epochs` written to ``dest`` as ``fmt``; None for single-epoch runs."""
    fig = build_epochs(ev, method, cohort, variant=variant)
    return None if fig is None else save(fig, dest, fmt)


def epoch_figures(ev: Evaluation, out: Path, *, methods: list[str] | None = None, variant: Overrides = DEFAULT,
                  fmt: str | Sequence[str] = "png") -> list[Path]:
    """Per-epoch plots of every stored method (or ``methods``) and cohort of ``variant``, each format of ``fmt``."""
    paths = []
    for m in methods or ev.methods():
        for c in _cohort_order(ev.cohorts()):
            fig = build_epochs(ev, m, c, variant=variant)
            if fig is not None:
                paths += save_all(fig, Path(out) / _stem("epochs", m, variant, c), fmt)
    return paths


# ----------------------------------------------------------------------------------------------
# Calibration


def build_calibration(ev: Evaluation, method: str, cohort: str, *, protocol: str = "best-val",
                      variant: Overrides = DEFAULT) -> tuple[Figure | None, dict[str, Any]]:
    """Calibration of ``method`` on ``cohort`` at the horizon ``tau`` by risk decile (module docstring).

    Returns:
        The figure and its statistics (``tau``, ``seed``, ``n``, the decile table as records), or
        ``(None, {"reason": ...})`` where it cannot be drawn (no cell, no stored survival columns or bin
        edges, a training fold without events).
    """
    cell = ev.cell(method, cohort, variant, protocol)
    if cell is None:
        return None, {"reason": "not stored"}
    seed = cell.used[0]
    folds = seed.ordered()
    taus, times, cens, risks, preds = [], [], [], [], []
    for f in folds:
        train = seed.training_labels(f.fold)
        val = f.val()
        surv, edges = f.surv(val), f.edges
        if train is None or surv is None or edges is None or len(edges) != surv.shape[1] + 1:
            return None, {"reason": f"fold {f.fold} has no stored survival columns with bin edges"}
        try:
            taus.append(mh.horizon(*train, quantile=UNO_QUANTILE))
        except BenchError as e:
            return None, {"reason": f"fold {f.fold}: {e}"}
        times.append(val["survival_months"].to_numpy(dtype=float))
        cens.append(val["censorship"].to_numpy(dtype=float))
        risks.append(val["risk"].to_numpy(dtype=float))
        preds.append((surv, edges))
    tau = round(min(taus), 1)
    pred = np.concatenate([mh.curve_at(s, e, [tau])[:, 0] for s, e in preds])
    table = mh.calibration_by_decile(np.concatenate(times), np.concatenate(cens), pred, np.concatenate(risks), tau)
    title = _caption(
        f"{_title(ev, method)} on {short_name(cohort)}{' (partial)' if cell.partial else ''}: S(τ) by risk decile, "
        f"out-of-fold predictions of the {len(folds)} folds pooled; τ = {tau:g} months, the smallest training "
        f"fold's {UNO_QUANTILE:.0%} follow-up quantile; protocol {protocol}; seed {seed.seed}", data_label([cell]),
        width=50)
    with _style():
        fig = mh.plot_calibration(table["predicted"].to_numpy(), table["observed"].to_numpy(),
                                  observed_lo=table["observed_lo"].to_numpy(),
                                  observed_hi=table["observed_hi"].to_numpy(), horizon=tau,
                                  label=_title(ev, method), size=CALIBRATION_SIZE)
        # a figure title, not the axes' own: constrained layout keeps it on the canvas above the square axes
        fig.suptitle(title, fontsize=PANEL_TITLE_FONT)
    return fig, {"cohort": short_name(cohort), "tau": tau, "seed": seed.seed, "n": int(table["n"].sum()),
                 "table": table.to_dict("records")}


def calibration_figures(ev: Evaluation, out: Path, methods: Sequence[str], *, protocol: str = "best-val",
                        variant: Overrides = DEFAULT, fmt: str | Sequence[str] = FORMATS,
                        log: Callable[[str], None] = print) -> list[Path]:
    """:func:`build_calibration` of each of ``methods`` on every stored cohort, written as
    ``calibration_<method>[_<variant>]_<COHORT>.<fmt>``; ``log`` hears the ones that cannot be drawn."""
    paths = []
    for m in methods:
        for c in _cohort_order(ev.cohorts()):
            fig, info = build_calibration(ev, m, c, protocol=protocol, variant=variant)
            if fig is not None:
                paths += save_all(fig, Path(out) / _stem("calibration", m, variant, c), fmt)
            elif info["reason"] != "not stored":
                log(f"no calibration figure of {m} on {short_name(c)}: {info['reason']}")
    return paths


# ----------------------------------------------------------------------------------------------
# All of them


def draw_figures(ev: Evaluation, names: list[str], wanted: Sequence[str], out: Path, *,
                 fmt: str | Sequence[str] = FORMATS, protocol: str = "best-val", ttest: str = "uncensored",
                 variant: Overrides = DEFAULT, epoch_methods: list[str] | None = None,
                 log: Callable[[str], None] = print) -> None:
    """Figs. 6 and 7 and the calibration figures of each of ``names`` and the per-epoch plots (of
    ``epoch_methods``, default all), from ``ev``, into ``out``, each in every format of ``fmt`` (default PNG
    and PDF); ``log`` hears each file written and the statistics behind it.

    Args:
        ev: the store.
        names: the methods of Figs. 6, 7 and the calibration figures.
        wanted: which of :data:`FIGURES`.
        out: the folder.
        fmt: a format of :data:`FORMATS`, ``"both"`` or a sequence of formats.
        protocol, ttest, variant: as for :func:`build_km` and :func:`build_ttest`.
        epoch_methods: the methods of the per-epoch plots (default: every stored method).
        log: where the lines go.
    """
    formats = check_formats(fmt)
    out = Path(out)
    for name in names:
        if "6" in wanted:
            fig, stats = build_km(ev, name, protocol=protocol, variant=variant)
            for path in save_all(fig, out / f"fig6_km_{name}", formats):
                log(f"wrote {path}")
            log(tabulate([[s["cohort"], s["n_high"], s["n_low"], format_p(s["p"])] for s in stats],
                         headers=["cohort", "high risk", "low risk", "log-rank p"], disable_numparse=True))
        if "7" in wanted:
            fig, stats = build_ttest(ev, name, protocol=protocol, variant=variant, on=ttest)
            for path in save_all(fig, out / f"fig7_ttest_{name}", formats):
                log(f"wrote {path} (Welch's t-test of survival months, {ttest} patients, high vs low risk)")
            log(tabulate([[s["cohort"], s["n_high"], s["n_low"], f"{s['t']:.3f}", format_p(s["p"])]
                          for s in stats], headers=["cohort", "high", "low", "t", "p"], disable_numparse=True))
    if "epochs" in wanted:
        paths = epoch_figures(ev, out, methods=epoch_methods, variant=variant, fmt=formats)
        for p in paths:
            log(f"wrote {p}")
        if not paths:
            log("no per-epoch plots: every stored run has a single epoch")
    if "calibration" in wanted:
        for p in calibration_figures(ev, out, names, protocol=protocol, variant=variant, fmt=formats, log=log):
            log(f"wrote {p}")
