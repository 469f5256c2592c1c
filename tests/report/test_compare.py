"""`bench compare` on MCAT's published per-patient predictions, checked against an independent computation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sksurv.metrics import concordance_index_censored

from bench._core.config import load_settings
from bench._core.errors import BenchError
from bench.report.compare import Side, compare
from bench.report.evaluation import Evaluation
from bench.store.results_import import import_predictions

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "data" / "reference_results"
CONFIGS = {"mcat_published": ("MCATsm_nll_surv_a0.0_5foldcv_gc32_concat", "multimodal", "real"),
           "snn_published": ("SNNsm_nll_surv_a0.0_reg1e-04_5foldcv_gc32_sig", "genomics", "none")}
COHORTS = ("BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    settings = load_settings(ROOT)
    tmp = tmp_path_factory.mktemp("published")
    preds = pd.read_csv(REFERENCE / "mcat_iccv2021_val_predictions.csv.gz", dtype={"case_id": str})
    results = tmp / "results"
    for method, (config, modality, pathology) in CONFIGS.items():
        f = tmp / f"{method}.csv"
        preds[preds["config"] == config].drop(columns="config").to_csv(f, index=False)
        for cohort in COHORTS:
            import_predictions(settings, f, method=method, cohort=cohort, results=results, title=method,
                               modality=modality, genomics_build="mcat_sig", pathology=pathology)
    return Evaluation(results), preds


def _c(rows: pd.DataFrame) -> float:
    return float(concordance_index_censored(rows["censorship"].to_numpy() < 0.5,
                                            rows["survival_months"].to_numpy(float),
                                            rows["risk"].to_numpy(float), tied_tol=1e-8)[0])


def test_compare_published_mcat_with_published_snn(published):
    ev, preds = published
    a, b = Side("mcat_published"), Side("snn_published")
    verdicts = {}
    for cohort in COHORTS:
        res = compare(ev, a, b, f"tcga_{cohort.lower()}", protocol="last", n_resamples=400, seed=3)
        verdicts[cohort] = res.verdict
        # independent: per-fold C-indices straight from the published file
        want = []
        for k in range(5):
            ra = preds[(preds["config"] == CONFIGS[a.method][0]) & (preds["cohort"] == cohort.lower())
                       & (preds["fold"] == k)]
            rb = preds[(preds["config"] == CONFIGS[b.method][0]) & (preds["cohort"] == cohort.lower())
                       & (preds["fold"] == k)]
            assert sorted(ra["case_id"]) == sorted(rb["case_id"])
            want.append(_c(ra) - _c(rb))
        np.testing.assert_allclose(res.diffs.sort_values("fold")["diff"].to_numpy(), want, atol=1e-12)
        # the corrected t-test by hand: J = 5, n_test / n_train from the split sizes
        d = np.asarray(want)
        n_val = preds[(preds["config"] == CONFIGS[a.method][0]) & (preds["cohort"] == cohort.lower())]
        sizes = n_val.groupby("fold").size().to_numpy()
        ratio = np.mean(sizes / (sizes.sum() - sizes))
        t = d.mean() / math.sqrt((1 / 5 + ratio) * d.var(ddof=1))
        assert res.test_train_ratio == pytest.approx(ratio, rel=1e-12)
        assert res.ttest.t == pytest.approx(t, rel=1e-9)
        assert res.ttest.p_two_sided == pytest.approx(2 * stats.t.sf(abs(t), 4), rel=1e-9)
        assert res.boot.mean == pytest.approx(d.mean(), abs=1e-12)
        assert res.boot.low <= res.boot.mean <= res.boot.high
        line = res.line(cohort)
        assert line.startswith(f"mcat_published − snn_published on {cohort}: {d.mean():+.3f} [")
        assert f"p = {res.ttest.p_two_sided:.2g}" in line
    # MCAT's published runs beat its published SNN clearly on some cohorts, not on all
    assert set(verdicts.values()) <= {"A better", "B better", "not distinguishable"}


def test_bootstrap_replicates_equal_a_naive_resampling(published):
    ev, preds = published
    res = compare(ev, Side("mcat_published"), Side("snn_published"), "tcga_blca", protocol="last",
                  n_resamples=60, seed=11)
    rng = np.random.default_rng(11)
    per_fold = []
    for k in range(5):
        rows = {m: preds[(preds["config"] == c) & (preds["cohort"] == "blca") & (preds["fold"] == k)]
                .set_index("case_id").sort_index() for m, (c, _, _) in CONFIGS.items()}
        n = len(rows["mcat_published"])
        counts = rng.multinomial(n, np.full(n, 1 / n), size=60)
        reps = []
        for w in counts:
            idx = np.repeat(np.arange(n), w)
            reps.append(_c(rows["mcat_published"].iloc[idx]) - _c(rows["snn_published"].iloc[idx]))
        per_fold.append(reps)
    np.testing.assert_allclose(res.boot.replicates, np.mean(per_fold, axis=0), atol=1e-12)


def test_compare_bad_input(published):
    ev, _ = published
    with pytest.raises(BenchError, match="compared with itself"):
        compare(ev, Side("mcat_published"), Side("mcat_published"), "tcga_blca")
    with pytest.raises(BenchError, match="nothing stored for nosuch on tcga_blca; make it with: bench run"):
        compare(ev, Side("nosuch"), Side("mcat_published"), "tcga_blca")


def test_a_side_may_name_a_named_variant(monkeypatch):
    from bench.cli.verdicts import _side

    monkeypatch.setenv("BENCH_ROOT", str(Path(__file__).resolve().parents[2]))
    side = _side("snn:ccl-protocol", None, "UCEC")
    assert side.label == "snn[ccl-protocol]"
    got = dict(side.overrides)
    assert got["optimizer"] == "sgd" and got["epochs"] == "30" and "momentum" not in got  # as its runs record it
    assert side == _side("snn:" + ",".join(f"{k}={v}" for k, v in side.overrides), None)  # same runs
    with pytest.raises(BenchError, match="unknown variant 'nope' of snn; its named variants: ccl-protocol"):
        _side("snn:nope", None)


def test_the_verdict_line_never_prints_p_on_the_wrong_side_of_alpha():
    from bench.report.compare import p_text

    assert p_text(0.21) == "0.21" and p_text(0.0479) == "0.048"  # two significant digits as a rule
    assert p_text(0.0496) == "0.0496"  # not "0.05" beside a verdict that used p < 0.05
    assert p_text(0.0504) == "0.0504"  # not "0.05" either: it reads as the threshold itself
    assert p_text(0.05) == "0.05"
    assert p_text(0.000495) == "0.00049"
