"""``bench claims``: the CCL paper's claims as a checklist, each checked on the prediction store.

Claims, one per cohort each:

* **Table I** — CCL beats each baseline row of Table I.
* **Table III** — each ablation step improves on the previous one (baseline -> +CCA -> +CCA+MKD -> CCL).
* **Table IV** — CCL's default k, tau, b and r beat every other value the paper lists.
* **Table II** — CCL's risk groups separate survival (the fold-safe convention: each fold's validation
  patients split at the median of its training patients' risks at the protocol's epoch; holds when the
  within-fold permutation log-rank p < 0.05; runs with training predictions at their last epoch only
  are *not run* under best-val and inner, with the rerun command).

A pairwise claim "A beats B" is checked with :func:`bench.report.compare.compare` under one protocol:
*holds* when A is better beyond fold and seed noise, *reversed* when B is, *not distinguishable*
otherwise, *not run* when a cell is missing (with the command that makes it). Claims whose evidence
uses synthetic pathology are marked ``synthetic`` and left out of the verdict counts by default:
they measure the harness, not the paper.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench._core.errors import BenchError
from bench.api.paper import PAPER_COHORTS, paper_table
from bench.data.cohort import canonical_name, short_name
from bench.metrics import survival as sm
from bench.report.compare import Side, compare
from bench.report.evaluation import DEFAULT, Cell, Evaluation, norm_value, normalize_overrides
from bench.report.render import Block, Table
from bench.report.tables import ABLATION, CCL, ccl_defaults, row_specs, run_command

VERDICTS = ("holds", "not distinguishable", "reversed", "not run")
ALPHA = 0.05


@dataclass
class Claim:
    """One claim on one cohort and what the store says about it."""

    table: str  # I, II, III, IV
    claim: str
    cohort: str  # short name
    paper: float | None  # the paper's gap (or p for Table II)
    gap: float | None = None  # reproduced gap (or p)
    low: float | None = None
    high: float | None = None
    p: float | None = None
    verdict: str = "not run"
    synthetic: bool = False
    commands: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"table": self.table, "claim": self.claim, "cohort": self.cohort, "paper": self.paper,
                "reproduced": self.gap, "low": self.low, "high": self.high, "p": self.p, "verdict": self.verdict,
                "synthetic": self.synthetic, "commands": "; ".join(self.commands)}


def _synthetic(cells: Iterable[Cell | None]) -> bool:
    return any(p.pathology == "synthetic" for c in cells if c is not None for p in c.provenances())


def _pairwise(ev: Evaluation, table: str, text: str, a: Side, b: Side, cohort: str, paper_gap: float | None,
              protocol: str, n_resamples: int, seed: int) -> Claim:
    claim = Claim(table, text, short_name(cohort), paper_gap)
    cells = {s: ev.cell(s.method, cohort, s.overrides, protocol) for s in (a, b)}
    missing = [s for s, c in cells.items() if c is None]
    claim.synthetic = _synthetic(cells.values())
    if missing:
        claim.commands = [run_command(s.method, cohort, dict(s.overrides)) for s in missing]
        return claim
    try:
        res = compare(ev, a, b, cohort, protocol=protocol, n_resamples=n_resamples, seed=seed)
    except BenchError as e:  # no shared folds: say what makes them
        claim.commands = [str(e).split("make them with: ")[-1]] if "make them with: " in str(e) else [str(e)]
        return claim
    claim.gap, claim.low, claim.high, claim.p = res.boot.mean, res.boot.low, res.boot.high, res.ttest.p_two_sided
    claim.verdict = {"A better": "holds", "B better": "reversed"}.get(res.verdict, "not distinguishable")
    return claim


def table1_claims(ev: Evaluation, protocol: str, n_resamples: int, seed: int) -> list[Claim]:
    paper = paper_table("table1_cindex").set_index("method")
    ccl_title = next(r.paper for r in row_specs(ev) if r.method == CCL and r.paper)
    out = []
    for row in row_specs(ev):
        if row.paper is None or row.method == CCL:
            continue
        for c in PAPER_COHORTS:
            gap = float(paper.loc[ccl_title, f"{c}_mean"] - paper.loc[row.paper, f"{c}_mean"])
            if row.method is None:
                out.append(Claim("I", f"CCL > {row.label}", c, gap, commands=[f"(no method registered for "
                                                                                f"'{row.paper}')"]))
                continue
            out.append(_pairwise(ev, "I", f"CCL > {row.label}", Side(CCL), Side(row.method), canonical_name(c), gap,
                                 protocol, n_resamples, seed))
    return out


def table3_claims(ev: Evaluation, protocol: str, n_resamples: int, seed: int) -> list[Claim]:
    paper = paper_table("table3_ablation")
    out = []
    for i in range(1, len(ABLATION)):
        prev_label, _, prev_sets = ABLATION[i - 1]
        label, _, sets = ABLATION[i]
        for c in PAPER_COHORTS:
            gap = float(paper.iloc[i][f"{c}_mean"] - paper.iloc[i - 1][f"{c}_mean"])
            prev = Side(CCL, normalize_overrides(prev_sets))
            cohort = canonical_name(c)
            if i == 1 and ev.cell(CCL, cohort, prev.overrides, protocol) is None and ev.has("dualtrans", cohort):
                prev = Side("dualtrans")  # the baseline row falls back to DualTrans' own runs, as Table III does
            out.append(_pairwise(ev, "III", f"{label} > {prev_label}", Side(CCL, normalize_overrides(sets)), prev,
                                 cohort, gap, protocol, n_resamples, seed))
    return out


def table4_claims(ev: Evaluation, protocol: str, n_resamples: int, seed: int) -> list[Claim]:
    paper = paper_table("table4_hyperparameters")
    defaults = ccl_defaults()
    out = []
    for param, default in defaults.items():
        rows = paper[paper["param"] == param]
        drow = rows[[math.isclose(float(v), float(default)) for v in rows["value"]]]
        for _, r in rows.iterrows():
            v = float(r["value"])
            if math.isclose(v, float(default)):
                continue
            shown = int(v) if v.is_integer() and isinstance(default, int) else v
            for c in PAPER_COHORTS:
                gap = float(drow.iloc[0][c] - r[c]) if len(drow) else None
                out.append(_pairwise(ev, "IV", f"{param}={norm_value(default)} > {param}={norm_value(shown)}",
                                     Side(CCL), Side(CCL, ((param, norm_value(v)),)), canonical_name(c), gap,
                                     protocol, n_resamples, seed))
    return out


def _excess(cell: Cell) -> float:
    """Observed minus expected deaths of the fold-safe high-risk groups, summed over the cell's seeds."""
    total = 0.0
    for seed in cell.used:
        splits = seed.fold_safe() or []
        frames = [s.val.assign(high=s.val["risk"].to_numpy() >= s.threshold) for s in splits]
        if frames:
            v = pd.concat(frames)
            total += sm.logrank_excess(v["survival_months"].to_numpy(), v["censorship"].to_numpy(),
                                       v["high"].to_numpy())
    return total


def table2_claims(ev: Evaluation, protocol: str, n_perm: int = 1000, perm_seed: int = 0) -> list[Claim]:
    """CCL's fold-safe risk groups per cohort: the reproduced value is the fold-safe log-rank p, the verdict
    reads the permutation p (labels permuted within folds), which does not assume the log-rank's
    asymptotics."""
    paper = paper_table("table2_logrank_p").set_index("method")
    out = []
    for c in PAPER_COHORTS:
        cohort = canonical_name(c)
        claim = Claim("II", "CCL's risk groups separate survival (log-rank p < 0.05)", c,
                      float(paper.loc["CCL", c]) if "CCL" in paper.index else None)
        cell = ev.cell(CCL, cohort, DEFAULT, protocol)
        if cell is None:
            claim.commands = [run_command(CCL, cohort)]
        else:
            claim.synthetic = _synthetic([cell])
            p, _, _ = cell.logrank("fold-safe")
            if cell.fold_safe_last_epoch and protocol != "last":
                # the runs hold training predictions for their last epoch only: no evidence at this protocol's
                # epoch (Table II shows the fallback with a dagger); rerunning stores them
                claim.commands = [run_command(CCL, cohort) + " --force"]
            elif not math.isnan(p):
                claim.gap = p
                claim.p = cell.permutation_p(n_perm, perm_seed)
                reversed_ = _excess(cell) < 0  # two-sided tests: the sign says which group died sooner
                claim.verdict = ("not distinguishable" if claim.p >= ALPHA else "reversed" if reversed_ else "holds")
        out.append(claim)
    return out


def check_claims(ev: Evaluation, protocol: str = "best-val", *, n_resamples: int = 1000, seed: int = 0,
                 tables: Iterable[str] = ("I", "II", "III", "IV")) -> list[Claim]:
    """Every claim of the chosen tables, checked on the store (see the module docstring).

    Args:
        ev: the verified prediction store.
        protocol: the fold-score protocol of every comparison.
        n_resamples: bootstrap resamples per fold of each comparison.
        seed: seeds every bootstrap.
        tables: which of the paper's tables to check.
    """
    wanted = set(tables)
    out: list[Claim] = []
    if "I" in wanted:
        out += table1_claims(ev, protocol, n_resamples, seed)
    if "II" in wanted:
        out += table2_claims(ev, protocol)
    if "III" in wanted:
        out += table3_claims(ev, protocol, n_resamples, seed)
    if "IV" in wanted:
        out += table4_claims(ev, protocol, n_resamples, seed)
    return out


def counts(claims: Iterable[Claim], include_synthetic: bool = False) -> Counter[str]:
    """Verdict counts, by default over claims whose evidence has no synthetic pathology."""
    return Counter(c.verdict for c in claims if include_synthetic or not c.synthetic)


def _fmt(x: float | None, digits: int = 4, signed: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}g}"


def claims_table(claims: list[Claim], protocol: str, include_synthetic: bool = False) -> Table:
    """The checklist as a renderable table, verdict counts and the commands of missing runs as notes."""
    headers = ["Table", "Claim", "Cohort", "Paper", "Reproduced", "95% CI", "p", "Verdict", "Evidence"]
    rows = []
    for c in claims:
        is_p = c.table == "II"
        paper = _fmt(c.paper, 2, signed=False) if is_p else _fmt(c.paper)
        got = _fmt(c.gap, 2, signed=False) if is_p else _fmt(c.gap)
        ci = "—" if c.low is None else f"[{c.low:+.4f}, {c.high:+.4f}]"
        rows.append([c.table, c.claim, c.cohort, paper, got, ci, _fmt(c.p, 2, signed=False), c.verdict,
                     "—" if c.verdict == "not run" else ("synthetic pathology" if c.synthetic else "real data")])
    n = counts(claims, include_synthetic)
    scope = "all claims" if include_synthetic else "claims on real data (synthetic-pathology evidence left out)"
    notes = [f"Verdicts over {scope}: " + ", ".join(f"{v} {n.get(v, 0)}" for v in VERDICTS)]
    if not include_synthetic:
        s = counts([c for c in claims if c.synthetic], True)
        notes.append("With synthetic pathology (not counted): " + ", ".join(f"{v} {s.get(v, 0)}" for v in VERDICTS))
    notes.append("Pairwise claims: `bench compare` under protocol "
                 f"'{protocol}' (holds = better beyond fold and seed noise: corrected p < 0.05 and bootstrap CI above "
                 "0; reversed = the other way; otherwise not distinguishable). Table II: reproduced = fold-safe "
                 "log-rank p, "
                 "p = its within-fold permutation p (1000 permutations), holds when p < 0.05.")
    commands = sorted({cmd for c in claims if c.verdict == "not run" for cmd in c.commands})
    frame = pd.DataFrame([c.record() for c in claims])
    return Table(name=f"claims_{protocol}", title=f"The CCL paper's claims, checked on the store — protocol {protocol}",
                 blocks=[Block("", headers, rows)], notes=notes, commands=commands, frame=frame)
