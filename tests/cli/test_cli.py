"""The `bench` command as users run it: happy path output and one-line errors for bad input."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

BENCH = shutil.which("bench") or os.path.join(os.path.dirname(sys.executable), "bench")


def bench(toy, *args):
    env = {**os.environ, "BENCH_ROOT": str(toy.root), "OMP_NUM_THREADS": "1"}
    return subprocess.run([BENCH, *args], cwd=toy.root, env=env, capture_output=True, text=True, timeout=300)


def assert_one_line_error(r, pattern):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert pd.Series([lines[0]]).str.contains(pattern, regex=True).iloc[0], lines[0]


@pytest.mark.slow
def test_run_prints_both_protocols(toy):
    r = bench(toy, "run", "--method", "MeanMIL", "--cohort", "toy", "--epochs", "2", "--folds", "0,1")
    assert r.returncode == 0, r.stderr
    assert "C best-val" in r.stdout and "C last" in r.stdout and "mean ± std" in r.stdout
    assert "SYNTHETIC" in r.stderr  # the synthetic store is announced
    again = bench(toy, "run", "--method", "meanmil", "--cohort", "TOY", "--epochs", "2", "--folds", "0,1")
    assert again.stdout.count("already stored, skipped") == 2


def test_methods_and_cohorts(toy):
    r = bench(toy, "methods")
    assert r.returncode == 0 and "attmil" in r.stdout and "snn" in r.stdout
    r = bench(toy, "cohorts")
    assert r.returncode == 0 and "TOY" in r.stdout and "100" in r.stdout


@pytest.mark.parametrize("args,pattern", [
    (["run", "--method", "nope", "--cohort", "toy"], r"unknown method 'nope'; valid methods: .*attmil"),
    (["run", "--method", "snn", "--cohort", "kirc"], r"unknown cohort 'kirc'; valid cohorts: TOY"),
    (["run", "--method", "attmil", "--cohort", "toy", "--features", "uni"], r"no feature store 'uni' for TOY"),
    (["run", "--method", "snn", "--cohort", "toy", "--set", "k=3"], r"unknown key 'k' for method snn"),
    (["run", "--method", "snn", "--cohort", "toy", "--set", "epochs=0"], r"bad value 0 for 'train.epochs'"),
    (["run", "--method", "snn", "--cohort", "toy", "--folds", "7"], r"fold 7 out of range for TOY: folds 0..4"),
])
def test_bad_arguments(toy, args, pattern):
    assert_one_line_error(bench(toy, *args), pattern)


def test_corrupt_real_store(toy):
    d = toy.root / "features" / "tcga_toy"
    d.mkdir(parents=True)
    (d / "resnet50.h5").write_bytes(b"\x89HDF garbage")
    assert_one_line_error(bench(toy, "run", "--method", "attmil", "--cohort", "toy"),
                          r"feature store .*resnet50.h5 is unreadable")


def test_nan_in_genomics(toy):
    table = toy.root / "data" / "genomics" / "mutsig" / "tcga_toy_all_clean.csv"
    df = pd.read_csv(table)
    df.loc[0, "KRAS_cnv"] = np.inf
    df.to_csv(table, index=False)
    assert_one_line_error(bench(toy, "run", "--method", "snn", "--cohort", "toy"),
                          rf"patient {df.case_id[0]} has inf in genomic column KRAS_cnv")


def test_split_id_absent(toy):
    f = toy.root / "splits" / "tcga_toy" / "splits_0.csv"
    s = pd.read_csv(f, index_col=0)
    s.loc[1, "val"] = "TCGA-ZZ-0000"
    s.to_csv(f)
    assert_one_line_error(bench(toy, "run", "--method", "snn", "--cohort", "toy"),
                          r"val patient TCGA-ZZ-0000 is not in the cohort table")


@pytest.mark.slow
def test_import_errors_and_success(toy, tmp_path):
    from bench.data.cohort import load_cohort

    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "feats"
    feats.mkdir()
    for slides in co.slides:
        for sid in slides:
            torch.save(torch.randn(5, 8), feats / f"{sid}.pt")
    torch.save(torch.randn(5, 6), feats / f"{co.slides[4][0]}.pt")
    assert_one_line_error(bench(toy, "data", "import", "--cohort", "toy", "--features", str(feats)),
                          r"feature dimension mismatch: .* has 6-d features, expected 8")
    (feats / f"{co.slides[4][0]}.pt").unlink()
    assert_one_line_error(bench(toy, "data", "import", "--cohort", "toy", "--features", str(feats)),
                          r"1 slide\(s\) of tcga_toy have no feature file")
    r = bench(toy, "data", "import", "--cohort", "toy", "--features", str(feats), "--allow-missing-slides")
    assert r.returncode == 0 and "dropped 1 patient" in r.stdout
    r = bench(toy, "run", "--method", "meanmil", "--cohort", "toy", "--epochs", "1", "--folds", "0")
    assert r.returncode == 0, r.stderr
    assert "REAL store resnet50.h5" in r.stdout


def test_usage_errors_have_no_traceback(toy):
    r = bench(toy, "run", "--method", "snn", "--cohort", "toy", "--bogus")
    assert r.returncode == 2 and "No such option: --bogus" in r.stderr and "Traceback" not in r.stderr
    r = bench(toy, "run", "--cohort", "toy")
    assert r.returncode == 2 and "Missing option '--method'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_perf_placement_prints_each_placement_and_refuses_a_bad_one(toy):
    r = bench(toy, "perf", "--placement", "disk,host", "--memory-limit-mb", "2", "--store-mb", "6", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "memory limit 2 MiB: auto chooses disk" in lines[0]
    assert [ln.split(":")[0] for ln in lines[1:]] == ["disk", "host"] and all("MiB/s" in ln for ln in lines[1:])
    assert_one_line_error(bench(toy, "perf", "--placement", "disk,ram"),
                          r"bad --placement 'disk,ram'.*disk, host, device")
