"""Table II's fold-safe column at the protocol's epoch, its last-epoch fallback, and the permutation p."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines.statistics import logrank_test
from store_builder import add_run, rows
from typer.testing import CliRunner

from bench._core.errors import BenchError
from bench.metrics.horizon import permutation_logrank
from bench.report.evaluation import Evaluation
from bench.report.tables import Options, format_p, table2

BLCA = "tcga_blca"


def _fold(k: int):
    """Fold k: 6 validation patients (times 6k+1..6k+6, the last two censored). Epoch 1: risk = -time (worst
    C), epoch 2: risk = time-ordered best (C = 1), epoch 3: risks shuffled. Training risks differ per epoch so
    that each epoch's median moves the threshold."""
    t = np.arange(6 * k + 1, 6 * k + 7, dtype=float)
    cens = [0, 0, 0, 0, 1, 1]
    val = {1: t.copy(), 2: 100 - t, 3: 100 - t[[2, 0, 1, 5, 3, 4]]}
    train = {1: [50.0, 60.0], 2: [100 - t[1] - 0.5, 100 - t[1] - 0.5], 3: [100 - t[3] - 0.5, 100 - t[3] - 0.5]}
    return t, cens, val, train


def _store(root, train_epochs=(1, 2, 3)):
    ids = [f"T-{i}" for i in range(2)]
    for k in range(5):
        t, cens, val, train = _fold(k)
        vids = [f"V{k}-{i}" for i in range(6)]
        frames = [rows(vids, t, cens, val[e], epoch=e) for e in (1, 2, 3)]
        frames += [rows([f"{x}{k}" for x in ids], [1.0, 2.0], [0, 0], train[e], epoch=e, split="train")
                   for e in train_epochs]
        add_run(root, "snn", BLCA, k, frames)
    return Evaluation(root)


def _direct(epoch: int, n_perm: int = 1000, seed: int = 0):
    """Fold-safe lifelines p, n_high and permutation p computed by hand at ``epoch``."""
    folds, times, events, highs = [], [], [], []
    for k in range(5):
        t, cens, val, train = _fold(k)
        thr = float(np.median(train[epoch]))
        folds.append((t, np.asarray(cens, dtype=float), val[epoch], thr))
        times.append(t)
        events.append(np.asarray(cens) == 0)
        highs.append(val[epoch] >= thr)
    time, event, high = np.concatenate(times), np.concatenate(events), np.concatenate(highs)
    p = logrank_test(time[high], time[~high], event[high], event[~high]).p_value
    return p, int(high.sum()), permutation_logrank(folds, n_perm=n_perm, seed=seed)[1]


def _frame(t):
    """Table II's records of SNN on BLCA, by convention."""
    return t.frame[(t.frame["method"] == "snn") & (t.frame["cohort"] == "BLCA")].set_index("convention")


def _cell(t, column: str) -> str:
    row = next(r for r in t.blocks[0].rows if r[0] == "SNN")
    return row[t.blocks[0].headers.index(f"BLCA {column}")]


def test_fold_safe_and_permutation_p_at_the_selected_epoch(tmp_path):
    ev = _store(tmp_path)
    want_p, want_high, want_perm = _direct(2)  # best-val picks epoch 2 (C = 1) in every fold
    t = table2(ev, Options(protocol="best-val"))
    assert _cell(t, "fold-safe") == format_p(want_p) and _cell(t, "perm p") == format_p(want_perm)
    f = t.frame.set_index(["method", "cohort", "convention"])
    assert f.loc[("snn", "BLCA", "fold-safe"), "p"] == pytest.approx(want_p, rel=1e-12)
    assert f.loc[("snn", "BLCA", "fold-safe"), "n_high"] == want_high == 10  # 2 of 6 per fold
    assert f.loc[("snn", "BLCA", "permutation"), "p"] == want_perm  # the same call, the same seed: exactly equal
    assert f.loc[("snn", "BLCA", "permutation"), "permutations"] == 1000
    assert not f.loc[("snn", "BLCA", "fold-safe"), "last_epoch"]
    assert not any("†" in n for n in t.notes)
    # the last protocol reads epoch 3, whose threshold differs
    last = table2(ev, Options(protocol="last"))
    want_p3, _, want_perm3 = _direct(3)
    assert _cell(last, "fold-safe") == format_p(want_p3) and _cell(last, "perm p") == format_p(want_perm3)
    assert want_p3 != want_p
    # --permutations and the seed reach the computation
    other = table2(ev, Options(protocol="best-val", permutations=2000, perm_seed=7))
    assert _frame(other).loc["permutation", "p"] == _direct(2, 2000, 7)[2]


def test_runs_with_last_epoch_train_rows_only_are_marked_not_substituted(tmp_path):
    ev = _store(tmp_path, train_epochs=(3,))  # as stored before the engine kept them at every selectable epoch
    t = table2(ev, Options(protocol="best-val"))
    want_p3, _, want_perm3 = _direct(3)
    # epoch 3's validation rows and epoch 3's training median, shown with a dagger and explained
    assert _cell(t, "fold-safe") == format_p(want_p3) + "†" and _cell(t, "perm p") == format_p(want_perm3) + "†"
    assert _frame(t).loc["fold-safe", "last_epoch"]
    note = next(n for n in t.notes if n.startswith("†"))
    assert "last epoch only" in note and "bench run --method snn --cohort BLCA --force" in note
    assert _cell(t, "median") == format_p(_frame(t).loc["paper", "p"])  # no mark there
    # under protocol last the stored epoch is the selected one: nothing to mark
    last = table2(ev, Options(protocol="last"))
    assert _cell(last, "fold-safe") == format_p(want_p3) and not any(n.startswith("†") for n in last.notes)


def test_permutation_p_invariants(tmp_path):
    # identical groups: each high-risk patient has a low-risk twin with the same time and status -> chi2 0, p = 1
    for k in range(5):
        t = np.repeat(np.arange(2 * k + 1, 2 * k + 3, dtype=float), 2)
        val = rows([f"V{k}-{i}" for i in range(4)], t, [0, 0, 1, 1], [1.0, 0.0, 1.0, 0.0], epoch=1)
        train = rows([f"T{k}0", f"T{k}1"], [1.0, 2.0], [0, 0], [0.0, 1.0], epoch=1, split="train")
        add_run(tmp_path / "twins", "snn", BLCA, k, [val, train])
    t = table2(Evaluation(tmp_path / "twins"), Options(protocol="last"))
    f = _frame(t)
    assert f.loc["permutation", "p"] == 1.0 and f.loc["fold-safe", "p"] == pytest.approx(1.0)
    # perfect separation: every high-risk patient dies before every low-risk one, 4 of 8 per fold; no
    # permutation of 1000 reaches the observed chi2, so p is the convention's floor 1 / (1 + 1000)
    for k in range(5):
        t = np.r_[np.arange(4 * k + 1, 4 * k + 5), np.arange(20 + 4 * k + 1, 20 + 4 * k + 5)].astype(float)
        val = rows([f"V{k}-{i}" for i in range(8)], t, [0] * 8, 100 - t, epoch=1)
        train = rows([f"T{k}0", f"T{k}1"], [1.0, 2.0], [0, 0], [85.0 - 4 * k, 87.0 - 4 * k], epoch=1, split="train")
        add_run(tmp_path / "sep", "snn", BLCA, k, [val, train])
    t = table2(Evaluation(tmp_path / "sep"), Options(protocol="last"))
    f = _frame(t)
    assert f.loc["fold-safe", "n_high"] == 20 and f.loc["permutation", "p"] == 1 / 1001
    assert _cell(t, "perm p") == "1.0e-3" and any("never below 1.0e-3" in n for n in t.notes)


def test_cli_permutations_option(toy):
    from bench.cli import app

    res = CliRunner().invoke(app, ["tables", "--table", "2", "--permutations", "10"])
    # a BenchError: bench's entry point prints it as one line and exits 2 (tests/cli)
    assert isinstance(res.exception, BenchError) and str(res.exception) == "bad --permutations 10: use at least 1000"
