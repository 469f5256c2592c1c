"""``bench compare``: is method A better than method B on a cohort, beyond fold and seed noise?

From the prediction store only. For one cohort, A's and B's cells (a method and a variant each) are
scored under one fold-score protocol; the comparison uses the (fold, seed) pairs both cells hold and,
within each fold, the validation patients both have at the selected epochs. On those:

* the per fold × seed differences of Harrell's C, their mean, and the Nadeau–Bengio corrected
  resampled t-test (:func:`bench.metrics.paired.corrected_ttest`; ``n_test / n_train`` is the mean over
  the shared folds of the validation to training size ratio);
* a paired patient-level bootstrap of the mean C difference (:func:`bench.metrics.paired.paired_bootstrap`);
* a verdict (:func:`bench.metrics.paired.verdict`) and, where the CCL paper's Table I has both rows, the
  paper's gap.

Nothing retrains: a missing cell or no shared fold is an error naming the command that makes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench._core.errors import BenchError
from bench.data.cohort import short_name
from bench.metrics.concordance import cindex
from bench.metrics.paired import CorrectedTTest, FoldPair, PairedBootstrap, corrected_ttest, paired_bootstrap, verdict
from bench.report.evaluation import DEFAULT, Cell, Evaluation, Overrides, variant_label, with_inner
from bench.report.render import Block, Table
from bench.report.tables import run_command

VERDICT_TEXT = {
    "A better": "{a} better beyond fold and seed noise",
    "B better": "{b} better beyond fold and seed noise",
    "not distinguishable": "not distinguishable from fold and seed noise",
}


def p_text(p: float, alpha: float = 0.05) -> str:
    """``p`` to two significant digits, or as many more as it takes not to print ``alpha`` itself or a value
    on the other side of it (0.0496 is "0.0496", not "0.05", beside a verdict that used p < 0.05)."""
    for digits in range(2, 7):
        text = f"{p:.{digits}g}"
        if math.isnan(p) or ((float(text) < alpha) == (p < alpha) and float(text) != alpha):
            return text
    return text


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a method and a variant."""

    method: str
    overrides: Overrides = DEFAULT
    named: str | None = field(default=None, compare=False)  # the method's named variant, for labels

    @property
    def label(self) -> str:
        if self.named:
            return f"{self.method}[{self.named}]"
        v = variant_label(self.overrides)
        return self.method if v == "default" else f"{self.method}[{v}]"


@dataclass
class Comparison:
    """The paired comparison of two cells on one cohort (see the module docstring)."""

    a: Side
    b: Side
    cohort: str
    protocol: str
    diffs: pd.DataFrame  # fold, seed, n_patients, cindex_a, cindex_b, diff
    ttest: CorrectedTTest
    boot: PairedBootstrap
    test_train_ratio: float
    verdict: str
    paper_gap: float | None
    notes: list[str]

    def line(self, short_cohort: str | None = None) -> str:
        """``ccl − mcat on UCEC: +0.031 [−0.012, +0.074], p = 0.21: not distinguishable ... (paper: +0.069)``."""
        cohort = short_cohort or self.cohort
        text = VERDICT_TEXT[self.verdict].format(a=self.a.label, b=self.b.label)
        paper = "" if self.paper_gap is None else f" (paper: {self.paper_gap:+.3f})"
        return (f"{self.a.label} − {self.b.label} on {cohort}: {self.boot.mean:+.3f} "
                f"[{self.boot.low:+.3f}, {self.boot.high:+.3f}], p = {p_text(self.ttest.p_two_sided)}: {text}{paper}")

    def record(self) -> dict[str, Any]:
        """A flat, JSON-ready summary."""
        return {
            "a": self.a.label, "b": self.b.label, "cohort": self.cohort, "protocol": self.protocol,
            "n_folds": int(self.diffs["fold"].nunique()), "n_seeds": int(self.diffs["seed"].nunique()),
            "n_diffs": self.ttest.n_diffs, "mean_diff": self.ttest.mean, "boot_low": self.boot.low,
            "boot_high": self.boot.high, "n_resamples": self.boot.n_resamples, "t": self.ttest.t,
            "df": self.ttest.df, "p_two_sided": self.ttest.p_two_sided, "p_a_better": self.ttest.p_greater,
            "correction": self.ttest.correction, "test_train_ratio": self.test_train_ratio,
            "verdict": self.verdict, "paper_gap": self.paper_gap,
        }


def _run_command(side: Side, cohort: str, folds: list[int] | None = None, seeds: list[int] | None = None,
                 axes: Mapping[str, str] | None = None) -> str:
    sets = {**dict(side.overrides), **dict(axes or {})}  # a --splits/--features view's runs carry its axes
    if not seeds:
        return run_command(side.method, cohort, sets, None, folds)
    return " ; ".join(run_command(side.method, cohort, sets, s, folds) for s in seeds)


def _cell(ev: Evaluation, side: Side, cohort: str, protocol: str) -> Cell:
    cell = ev.cell(side.method, cohort, side.overrides, protocol)
    if cell is None:
        # protocol inner reads the variant's selection=inner runs: name those, and the command that makes them
        shown = Side(side.method, with_inner(side.overrides)) if protocol == "inner" else side
        raise BenchError(f"nothing stored for {shown.label} on {cohort}; make it with: "
                         f"{_run_command(shown, cohort, axes=ev.axes)}")
    return cell


def compare(ev: Evaluation, a: Side, b: Side, cohort: str, *, protocol: str = "best-val", n_resamples: int = 1000,
            seed: int = 0, paper_gap: float | None = None) -> Comparison:
    """Compare two stored cells on one cohort (module docstring).

    Args:
        ev: the verified prediction store.
        a, b: the two sides (method and variant); the difference is A − B.
        cohort: canonical cohort name (``tcga_ucec``).
        protocol: the fold-score protocol that picks each fold's epoch.
        n_resamples: bootstrap resamples per fold.
        seed: seeds the bootstrap.
        paper_gap: the published A − B gap, shown beside the verdict.
    """
    if a == b:
        raise BenchError(f"{a.label} compared with itself; name two different methods or variants")
    ca, cb = _cell(ev, a, cohort, protocol), _cell(ev, b, cohort, protocol)
    seeds_a = {s.seed: s for s in ca.seeds}
    seeds_b = {s.seed: s for s in cb.seeds}
    shared = sorted((k, s) for s in set(seeds_a) & set(seeds_b)
                    for k in set(seeds_a[s].folds) & set(seeds_b[s].folds))
    if not shared:
        have_a = sorted((s.seed, k) for s in ca.seeds for k in s.folds)
        have_b = sorted((s.seed, k) for s in cb.seeds for k in s.folds)
        want = have_a if len(have_a) >= len(have_b) else have_b
        short, other = (b, a) if want is have_a else (a, b)
        raise BenchError(
            f"{a.label} and {b.label} share no (fold, seed) on {cohort}; {other.label} has "
            f"{len(want)}, {short.label} none of them; make them with: "
            f"{_run_command(short, cohort, sorted({k for _, k in want}), sorted({s for s, _ in want}), ev.axes)}")
    notes: list[str] = []
    folds = sorted({k for k, _ in shared})
    rows, pairs, ratios = [], [], []
    for k in folds:
        fold_seeds = sorted(s for kk, s in shared if kk == k)
        vals = {}
        for s in fold_seeds:
            va = seeds_a[s].folds[k].val().set_index("case_id")
            vb = seeds_b[s].folds[k].val().set_index("case_id")
            vals[s] = (va, vb)
        common = sorted(set.intersection(*[set(va.index) & set(vb.index) for va, vb in vals.values()]))
        n_any = len(set.union(*[set(va.index) | set(vb.index) for va, vb in vals.values()]))
        if len(common) < n_any:
            notes.append(f"fold {k}: {n_any - len(common)} of {n_any} validation patients are not in both "
                         "methods' predictions and are left out")
        if not common:
            raise BenchError(f"fold {k} of {cohort}: {a.label} and {b.label} share no validation patient")
        va0 = vals[fold_seeds[0]][0].loc[common]
        time = va0["survival_months"].to_numpy(dtype=float)
        cens = va0["censorship"].to_numpy(dtype=float)
        ra = np.stack([vals[s][0].loc[common, "risk"].to_numpy(dtype=float) for s in fold_seeds])
        rb = np.stack([vals[s][1].loc[common, "risk"].to_numpy(dtype=float) for s in fold_seeds])
        for s, r_a, r_b in zip(fold_seeds, ra, rb, strict=True):
            c_a, c_b = cindex(time, cens, r_a), cindex(time, cens, r_b)
            rows.append({"fold": k, "seed": s, "n_patients": len(common), "cindex_a": c_a, "cindex_b": c_b,
                         "diff": c_a - c_b})
        pairs.append(FoldPair(k, time, cens, ra, rb))
        train = seeds_a[fold_seeds[0]].training_labels(k)
        if train is not None:
            ratios.append(len(common) / len(train[0]))
    diffs = pd.DataFrame(rows)
    if diffs["diff"].isna().any():
        bad = diffs[diffs["diff"].isna()].iloc[0]
        raise BenchError(f"fold {int(bad['fold'])} seed {int(bad['seed'])} of {cohort}: the C-index is undefined "
                         "(no comparable pair among the shared patients)")
    ratio = float(np.mean(ratios)) if ratios else 1.0 / max(1, ca.expected_folds - 1)
    if len(diffs) < 2:
        raise BenchError(f"{a.label} and {b.label} share only one (fold, seed) on {cohort}; the t-test needs two; "
                         f"make more with: {_run_command(a, cohort, axes=ev.axes)} and "
                         f"{_run_command(b, cohort, axes=ev.axes)}")
    tt = corrected_ttest(diffs["diff"].to_numpy(), ratio)
    boot = paired_bootstrap(pairs, n_resamples=n_resamples, seed=seed)
    missing = sorted({(s.seed, k) for s in ca.seeds for k in s.folds} ^ {(s.seed, k) for s in cb.seeds
                                                                           for k in s.folds})
    if missing:
        notes.append(f"{len(missing)} (seed, fold) runs held by only one of the two are left out")
    return Comparison(a, b, cohort, protocol, diffs, tt, boot, ratio, verdict(tt, boot), paper_gap, notes)


def paper_gap(paper: pd.DataFrame, title_a: str | None, title_b: str | None, cohort_short: str) -> float | None:
    """The CCL paper's Table I gap A − B on a cohort, or None when a row is not in the paper."""
    rows = paper.set_index("method")
    col = f"{cohort_short}_mean"
    if title_a not in rows.index or title_b not in rows.index or col not in rows.columns:
        return None
    return float(rows.loc[title_a, col] - rows.loc[title_b, col])


def records(comparisons: list[Comparison]) -> list[Mapping[str, Any]]:
    return [c.record() for c in comparisons]


def comparison_table(comparisons: list[Comparison]) -> Table:
    """The comparisons as a renderable table: one row per cohort, the verdict lines as notes."""
    if not comparisons:
        raise BenchError("nothing to compare")
    first = comparisons[0]
    headers = ["Cohort", "Folds × seeds", "Mean Δ C", "95% bootstrap CI", "t (corrected)", "df", "p (two-sided)",
               f"p ({first.a.label} better)", "Variance factor", "Verdict", "Paper Δ"]
    rows = []
    for c in comparisons:
        cohort = short_name(c.cohort)
        rows.append([cohort, f"{c.diffs['fold'].nunique()} × {c.diffs['seed'].nunique()}", f"{c.ttest.mean:+.4f}",
                     f"[{c.boot.low:+.4f}, {c.boot.high:+.4f}]", f"{c.ttest.t:.3f}", str(c.ttest.df),
                     f"{c.ttest.p_two_sided:.3g}", f"{c.ttest.p_greater:.3g}", f"{c.ttest.correction:.3f}",
                     c.verdict.replace("A better", f"{c.a.label} better").replace("B better", f"{c.b.label} better"),
                     "—" if c.paper_gap is None else f"{c.paper_gap:+.4f}"])
    notes = [c.line(short_name(c.cohort)) for c in comparisons]
    notes += [f"{short_name(c.cohort)}: {n}" for c in comparisons for n in c.notes]
    notes.append(
        f"Δ = C({first.a.label}) − C({first.b.label}), Harrell's C per fold at the epoch protocol '{first.protocol}' "
        "selects. t: Nadeau–Bengio corrected resampled t-test over the fold × seed differences (variance factor "
        "1 + J·n_test/n_train on the naive s²/J). CI: paired patient bootstrap within folds "
        f"({first.boot.n_resamples} resamples), averaged over seeds and folds. Distinguishable only when p < 0.05 "
        "and the CI excludes 0.")
    title = f"{first.a.label} vs {first.b.label} — protocol {first.protocol}"
    frame = pd.DataFrame([c.record() for c in comparisons])
    return Table(name=f"compare_{first.a.label}_{first.b.label}_{first.protocol}", title=title,
                 blocks=[Block("", headers, rows)], notes=notes, frame=frame)
