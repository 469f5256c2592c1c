"""`bench claims` on hand-built stores: a claim holds, is reversed, or is not run with its command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from store_builder import add_run, rows

from bench._core.config import load_settings
from bench.data.cohort import load_cohort
from bench.report.claims import check_claims, claims_table, counts
from bench.report.evaluation import Evaluation
from bench.report.render import render
from bench.store.results_import import import_predictions

ROOT = Path(__file__).resolve().parents[2]


def _store(tmp_path: Path, risks: dict[str, float], pathology: str = "real") -> Evaluation:
    """UCEC predictions per method: risk = -quality * time + noise (quality 0: no information)."""
    settings = load_settings(ROOT)
    co = load_cohort(settings, "tcga_ucec")
    rng = np.random.default_rng(0)
    for method, quality in risks.items():
        frames = []
        for k, split in enumerate(co.splits):
            t = co.time[split.val]
            frames.append(pd.DataFrame({"case_id": [co.case_ids[i] for i in split.val], "fold": k,
                                        "risk": -quality * t / t.std() + rng.standard_normal(len(t)),
                                        "survival_months": t, "censorship": co.censorship[split.val].astype(int)}))
        f = tmp_path / f"{method}.csv"
        pd.concat(frames).to_csv(f, index=False)
        import_predictions(settings, f, method=method, cohort="UCEC", results=tmp_path / "results", title=method,
                           modality="multimodal", genomics_build="mutsig", pathology=pathology)
    return Evaluation(tmp_path / "results")


def _claim(claims, text, cohort="UCEC"):
    return next(c for c in claims if c.claim == text and c.cohort == cohort)


def test_claims_hold_reverse_and_not_run(tmp_path):
    ev = _store(tmp_path, {"ccl": 3.0, "mcat": 0.0, "motcat": 9.0})
    claims = check_claims(ev, "last", n_resamples=300, tables=("I",))
    assert _claim(claims, "CCL > MCAT").verdict == "holds"
    assert _claim(claims, "CCL > MOTCat").verdict == "reversed"
    held = _claim(claims, "CCL > MCAT")
    assert held.low > 0 and held.p < 0.05 and held.paper == pytest.approx(0.7026 - 0.6336, abs=1e-12)
    missing = _claim(claims, "CCL > MCAT", "BLCA")
    assert missing.verdict == "not run"
    assert missing.commands == ["bench run --method ccl --cohort BLCA", "bench run --method mcat --cohort BLCA"]
    n = counts(claims)
    assert n["holds"] == 1 and n["reversed"] == 1 and n["not run"] == len(claims) - 2
    text = render(claims_table(claims, "last"), "markdown")
    assert "| I       | CCL > MCAT" in text and "holds 1" in text


def test_synthetic_evidence_is_marked_and_not_counted(tmp_path):
    ev = _store(tmp_path, {"ccl": 3.0, "mcat": 0.0}, pathology="synthetic")
    claims = check_claims(ev, "last", n_resamples=100, tables=("I",))
    c = _claim(claims, "CCL > MCAT")
    assert c.verdict == "holds" and c.synthetic
    assert counts(claims)["holds"] == 0 and counts(claims, include_synthetic=True)["holds"] == 1


def _ccl_table2_store(root: Path, train_epochs: tuple[int, ...]) -> Evaluation:
    """CCL on UCEC, 5 folds of 8 validation patients: epoch 1 ranks by time (perfect separation), epoch 2
    reverses it (the last epoch). Training risks (two patients) put each epoch's threshold at the median."""
    for k in range(5):
        t = np.arange(8 * k + 1, 8 * k + 9, dtype=float)
        cens = [0] * 8
        val = {1: 100 - t, 2: t}
        frames = [rows([f"V{k}-{i}" for i in range(8)], t, cens, val[e], epoch=e) for e in (1, 2)]
        frames += [rows([f"T{k}-0", f"T{k}-1"], [1.0, 2.0], [0, 0], [float(np.median(val[e]))] * 2, epoch=e,
                        split="train") for e in train_epochs]
        add_run(root, "ccl", "tcga_ucec", k, frames, pathology="real")
    return Evaluation(root)


def test_table2_claim_reads_the_permutation_p_at_the_protocols_epoch(tmp_path):
    ev = _ccl_table2_store(tmp_path / "all", (1, 2))
    claim = _claim(check_claims(ev, "best-val", tables=("II",)), "CCL's risk groups separate survival "
                                                                 "(log-rank p < 0.05)")
    cell = ev.cell("ccl", "tcga_ucec", protocol="best-val")
    # best-val picks epoch 1 (C = 1): 4 of 8 per fold high and all of them die first -> the smallest perm p
    assert claim.gap == cell.logrank("fold-safe")[0] and claim.p == cell.permutation_p() == 1 / 1001
    assert claim.verdict == "holds" and not claim.synthetic
    # only last-epoch training rows: no evidence at best-val's epoch, so not run with the rerun command
    ev = _ccl_table2_store(tmp_path / "last", (2,))
    claims = check_claims(ev, "best-val", tables=("II",))
    claim = _claim(claims, "CCL's risk groups separate survival (log-rank p < 0.05)")
    assert claim.verdict == "not run" and claim.commands == ["bench run --method ccl --cohort UCEC --force"]
    claim = _claim(check_claims(ev, "last", tables=("II",)), "CCL's risk groups separate survival (log-rank p < 0.05)")
    assert claim.verdict == "reversed" and claim.p == 1 / 1001  # epoch 2: the high-risk group lives longest
