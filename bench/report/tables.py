"""Tables I–IV of the CCL paper as pure functions of the prediction store.

* Table I: a metric (Harrell's C by default) per method x cohort, mean ± std over folds, and the
  Overall mean over the five cohorts; every paper row, methods grouped by modality in the paper's
  order; best bold, second underlined.
* Table II: log-rank p-values of high- vs low-risk groups, in the published convention (pooled
  out-of-fold risks split at their median) and a fold-safe one (each fold split at its training
  median of the same epoch), with the fold-safe groups' within-fold permutation p.
* Table III: CCL's ablation variants; Table IV: CCL's k, tau, b, r.

Every table lists the data it came from and the commands that fill its missing cells. See
docs/tables-and-figures.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._core.config import Settings
from bench._core.errors import BenchError
from bench.api.paper import PAPER_COHORTS, paper_table
from bench.api.registry import all_methods
from bench.data.cohort import available_cohorts, canonical_name, short_name
from bench.report.evaluation import (
    BRIER_MONTHS,
    DEFAULT,
    Cell,
    Evaluation,
    Overrides,
    Summary,
    check_metric,
    check_protocol,
    norm_value,
    normalize_overrides,
    parse_variant,
    variant_label,
    with_inner,
)
from bench.report.render import MISSING, STYLES, Block, Mark, Table
from bench.store import keys

MODALITY_ORDER = ("Genomics", "Pathology", "Multimodal")
TABLES = ("1", "2", "3", "4")
#: Best / second marks only in groups of at least this many comparable rows (same pathology kind).
MIN_RANK_GROUP = 3
CCL = "ccl"
CCL_DEFAULTS = {"k": 6, "tau": 0.1, "b": 10, "r": 4}
ABLATION: tuple[tuple[str, tuple[bool, bool, bool], dict[str, bool]], ...] = (
    ("DualTrans (baseline)", (False, False, False), {"cca": False, "mkd": False, "cgm": False}),
    ("+CCA", (True, False, False), {"mkd": False, "cgm": False}),
    ("+CCA+MKD", (True, True, False), {"cgm": False}),
    ("+CCA+MKD+CGM (CCL)", (True, True, True), {}),
)


@dataclass(frozen=True)
class Options:
    """What every table builder needs besides the store."""

    protocol: str = "best-val"
    metric: str = "cindex"
    compare_paper: bool = False
    default_seed: int = 0  # bench.toml's run.seed: commands omit --seed for it
    n_resamples: int = 1000
    boot_seed: int = 0
    runnable: tuple[str, ...] | None = None  # cohorts this project can run (None: all); others get no commands
    style: str = "default"  # or "paper": the CCL paper's layout (paper_style)
    permutations: int = 1000  # Table II's permutation log-rank p (at least 1000)
    perm_seed: int = 0


# ----------------------------------------------------------------------------------------------
# Formatting


def fmt(x: float | None, digits: int = 4, sign: bool = False) -> str:
    if x is None:
        return MISSING
    if math.isnan(x):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def format_p(p: float | None) -> str:
    """A p-value in the paper's style: two significant digits, ``8.4e-4``."""
    if p is None:
        return MISSING
    if math.isnan(p):
        return "n/a"
    return re.sub(r"e([+-])0*(\d)", lambda m: f"e{'-' if m.group(1) == '-' else ''}{m.group(2)}", f"{p:.1e}")


def summary_text(s: Summary | None, max_seeds: int = 1, p_value: bool = False) -> str:
    """``0.6862 ± 0.0253``; pooled metrics ``0.68 [lo, hi]``; a p-value (``p_value``) ``1.2e-3``; partial cells
    say how many folds, and a cell made from fewer seeds than the table's fullest cell says how many seeds."""
    if s is None:
        return MISSING
    if p_value:
        text = format_p(s.mean)
    elif math.isnan(s.mean):
        text = "n/a"
    elif s.low is not None and s.high is not None:
        text = f"{fmt(s.mean)} [{fmt(s.low)}, {fmt(s.high)}]"
    elif s.std is not None:
        text = f"{fmt(s.mean)} ± {fmt(s.std)}"
    else:
        text = fmt(s.mean)
    if s.partial:
        text += f" ({s.n_folds}/{s.expected_folds} folds)"
    if s.n_seeds < max_seeds:
        text += f" ({s.n_seeds}/{max_seeds} seeds)"
    return text


def rank_marks(values: Sequence[float | None], higher_is_better: bool, kinds: Sequence[str] | None = None,
               min_group: int = MIN_RANK_GROUP) -> list[str | None]:
    """``best`` / ``second`` for each value, comparing values rounded to the 4 decimals shown (ties share).

    Args:
        values: one per row; None or NaN is never marked and does not count.
        higher_is_better: the metric's direction.
        kinds: one per row (the pathology kind: real, synthetic, none); rows are ranked only against rows of
            the same kind. None: one group.
        min_group: a group with fewer valued rows than this gets no marks.
    """
    if kinds is not None:
        if len(kinds) != len(values):
            raise ValueError(f"rank_marks: {len(kinds)} kinds for {len(values)} values")
        out_k: list[str | None] = [None] * len(values)
        for kind in dict.fromkeys(kinds):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            for i, m in zip(idx, rank_marks([values[i] for i in idx], higher_is_better, None, min_group),
                            strict=True):
                out_k[i] = m
        return out_k
    shown = sorted({round(v, 4) for v in values if v is not None and not math.isnan(v)}, reverse=higher_is_better)
    valued = sum(1 for v in values if v is not None and not math.isnan(v))
    out: list[str | None] = []
    for v in values:
        if v is None or math.isnan(v) or valued < min_group:
            out.append(None)
        elif round(v, 4) == shown[0]:
            out.append("best")
        elif len(shown) > 1 and round(v, 4) == shown[1]:
            out.append("second")
        else:
            out.append(None)
    return out


def run_command(method: str, cohort: str, sets: Mapping[str, Any] | None = None, seed: int | None = None,
                folds: Sequence[int] | None = None) -> str:
    """The ``bench run`` command for one cell (``sets`` keep their order)."""
    pairs = [(k, norm_value(v)) for k, v in (sets or {}).items()]
    return keys.run_command(method, cohort, sets=pairs, seed=seed, folds=folds, order=keys.PLAN_ORDER)


def import_command(method: str, cohort: str, overrides: Overrides = DEFAULT) -> str:
    cmd = f"bench results import FILE --method {method} --cohort {short_name(cohort)}"
    return cmd + (f" --variant {variant_label(overrides)}" if overrides else "")


# ----------------------------------------------------------------------------------------------
# Rows of Table I: the paper's rows, then registered and stored methods


@dataclass
class RowSpec:
    """A method row: its label, the method name in the registry/store (None if neither has it)."""

    label: str
    method: str | None
    modality: str
    order: int
    paper: str | None = None  # the paper's Table I row title
    registered: bool = False
    reported: Mapping[str, tuple[float, float]] = field(default_factory=dict)


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _modality(text: str | None) -> str:
    return str(text or "unknown").capitalize()


def row_specs(ev: Evaluation) -> list[RowSpec]:
    """Every paper row (matched to a registered method by title, name or Table I order, else to a
    stored method by name or title), then other registered methods, grouped by modality in the
    paper's order; methods only found in the store come last."""
    paper = paper_table("table1_cindex")
    registered = all_methods()
    taken: set[str] = set()
    rows: list[RowSpec] = []
    for i, (title, modality) in enumerate(zip(paper["method"], paper["modality"], strict=True)):
        order = 10 * (i + 1)
        m = next((m for m in registered if m.name not in taken and _key(title) in (_key(m.title), _key(m.name))),
                 None) or next((m for m in registered if m.name not in taken and m.order == order), None)
        if m is not None:
            taken.add(m.name)
            rows.append(RowSpec(m.title, m.name, _modality(m.modality), order, title, True, m.reported))
            continue
        stored = next((s for s in ev.methods() if s not in taken
                       and _key(title) in (_key(s), _key(ev.method_meta(s).get("title", "")))), None)
        if stored is not None:
            taken.add(stored)
        rows.append(RowSpec(title, stored, modality, order, title, False))
    for m in registered:
        if m.name not in taken:
            taken.add(m.name)
            rows.append(RowSpec(m.title, m.name, _modality(m.modality), m.order, None, True, m.reported))

    def group(r: RowSpec) -> int:
        return MODALITY_ORDER.index(r.modality) if r.modality in MODALITY_ORDER else len(MODALITY_ORDER)

    rows.sort(key=lambda r: (group(r), r.order, r.label))
    for s in ev.methods():
        if s not in taken:
            meta = ev.method_meta(s)
            rows.append(RowSpec(str(meta.get("title") or s), s, _modality(meta.get("modality")), 10**6))
    return rows


def paper_values(row: RowSpec) -> tuple[dict[str, tuple[float, float | None]], float | None]:
    """The paper's Table I (mean, std) per cohort (short name) and Overall for a row, or ({}, None)."""
    if row.paper is not None:
        t = paper_table("table1_cindex")
        r = t[t["method"] == row.paper].iloc[0]
        return ({c: (float(r[f"{c}_mean"]), float(r[f"{c}_std"])) for c in PAPER_COHORTS}, float(r["overall"]))
    if row.reported:
        vals = {c: (float(m), float(s)) for c, (m, s) in row.reported.items()}
        overall = float(np.mean([m for m, _ in vals.values()])) if set(vals) >= set(PAPER_COHORTS) else None
        return vals, overall
    return {}, None


# ----------------------------------------------------------------------------------------------
# Columns


def table_cohorts(ev: Evaluation) -> tuple[list[str], list[str]]:
    """(columns, cohorts the Overall averages): the paper's five cohorts plus any other stored cohort;
    Overall is over the paper's five, or over the stored cohorts when the store has none of them."""
    paper = [canonical_name(c) for c in PAPER_COHORTS]
    extra = [c for c in ev.cohorts() if c not in paper]
    overall = paper if any(c in paper for c in ev.cohorts()) or not extra else extra
    return paper + extra, overall


# ----------------------------------------------------------------------------------------------
# Generic grid: rows x cohorts of one metric


@dataclass
class GridRow:
    lead: list[str]  # leading columns
    label: str  # row name in notes, CSV and commands
    method: str | None
    overrides: Overrides
    cells: dict[str, Cell | None]  # cohort -> cell under the protocol
    other: dict[str, Cell | None] = field(default_factory=dict)  # the other protocol (selection optimism)
    paper: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # short cohort -> (mean, std)
    paper_overall: float | None = None
    commands: Callable[[str, Cell | None], list[str]] | None = None
    group: str = ""  # rows are ranked within their group
    note: str = ""  # e.g. which cells come from a fallback


def _overall(summaries: Sequence[Summary | None]) -> float | None:
    if not summaries or any(s is None or s.partial or math.isnan(s.mean) for s in summaries):
        return None
    return float(np.mean([s.mean for s in summaries]))  # type: ignore[union-attr]


def _seed_commands(ev: Evaluation, make: Callable[[int | None, list[int] | None], str], cell: Cell | None,
                   default_seed: int) -> list[str]:
    """Commands for a missing cell (the default seed, or the store's lowest seed if it has none of the
    default) or for the missing folds of each incomplete seed of a partial cell."""
    if cell is None:
        seeds = ev.seeds()
        seed = default_seed if not seeds or default_seed in seeds else seeds[0]
        return [make(None if seed == default_seed else seed, None)]
    return [make(None if s.seed == default_seed else s.seed, s.missing) for s in cell.seeds if not s.complete]


def grid_table(ev: Evaluation, *, name: str, title: str, lead_headers: list[str], rows: list[GridRow],
               cohorts: list[str], overall_over: list[str], opts: Options, paper_has_std: bool = True) -> Table:
    """A rows x cohorts table of ``opts.metric`` with Overall, rankings, paper comparison, seed spread."""
    info = check_metric(opts.metric)

    def summ(cell: Cell | None) -> Summary | None:
        return None if cell is None else cell.summary(opts.metric, opts.n_resamples, opts.boot_seed)

    ours = [{c: summ(r.cells.get(c)) for c in cohorts} for r in rows]
    # per column: a cell made from fewer seeds than the fullest cell of its cohort says so
    max_seeds = {c: max((row[c].n_seeds for row in ours if row[c] is not None), default=1) for c in cohorts}
    # a mean of p-values over cohorts means nothing: no Overall for them
    overall = [None if info.p_value else _overall([s[c] for c in overall_over]) for s in ours]
    other = [{c: summ(r.other.get(c)) for c in cohorts} for r in rows] if opts.compare_paper else []
    other_overall = [None if info.p_value else _overall([s[c] for c in overall_over]) for s in other]

    # ranks: per column, within row groups and pathology kinds, complete cells only; p-values are not ranked
    kinds = [{c: cell_kind(r.cells.get(c)) for c in cohorts} for r in rows]
    overall_kinds = [";".join(sorted({x for c in overall_over for x in kinds[i][c].split(";") if x}))
                     for i in range(len(rows))]
    marks: list[dict[str, str | None]] = [{} for _ in rows]
    for col in [*cohorts, "overall"]:
        for g in dict.fromkeys(r.group for r in rows):
            idx = [i for i, r in enumerate(rows) if r.group == g]
            vals = [overall[i] if col == "overall" else
                    (None if ours[i][col] is None or ours[i][col].partial else ours[i][col].mean) for i in idx]
            ks = [overall_kinds[i] if col == "overall" else kinds[i][col] for i in idx]
            ranked = [None] * len(idx) if info.p_value else rank_marks(vals, info.higher_is_better, ks)
            for i, m in zip(idx, ranked, strict=True):
                marks[i][col] = m

    compare = opts.compare_paper
    harrell = opts.metric == "cindex"  # the paper reports Harrell's C only: its values go with those rows alone
    paper_cols = compare and harrell
    headers = list(lead_headers)
    for c in cohorts:
        sc = short_name(c)
        headers.append(sc)
        if paper_cols:
            headers += [f"{sc} paper", f"{sc} Δ"]
        if compare:
            headers.append(f"{sc} opt.")
    headers.append("Overall")
    if paper_cols:
        headers += ["Overall paper", "Overall Δ"]
    if compare:
        headers.append("Overall opt.")

    def optimism(ours_v: float | None, other_v: float | None) -> float | None:
        if ours_v is None or other_v is None:
            return None
        return ours_v - other_v if opts.protocol == "best-val" else other_v - ours_v

    body, records, commands = [], [], []
    for i, r in enumerate(rows):
        line: list[str | Mark] = list(r.lead)
        for c in cohorts:
            s, sc = ours[i][c], short_name(c)
            line.append(Mark(summary_text(s, max_seeds[c], info.p_value), marks[i][c]))
            p = r.paper.get(sc)
            diff = None if p is None or s is None or math.isnan(s.mean) else s.mean - p[0]
            if paper_cols:
                ptext = MISSING if p is None else (f"{fmt(p[0])} ± {fmt(p[1])}" if p[1] is not None else fmt(p[0]))
                line += [ptext, fmt(diff, sign=True)]
            opt = optimism(s.mean if s else None, other[i][c].mean if compare and other[i][c] else None)
            if compare:
                line.append(fmt(opt, sign=True))
            if r.commands is not None and (s is None or s.partial) and _runnable(opts, c):
                commands += r.commands(c, r.cells.get(c))
            records.append(_record(name, r, sc, s, marks[i][c], opts, p if harrell else None,
                                   diff if paper_cols else None, opt, r.cells.get(c)))
        line.append(Mark(fmt(overall[i]), marks[i]["overall"]))
        odiff = None if overall[i] is None or r.paper_overall is None else overall[i] - r.paper_overall
        if paper_cols:
            line += [fmt(r.paper_overall), fmt(odiff, sign=True)]
        oopt = optimism(overall[i], other_overall[i]) if compare else None
        if compare:
            line.append(fmt(oopt, sign=True))
        records.append({**_record(name, r, "Overall", None, marks[i]["overall"], opts,
                                  None if r.paper_overall is None or not harrell else (r.paper_overall, None),
                                  odiff if paper_cols else None, oopt, None), "mean": overall[i]})
        body.append(line)

    blocks = [Block("", headers, body)]
    spread_rows = []
    for i, r in enumerate(rows):
        if any(s is not None and s.n_seeds > 1 for s in ours[i].values()):
            spread_rows.append([*r.lead, *[MISSING if ours[i][c] is None or ours[i][c].spread is None else
                                           f"{fmt(ours[i][c].spread)} (n={ours[i][c].n_seeds})" for c in cohorts]])
    if spread_rows:
        blocks.append(Block("Spread over seeds: population std of the per-seed fold means (n = seeds)",
                            [*lead_headers, *[short_name(c) for c in cohorts]], spread_rows))

    cells = [(r.label, c, r.cells.get(c)) for r in rows for c in cohorts]
    notes = [f"{info.label}: " + _metric_note(opts.metric) + (
        " Mean ± std over folds (population std, ddof 0)." if not info.pooled else ""),
        _protocol_note(opts.protocol), *provenance_notes(ev, cells)]
    if info.p_value:
        notes.append(f"Overall: {MISSING} (a mean of p-values over cohorts is not a p-value); p-values are not "
                     "ranked.")
    else:
        notes.append(f"Overall: mean of the {', '.join(short_name(c) for c in overall_over)} values; "
                     f"{MISSING} unless all are complete.")
        notes.append("Bold: best, underlined: second best per column"
                     f"{' within each parameter' if len({r.group for r in rows}) > 1 else ''}, among rows with the "
                     "same pathology features (real, synthetic, none = genomics only) and only where at least "
                     f"{MIN_RANK_GROUP} such rows have a complete cell (compared at the 4 decimals shown).")
    if compare:
        notes.append("opt. = selection optimism: the value under best-val minus the value under "
                     f"{'last' if opts.protocol == 'best-val' else opts.protocol} (same runs).")
        if paper_cols:
            notes.append("paper = the published value (the CCL paper's Table I, or a plugin method's own "
                         "`reported` numbers); Δ = ours minus paper.")
        else:
            notes.append(f"The paper reports Harrell's C only, so there is no paper column for {info.label}.")
    notes += [r.note for r in rows if r.note]
    notes += _missing_notes(rows, cohorts, ours)
    notes += _unrunnable_note(opts, cohorts)
    return Table(name=name, title=title, blocks=blocks, notes=notes, commands=list(dict.fromkeys(commands)),
                 frame=pd.DataFrame.from_records(records))


def cell_kind(cell: Cell | None) -> str:
    """The pathology kind of a cell's runs (``real``, ``synthetic``, ``none``; several joined by ``;``), "" if
    empty: rows are only ranked against rows of the same kind."""
    if cell is None:
        return ""
    return ";".join(sorted({p.pathology for p in cell.provenances()}))


def _runnable(opts: Options, cohort: str) -> bool:
    return opts.runnable is None or cohort in opts.runnable


def _unrunnable_note(opts: Options, cohorts: Sequence[str]) -> list[str]:
    missing = [short_name(c) for c in cohorts if not _runnable(opts, c)]
    if not missing:
        return []
    return [f"No commands for {', '.join(missing)}: not among this project's cohorts (no splits/ folder for them)."]


def _record(table: str, r: GridRow, cohort: str, s: Summary | None, mark: str | None, opts: Options,
            paper: tuple[float, float | None] | None, diff: float | None, opt: float | None,
            cell: Cell | None) -> dict[str, Any]:
    prov = sorted(cell.provenances(), key=str) if cell is not None else []
    return {
        "table": table, "row": r.label, "method": r.method, "variant": variant_label(r.overrides), "cohort": cohort,
        "protocol": opts.protocol, "metric": opts.metric,
        "mean": None if s is None else s.mean, "std": None if s is None else s.std,
        "seed_spread": None if s is None else s.spread, "n_seeds": None if s is None else s.n_seeds,
        "n_folds": None if s is None else s.n_folds, "expected_folds": None if s is None else s.expected_folds,
        "ci_low": None if s is None else s.low, "ci_high": None if s is None else s.high,
        "rank": {"best": 1, "second": 2}.get(mark or ""),
        "paper_mean": None if paper is None else paper[0], "paper_std": None if paper is None else paper[1],
        "diff": diff, "optimism": opt,
        "genomics_build": ";".join(sorted({p.genomics_build for p in prov})) or None,
        "pathology": ";".join(sorted({p.pathology for p in prov})) or None,
        "seeds": None if cell is None else ";".join(str(x.seed) for x in cell.used),
    }


def _missing_notes(rows: list[GridRow], cohorts: list[str], ours: list[dict[str, Summary | None]]) -> list[str]:
    out = []
    if any(s is None for row in ours for s in row.values()):
        out.append(f"{MISSING}: not in the prediction store.")
    if any(s is not None and s.partial for row in ours for s in row.values()):
        out.append("(k/n folds): no seed has every fold; mean over the stored folds, left out of ranks and Overall.")
    unregistered = [r.label for r in rows if r.method is None]
    if unregistered:
        out.append(f"Not registered in this installation (no `bench run` yet): {', '.join(unregistered)}.")
    return out


# ----------------------------------------------------------------------------------------------
# Notes


_METRIC_NOTES = {
    "cindex": "scikit-survival concordance_index_censored (tied_tol=1e-8) on each fold's validation patients.",
    "uno": "scikit-survival concordance_index_ipcw, censoring distribution fitted on the fold's training patients, "
           "truncated at tau = the 80th percentile of the training fold's follow-up (pre-specified, training only).",
    "ibs": "scikit-survival integrated_brier_score of the stored 4-bin survival curves (step function dropping to "
           "S_k at the upper edge of bin k) on one fixed grid per cohort (20 times from the latest first inner bin "
           "edge to the smallest fold tau, inside every fold's follow-up; bench.metrics.horizon.evaluation_grid); "
           "censoring fitted on the training patients.",
    "ibs_km": "the integrated Brier score of the training fold's Kaplan–Meier curve (the same curve for every "
              "validation patient), on the same grid as the models' IBS: the reference a model must beat.",
    "ibs_skill": "1 − IBS / IBS_KM per fold on the fixed grid: above 0 the model's curves beat the training-fold "
                 "Kaplan–Meier reference, below 0 they are worse than predicting the average.",
    "auc": "scikit-survival cumulative_dynamic_auc of the model's risk score (no constant-0.5 stretch) on the "
           "cohort's fixed grid, its Kaplan–Meier-weighted mean; censoring fitted on the training patients.",
    "pooled": "Harrell's C of the five folds' validation predictions pooled (each fold at its selected epoch), "
              "with a percentile bootstrap 95% interval over patients (scipy.stats.bootstrap).",
    "antolini": "Antolini, Boracchi & Biganzoli (2005) on each fold's validation patients: pair (i, j) comparable "
                "as for Harrell's C, concordant when S_i(T_i) < S_j(T_i) (1/2 within 1e-8), each patient's risk read "
                "from the curves at the earlier time T_i, not from the stored risk; curves = the stored 4-bin "
                "survival columns as a step function dropping to S_k at the upper edge of bin k "
                "(bench.metrics.horizon.antolini_cindex). With 4 bins many pairs tie (every curve is 1 before the "
                "first inner edge, so a pair whose earlier time lies there always ties); a tie counts 1/2, which "
                "pulls the value toward 0.5. Beside Harrell's and Uno's C it shows how much the C-index "
                "definition alone moves a number.",
    "dcal_p": "Haider et al. (JMLR 2020) D-calibration: S_i(T_i) of every validation patient (step rule) in 10 equal "
              "bins, a censored patient's unit spread over the bins below S_i(c_i) as in the paper; the five folds' "
              "histograms are pooled (the out-of-fold predictions, each fold at its selected epoch) and tested once, "
              "chi-square with 9 df (one test of the whole cohort rather than five small ones). Several seeds: "
              "the median of the per-seed p. A small p is evidence of miscalibration.",
    **{f"brier_{h}": f"scikit-survival brier_score of the stored survival curves (step rule) at {h} months, censoring "
                     "fitted on the fold's training patients; n/a when a fold's horizon is not covered: the horizon "
                     "must be at most the training fold's tau (80th percentile of its follow-up, training only) and "
                     "inside the fold's validation follow-up (bench.metrics.horizon.brier_horizons)."
       for h in BRIER_MONTHS},
}


def _metric_note(metric: str) -> str:
    return _METRIC_NOTES[metric]


def _other(ev: Evaluation, method: str, cohort: str, overrides: Overrides, protocol: str) -> Cell | None:
    """The cell the optimism column compares with, on the same runs: ``last`` for ``best-val``, ``best-val``
    otherwise (for ``inner``: best-val of the selection=inner runs)."""
    if protocol == "best-val":
        return ev.cell(method, cohort, overrides, "last")
    return ev.cell(method, cohort, with_inner(overrides) if protocol == "inner" else overrides, "best-val")


def _protocol_note(protocol: str) -> str:
    if protocol == "inner":
        return ("Protocol inner: each fold is scored at the epoch with the highest C-index on its inner split "
                "(splits/<cohort>/inner_<k>.csv: training patients held out of training), from runs made with "
                "selection=inner — the reported fold never chooses the epoch.")
    if protocol == "best-val":
        return ("Protocol best-val: each fold is scored at the epoch with its highest validation C-index (ties: the "
                "method's rule), as the official code reports — selected on the fold it reports, so optimistic.")
    return "Protocol last: each fold is scored at the last epoch of its fixed schedule (no selection)."


SEEDS_RULE = ("a cell with several seeds averages each fold over its seeds, then shows the mean ± population std "
              "over folds of those averages; the spread over seeds (std of the per-seed fold means) is shown "
              "separately.")


def _who(entries: list[tuple[str, str]], all_by_label: Mapping[str, list[str]]) -> str:
    by_label: dict[str, list[str]] = {}
    for label, cohort in entries:
        by_label.setdefault(label, []).append(cohort)
    parts = []
    for label, cs in by_label.items():
        parts.append(label if sorted(cs) == sorted(all_by_label[label]) else f"{label}: {', '.join(cs)}")
    return ("; " if any(":" in p for p in parts) else ", ").join(parts)


def display_path(path: Any) -> str:
    """``path`` relative to the working directory when it lies under it (tables are committed), else absolute."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve())) + "/"
    except ValueError:
        return str(p)


def provenance_notes(ev: Evaluation, cells: Sequence[tuple[str, str, Cell | None]],
                     seeds_rule: str = SEEDS_RULE) -> list[str]:
    """Notes saying which data the table's cells came from: store, genomics build, pathology, seeds, imports."""
    present = [(label, short_name(c), cell) for label, c, cell in cells if cell is not None]
    notes = [f"Source: prediction store {display_path(ev.results)} ({len(ev.runs)} complete runs)."]
    if not present:
        return notes
    all_by_label: dict[str, list[str]] = {}
    for label, c, _ in present:
        all_by_label.setdefault(label, []).append(c)
    for what, attr in (("Genomics build", "genomics_build"), ("Pathology features", "pathology")):
        groups: dict[str, list[tuple[str, str]]] = {}
        for label, c, cell in present:
            for p in sorted({getattr(p, attr) for p in cell.provenances()}):
                groups.setdefault(p, []).append((label, c))
        if len(groups) == 1:
            notes.append(f"{what}: {next(iter(groups))} (every cell).")
        else:
            notes.append(f"{what}: " + "; ".join(f"{v} ({_who(e, all_by_label)})" for v, e in sorted(groups.items()))
                         + ".")
    notes += store_notes(present, all_by_label)
    if any(p.pathology == "synthetic" for _, _, cell in present for p in cell.provenances()):
        notes.append("SYNTHETIC pathology features are stand-ins with a simulated signal: those cells are not "
                     "comparable with the paper.")
    seeds = sorted({s.seed for _, _, cell in present for s in cell.used})
    multi = any(len(cell.used) > 1 for _, _, cell in present)
    notes.append(f"Seeds: {', '.join(map(str, seeds))}" + (f" — {seeds_rule}" if multi else "."))
    imported = [(label, c) for label, c, cell in present if any(p.imported for p in cell.provenances())]
    if imported:
        notes.append(f"Imported predictions (bench results import): {_who(imported, all_by_label)}.")
    if ev.duplicates:
        notes.append(f"{len(ev.duplicates)} run(s) stored twice under other folder names were ignored, e.g. "
                     f"{ev.duplicates[0]}.")
    return notes


def store_notes(present: Sequence[tuple[str, str, Cell]], all_by_label: Mapping[str, list[str]]) -> list[str]:
    """The feature stores of the cells with pathology, and any cell that pools runs on several stores."""
    stores: dict[str, list[tuple[str, str]]] = {}
    mixed = []
    for label, c, cell in present:
        names = sorted({p.store for p in cell.provenances()} - {"none"})
        for name in names:
            stores.setdefault(name, []).append((label, c))
        if len(names) > 1:
            mixed.append((label, c))
    if not stores:
        return []
    if len(stores) == 1:
        notes = [f"Feature store: {next(iter(stores))} (every cell with pathology)."]
    else:
        notes = ["Feature stores: " + "; ".join(f"{v} ({_who(e, all_by_label)})" for v, e in sorted(stores.items()))
                 + "."]
    if mixed:
        notes.append(f"Cells pooling runs on several feature stores: {_who(mixed, all_by_label)}; show one store "
                     "with --features NAME.")
    return notes


# ----------------------------------------------------------------------------------------------
# Table I


def table1(ev: Evaluation, opts: Options, variant: Overrides = DEFAULT) -> Table:
    """Table I: ``opts.metric`` per method x cohort (see module docstring)."""
    protocol = check_protocol(opts.protocol)
    cohorts, overall_over = table_cohorts(ev)
    rows = []
    for spec in row_specs(ev):
        paper, paper_overall = paper_values(spec)
        rows.append(GridRow(
            lead=[spec.modality, spec.label], label=spec.label, method=spec.method, overrides=variant,
            cells={c: ev.cell(spec.method, c, variant, protocol) if spec.method else None for c in cohorts},
            other={c: _other(ev, spec.method, c, variant, protocol) if spec.method and opts.compare_paper else None
                   for c in cohorts},
            paper=paper, paper_overall=paper_overall, commands=_method_commands(ev, spec, variant, opts)))
    _blank_repeats(rows)
    info = check_metric(opts.metric)
    suffix = "" if variant == DEFAULT else f", variant {variant_label(variant)}"
    table = grid_table(ev, name=f"table1_{protocol}_{opts.metric}", lead_headers=["Modality", "Method"], rows=rows,
                       title=f"Table I — {info.label} per method and cohort, protocol {protocol}{suffix}",
                       cohorts=cohorts, overall_over=overall_over, opts=opts)
    table.notes += other_variants_note(ev, {variant}, "Other variants in the store (show one with --variant)")
    return table


def other_variants_note(ev: Evaluation, shown: set[Overrides], lead: str, method: str | None = None) -> list[str]:
    """A note naming the stored variants a table does not show (e.g. runs made with --epochs)."""
    others: dict[str, list[str]] = {}
    for m, ov, _ in ev.cells(method):
        if ov not in shown:
            labels = others.setdefault(m, [])
            if variant_label(ov) not in labels:
                labels.append(variant_label(ov))
    if not others:
        return []
    return [f"{lead}: " + "; ".join(f"{m}: {', '.join(v)}" for m, v in others.items()) + "."]


def _blank_repeats(rows: list[GridRow]) -> None:
    """Show the first lead column (modality, parameter) once per run of equal values."""
    firsts = [r.lead[0] for r in rows]
    for i in range(1, len(rows)):
        if firsts[i] == firsts[i - 1]:
            rows[i].lead[0] = ""


def _method_commands(ev: Evaluation, spec: RowSpec, variant: Overrides,
                     opts: Options) -> Callable[[str, Cell | None], list[str]] | None:
    if spec.method is None:
        return None
    method = spec.method
    if not spec.registered:
        return lambda c, cell: [import_command(method, c, variant)]
    sets = dict(with_inner(variant)) if opts.protocol == "inner" else dict(variant)
    return lambda c, cell: _seed_commands(ev, lambda seed, folds: run_command(method, c, sets, seed, folds), cell,
                                          opts.default_seed)


# ----------------------------------------------------------------------------------------------
# Table II


def table2(ev: Evaluation, opts: Options, variant: Overrides = DEFAULT) -> Table:
    """Table II: log-rank p of high vs low risk, published (pooled median) and fold-safe conventions."""
    protocol = check_protocol(opts.protocol)
    cohorts, _ = table_cohorts(ev)
    published = paper_table("table2_logrank_p")
    titles = list(published["method"])
    specs = [s for s in row_specs(ev)
             if s.paper in titles or (s.method and any(ev.has(s.method, c, variant) for c in cohorts))]
    headers = ["Method"]
    for c in cohorts:
        sc = short_name(c)
        headers += [f"{sc} median", f"{sc} fold-safe", f"{sc} perm p"] + ([f"{sc} paper"] if opts.compare_paper else [])
    body, records, commands, cells = [], [], [], []
    reruns: list[str] = []  # cells whose fold-safe values fell back to the last epoch
    for spec in specs:
        line: list[str | Mark] = [spec.label]
        prow = published[published["method"] == spec.paper]
        make = _method_commands(ev, spec, variant, opts)
        for c in cohorts:
            sc = short_name(c)
            cell = ev.cell(spec.method, c, variant, protocol) if spec.method else None
            cells.append((spec.label, c, cell))
            paper_p = float(prow.iloc[0][sc]) if len(prow) and sc in prow.columns else None
            values = {}
            last_epoch = None if cell is None else cell.fold_safe_last_epoch
            for conv in ("paper", "fold-safe", "permutation"):
                if cell is None:
                    p, n_high, n_low = None, None, None
                elif conv == "permutation":
                    p = cell.permutation_p(opts.permutations, opts.perm_seed)
                    n_high, n_low = cell.logrank("fold-safe")[1:]
                else:
                    p, n_high, n_low = cell.logrank(conv)
                values[conv] = p
                records.append({"table": "table2", "row": spec.label, "method": spec.method, "cohort": sc,
                                "protocol": protocol, "convention": conv, "p": p, "n_high": n_high, "n_low": n_low,
                                "paper_p": paper_p, "partial": None if cell is None else cell.partial,
                                "seeds": None if cell is None else ";".join(str(s.seed) for s in cell.used),
                                "last_epoch": None if conv == "paper" else last_epoch,
                                "permutations": opts.permutations if conv == "permutation" else None})
            text = format_p(values["paper"])
            if cell is not None and cell.partial:
                text += f" ({len(cell.used[0].folds)}/{cell.expected_folds} folds)"
            dagger = "†" if last_epoch else ""
            line += [text, format_p(values["fold-safe"]) + dagger, format_p(values["permutation"]) + dagger]
            if last_epoch and spec.method is not None:
                sets = dict(with_inner(variant)) if protocol == "inner" else dict(variant)
                reruns.append(run_command(spec.method, c, sets) + " --force")
            if opts.compare_paper:
                line.append(format_p(paper_p))
            if make is not None and (cell is None or cell.partial) and _runnable(opts, c):
                commands += make(c, cell)
        body.append(line)
    notes = [
        "median: the published convention — the five folds' out-of-fold risks (each fold at the protocol's epoch) "
        "are pooled and split at their median, risk ≥ median is high risk; lifelines logrank_test.",
        "fold-safe: each fold's validation patients at the protocol's epoch are split at the median risk of that "
        "fold's training patients at the same epoch, the groups are pooled, one log-rank test (lifelines); "
        f"{MISSING} or n/a where no training predictions are stored (imported runs).",
        f"perm p: the fold-safe groups' log-rank chi-square against {opts.permutations} permutations of the high/low "
        "labels within each fold (each fold keeps its group sizes; numpy default_rng seed "
        f"{opts.perm_seed}), p = (1 + #perm ≥ observed) / (1 + {opts.permutations}), so never below "
        f"{format_p(1 / (1 + opts.permutations))}; the honest significance of the separation "
        "(`bench tables --permutations N`).",
        _protocol_note(protocol),
        *provenance_notes(ev, cells, "a cell with several seeds shows the median of the per-seed p-values."),
    ]
    if reruns:
        notes.append(f"† last epoch: this run stores training predictions for its last epoch only, so its fold-safe "
                     f"and perm p use the last epoch's validation and training predictions, not the {protocol} "
                     f"epoch; rerun it to store them at every selectable epoch, e.g. `{reruns[0]}` "
                     f"({len(reruns)} cell(s) marked).")
    if opts.compare_paper:
        notes.append("paper = the CCL paper's Table II p-value.")
    notes += _missing_notes([GridRow([], s.label, s.method, DEFAULT, {}) for s in specs], [], [])
    if any(cell is None for _, _, cell in cells):
        notes.append(f"{MISSING}: not in the prediction store.")
    notes += _unrunnable_note(opts, cohorts)
    suffix = "" if variant == DEFAULT else f", variant {variant_label(variant)}"
    return Table(name=f"table2_{protocol}", title=f"Table II — log-rank p-values, high vs low risk, protocol "
                 f"{protocol}{suffix}", blocks=[Block("", headers, body)], notes=notes,
                 commands=list(dict.fromkeys(commands)), frame=pd.DataFrame.from_records(records))


# ----------------------------------------------------------------------------------------------
# Tables III and IV (CCL)


def _ccl_commands(ev: Evaluation, sets: Mapping[str, Any], opts: Options) -> Callable[[str, Cell | None], list[str]]:
    if opts.protocol == "inner":
        sets = {**sets, "selection": "inner"}
    return lambda c, cell: _seed_commands(ev, lambda seed, folds: run_command(CCL, c, sets, seed, folds), cell,
                                          opts.default_seed)


def table3(ev: Evaluation, opts: Options) -> Table:
    """Table III: CCL's ablations (baseline, +CCA, +CCA+MKD, full CCL) per cohort."""
    protocol = check_protocol(opts.protocol)
    cohorts, overall_over = table_cohorts(ev)
    published = paper_table("table3_ablation")
    rows = []
    for i, (label, flags, sets) in enumerate(ABLATION):
        ov = normalize_overrides(sets)
        cells = {c: ev.cell(CCL, c, ov, protocol) for c in cohorts}
        other = {c: _other(ev, CCL, c, ov, protocol) if opts.compare_paper else None for c in cohorts}
        note = ""
        if i == 0:
            fallback = [c for c in cohorts if cells[c] is None and ev.has("dualtrans", c)]
            for c in fallback:
                cells[c] = ev.cell("dualtrans", c, DEFAULT, protocol)
                other[c] = _other(ev, "dualtrans", c, DEFAULT, protocol) if opts.compare_paper else None
            if fallback:
                note = (f"Baseline row for {', '.join(short_name(c) for c in fallback)}: method dualtrans (default "
                        f"runs), because the CCL ablation run ({', '.join(f'{k}=false' for k in sets)}) is missing.")
        prow = published.iloc[i]
        rows.append(GridRow(
            lead=[label, *["✓" if f else "" for f in flags]], label=label, method=CCL, overrides=ov, cells=cells,
            other=other, paper={c: (float(prow[f"{c}_mean"]), float(prow[f"{c}_std"])) for c in PAPER_COHORTS},
            paper_overall=float(prow["overall"]), commands=_ccl_commands(ev, sets, opts), note=note))
    info = check_metric(opts.metric)
    table = grid_table(ev, name=f"table3_{protocol}_{opts.metric}", lead_headers=["Variant", "CCA", "MKD", "CGM"],
                       rows=rows, title=f"Table III — CCL ablation, {info.label}, protocol {protocol}",
                       cohorts=cohorts, overall_over=overall_over, opts=opts)
    table.notes += other_variants_note(ev, {r.overrides for r in rows}, "CCL variants stored but not in this table",
                                       CCL)
    return table


def ccl_defaults() -> dict[str, Any]:
    """CCL's default k, tau, b, r (from the registry when CCL is registered)."""
    for m in all_methods():
        if m.name == CCL:
            return {p: m.hparams.get(p, v) for p, v in CCL_DEFAULTS.items()}
    return dict(CCL_DEFAULTS)


def table4(ev: Evaluation, opts: Options) -> Table:
    """Table IV: CCL with one of k, tau, b, r changed, per cohort (defaults for the others)."""
    protocol = check_protocol(opts.protocol)
    cohorts, overall_over = table_cohorts(ev)
    published = paper_table("table4_hyperparameters")
    defaults = ccl_defaults()
    stored: dict[str, set[float]] = {p: set() for p in defaults}
    for ov in ev.variants(CCL):
        if len(ov) == 1 and ov[0][0] in defaults:
            try:
                stored[ov[0][0]].add(float(ov[0][1]))
            except ValueError:
                continue
    rows = []
    for param, default in defaults.items():
        pub = published[published["param"] == param]
        values = sorted({float(v) for v in pub["value"]} | stored[param] | {float(default)})
        for v in values:
            is_default = math.isclose(v, float(default))
            ov = DEFAULT if is_default else ((param, norm_value(v)),)
            prow = pub[np.isclose(pub["value"].astype(float), v)]
            paper = {c: (float(prow.iloc[0][c]), None) for c in PAPER_COHORTS} if len(prow) else {}
            shown = int(v) if float(v).is_integer() and isinstance(default, int) else v
            rows.append(GridRow(
                lead=[param, norm_value(shown) + (" (default)" if is_default else "")],
                label=f"{param}={norm_value(v)}",
                method=CCL, overrides=ov, cells={c: ev.cell(CCL, c, ov, protocol) for c in cohorts},
                other={c: _other(ev, CCL, c, ov, protocol) if opts.compare_paper else None for c in cohorts},
                paper=paper, paper_overall=float(prow.iloc[0]["overall"]) if len(prow) else None,
                commands=_ccl_commands(ev, {} if is_default else {param: shown}, opts), group=param))
    _blank_repeats(rows)
    info = check_metric(opts.metric)
    table = grid_table(ev, name=f"table4_{protocol}_{opts.metric}", lead_headers=["Parameter", "Value"], rows=rows,
                       title=f"Table IV — CCL hyper-parameters (others at their defaults), {info.label}, protocol "
                             f"{protocol}", cohorts=cohorts, overall_over=overall_over, opts=opts)
    table.notes += other_variants_note(ev, {r.overrides for r in rows}, "CCL variants stored but not in this table",
                                       CCL)
    return table


# ----------------------------------------------------------------------------------------------
# The paper's layout (--style paper)


def _text(v: str | Mark) -> str:
    return v.text if isinstance(v, Mark) else str(v)


def paper_style(table: Table, cohorts: Sequence[str]) -> Table:
    """``table`` (built by this module) in the CCL paper's layout: Table I ``Methods | Modality`` (every row
    named), Table III ``Models`` (variant, CCA, MKD, CGM), each under one header row with ``Datasets`` spanning
    the cohort columns and ``Overall`` last; Table II ``Methods`` and one p-value per cohort in the published
    (median) convention; Table IV ``Param. | Value``, cohorts, Overall on one header row, as the paper prints them.
    Comparison columns (paper, Δ, opt.) and the fold-safe p are left to the default style (a note says so);
    p-values render as a×10^-b. Other blocks (seed spread) are kept as they are.

    Args:
        table: a table of :func:`table1` .. :func:`table4`.
        cohorts: the short names of the cohort columns, in order.
    """
    kind = table.name.split("_")[0]
    if not table.blocks or kind not in {f"table{t}" for t in TABLES}:
        return table
    block = table.blocks[0]
    col = {h: i for i, h in enumerate(block.headers)}
    shown = [c for c in cohorts if (f"{c} median" if kind == "table2" else c) in col]
    if kind == "table2":
        pick = [col["Method"], *[col[f"{c} median"] for c in shown]]
        headers, spans = ["Methods", *shown], None
        note = "Layout of the paper's Table II: the published (median) convention only; the fold-safe p-values " \
               "are in the default style (--style default)."
    else:
        lead = {"table1": ["Method", "Modality"], "table3": ["Variant", "CCA", "MKD", "CGM"],
                "table4": ["Parameter", "Value"]}[kind]
        pick = [col[h] for h in lead] + [col[c] for c in shown] + [col["Overall"]]
        if kind == "table4":
            headers, spans = ["Param.", "Value", *shown, "Overall"], None
        elif kind == "table1":
            headers = ["", "", *shown, ""]
            spans = [("Methods", 1), ("Modality", 1), ("Datasets", len(shown)), ("Overall", 1)]
        else:
            headers = ["", "CCA", "MKD", "CGM", *shown, ""]
            spans = [("Models", 4), ("Datasets", len(shown)), ("Overall", 1)]
        note = f"Layout of the paper's Table {kind[-1].replace('1', 'I').replace('3', 'III').replace('4', 'IV')}"
        note += "; comparison columns (--compare-paper) are in the default style." if len(pick) < len(col) else "."
    rows = [[r[i] for i in pick] for r in block.rows]
    if kind == "table1":  # every row names its modality, as in the paper
        last = ""
        for r in rows:
            last = _text(r[1]) or last
            r[1] = r[1] if _text(r[1]) else last
    first = Block(block.caption, headers, rows, spans)
    return Table(name=table.name, title=table.title, blocks=[first, *table.blocks[1:]], notes=[*table.notes, note],
                 commands=table.commands, frame=table.frame, style="paper")


# ----------------------------------------------------------------------------------------------
# Entry point


def build_tables(ev: Evaluation, which: str = "all", protocols: Sequence[str] = ("best-val",),
                 metrics: Sequence[str] = ("cindex",), opts: Options | None = None,
                 variant: Overrides | str = DEFAULT) -> list[Table]:
    """Every requested table (``1``-``4`` or ``all``) for every protocol (and metric, for Tables I, III and IV);
    ``variant`` is the variant of Tables I and II (``k=9`` or its parsed pairs; III and IV are defined by
    their own CCL variants). ``opts``: see :func:`project_options`; ``opts.style`` ``paper`` lays every table out as
    the paper does (:func:`paper_style`)."""
    if isinstance(variant, str):
        variant = parse_variant(variant)
    base = opts or Options()
    if base.style not in STYLES:
        raise BenchError(f"unknown style '{base.style}'; choose one of {', '.join(STYLES)}")
    names = TABLES if which == "all" else (which,)
    out = []
    for protocol in protocols:
        for t in names:
            if t == "2":
                out.append(table2(ev, Options(**{**base.__dict__, "protocol": protocol}), variant))
                continue
            for metric in metrics:
                o = Options(**{**base.__dict__, "protocol": protocol, "metric": metric})
                out.append({"1": lambda o=o: table1(ev, o, variant), "3": lambda o=o: table3(ev, o),
                            "4": lambda o=o: table4(ev, o)}[t]())
    if base.style == "paper":
        shown = [short_name(c) for c in table_cohorts(ev)[0]]
        out = [paper_style(t, shown) for t in out]
    return out


def project_options(settings: Settings, *, compare_paper: bool = False, n_resamples: int = 1000,
                    style: str = "default", permutations: int = 1000) -> Options:
    """The table options of a project: its default seed (commands omit it) and the cohorts it can run."""
    return Options(compare_paper=compare_paper, default_seed=settings["run"]["seed"], n_resamples=n_resamples,
                   runnable=tuple(available_cohorts(settings)), style=style, permutations=permutations)


def empty_store_message(results: Any) -> str:
    """What to run when the prediction store is empty."""
    methods = [m.name for m in all_methods()]
    example = methods[0] if methods else "snn"
    return (f"The prediction store {results} holds no complete runs, so there is nothing to tabulate yet.\n"
            "Tables are computed from stored predictions only. Fill the store with, for example:\n"
            f"  bench run --method {example} --cohort BLCA        (one method on one cohort, all five folds)\n"
            "  bench run --method ccl --cohort BLCA --set k=9   (a Table IV cell)\n"
            "or import predictions made elsewhere:\n"
            "  bench results import preds.csv --method NAME --cohort BLCA\n"
            f"Registered methods: {', '.join(methods) or 'none'} (see `bench methods`).")
