"""`bench compare`, `bench claims` and `bench data inner-splits|audit|site-splits` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench._core.config import load_settings
from bench.data.cohort import load_cohort
from bench.store.results_import import import_predictions

ROOT = Path(__file__).resolve().parents[2]
# Every test here runs `bench` in a subprocess.
pytestmark = pytest.mark.slow

BENCH = shutil.which("bench") or os.path.join(os.path.dirname(sys.executable), "bench")


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_ROOT": str(cwd), "OMP_NUM_THREADS": "1"}
    return subprocess.run([BENCH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """UCEC predictions of ccl (informative), mcat (random) and snn (fold 0 only) in a fresh store."""
    settings = load_settings(ROOT)
    co = load_cohort(settings, "tcga_ucec")
    tmp = tmp_path_factory.mktemp("verdicts")
    rng = np.random.default_rng(0)
    for method, quality, folds in (("ccl", 3.0, range(5)), ("mcat", 0.0, range(5)), ("snn", 1.0, [0])):
        frames = []
        for k in folds:
            v = co.splits[k].val
            t = co.time[v]
            frames.append(pd.DataFrame({"case_id": [co.case_ids[i] for i in v], "fold": k,
                                        "risk": -quality * t / t.std() + rng.standard_normal(len(v)),
                                        "survival_months": t, "censorship": co.censorship[v].astype(int)}))
        f = tmp / f"{method}.csv"
        pd.concat(frames).to_csv(f, index=False)
        import_predictions(settings, f, method=method, cohort="UCEC", results=tmp / "results", title=method,
                           modality="multimodal", genomics_build="mutsig", pathology="real")
    return tmp / "results"


def test_compare_text_and_json(store):
    r = bench(ROOT, "compare", "ccl", "mcat", "--cohort", "UCEC", "--protocol", "last", "--resamples", "300",
              "--results", str(store))
    assert r.returncode == 0, r.stderr
    assert "ccl − mcat on UCEC: +" in r.stdout and "ccl better beyond fold and seed noise" in r.stdout
    assert "(paper: +0.069)" in r.stdout  # CCL 0.7026 vs MCAT 0.6336 in the paper's Table I
    r = bench(ROOT, "compare", "ccl", "mcat", "--protocol", "last", "--resamples", "300", "--format", "json",
              "--results", str(store))
    rec = json.loads(r.stdout)
    assert [x["cohort"] for x in rec] == ["tcga_ucec"] and rec[0]["verdict"] == "A better"
    assert rec[0]["n_diffs"] == 5 and rec[0]["boot_low"] > 0 and rec[0]["correction"] == pytest.approx(2.25, abs=0.01)


def test_compare_bad_input(store):
    one_line_error(bench(ROOT, "compare", "ccl", "ccl", "--cohort", "UCEC", "--results", str(store)),
                   "compared with itself")
    one_line_error(bench(ROOT, "compare", "ccl", "nosuch", "--cohort", "UCEC", "--results", str(store)),
                   "nothing stored for method 'nosuch'", "stored methods: ccl, mcat, snn")
    one_line_error(bench(ROOT, "compare", "ccl", "mcat", "--cohort", "UCEC", "--protocol", "inner",
                         "--results", str(store)),
                   "nothing stored for ccl[selection=inner] on tcga_ucec", "--set selection=inner")
    one_line_error(bench(ROOT, "compare", "ccl", "snn", "--cohort", "UCEC", "--protocol", "last",
                         "--results", str(store)), "share only one (fold, seed)")
    one_line_error(bench(ROOT, "compare", "ccl", "mcat", "--protocol", "sideways", "--results", str(store)),
                   "unknown protocol 'sideways'")
    one_line_error(bench(ROOT, "compare", "ccl", "mcat", "--format", "xml", "--results", str(store)),
                   "unknown format 'xml'")


def test_claims_cli(store):
    r = bench(ROOT, "claims", "--protocol", "last", "--table", "I", "--resamples", "200", "--format", "markdown",
              "--results", str(store))
    assert r.returncode == 0, r.stderr
    assert "| I       | CCL > MCAT" in r.stdout and "holds 1" in r.stdout
    assert "bench run --method mcat --cohort BLCA" in r.stdout  # the command of a claim not run
    one_line_error(bench(ROOT, "claims", "--table", "V", "--results", str(store)), "unknown table 'V'")


def test_data_commands_on_the_toy_project(toy):
    r = bench(toy.root, "data", "inner-splits", "--cohort", "all")
    assert r.returncode == 0, r.stderr
    assert "inner_0.csv written" in r.stdout and (toy.root / "splits" / "tcga_toy" / "inner_4.csv").is_file()
    r = bench(toy.root, "data", "inner-splits", "--cohort", "TOY")
    assert "inner_0.csv unchanged" in r.stdout
    one_line_error(bench(toy.root, "data", "inner-splits", "--cohort", "TOY", "--fraction", "0.3"), "--force")
    r = bench(toy.root, "data", "audit", "--cohort", "TOY", "--format", "json", "--figure", "audit.pdf")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout[: r.stdout.rindex("]") + 1])
    assert rec[0]["cohort"] == "tcga_toy" and len(rec[0]["labels"]) == 10 and (toy.root / "audit.pdf").is_file()
    # the toy cohort has one tissue source site: no site-preserved split is possible
    one_line_error(bench(toy.root, "data", "site-splits", "--cohort", "TOY"), "only 1 tissue source site")


def test_run_with_seeds_and_inner_selection(toy):
    assert bench(toy.root, "data", "inner-splits", "--cohort", "TOY").returncode == 0
    r = bench(toy.root, "run", "--method", "snn", "--cohort", "TOY", "--epochs", "2", "--folds", "0,1", "--seeds",
              "0,1", "--set", "selection=inner")
    assert r.returncode == 0, r.stderr
    for s in (0, 1):
        for k in (0, 1):
            d = toy.root / "results" / "snn" / "epochs=2,selection=inner" / "tcga_toy" / f"seed{s}" / f"fold{k}"
            preds = pd.read_csv(d / "predictions.csv.gz", dtype={"case_id": str})
            assert set(preds["split"]) == {"val", "inner", "train"}
    assert "C inner" in r.stdout and "over seeds 0, 1" in r.stdout and "spread over seeds" in r.stdout
    one_line_error(bench(toy.root, "run", "--method", "snn", "--cohort", "TOY", "--seed", "0", "--seeds", "1"),
                   "--seed or --seeds")
