"""`bench perf --cohort`: per fold-epoch costs and the speed-ups-on/off equality check, on a toy cohort."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bench.cli import app
from bench.tools.perf_epoch import run_epoch_perf


def test_epoch_costs_and_equality_of_the_exact_speed_ups(toy_factory):
    toy = toy_factory(n_patients=40, patches=100, dim=16)  # 100 patches: Nyström matrices of 102 rows (spectral)
    lines: list[str] = []
    found = run_epoch_perf(toy.settings, ["transmil"], "TOY", patients=4, explicit=True, check_epochs=1, repeats=1,
                           log=lines.append)
    modes = [(c["method"], c["explicit"]) for c in found["costs"]]
    assert modes == [("attmil", False), ("transmil", False), ("transmil", True)]
    for c in found["costs"]:
        assert c["timed_train"] == 4 and c["n_train"] > 4 and c["epoch_s"] > 0
        assert c["train_s"] + c["eval_s"] == c["epoch_s"]
    assert found["costs"][0]["vs_reference"] == 1.0
    (eq,) = found["equality"]
    # the same model trained with and without the speed-ups: equal up to float32 rounding, not bit for bit
    assert not eq["identical"] and 0 < eq["max_abs_diff"] < 1e-4
    assert any("thread-s per fold-epoch" in s and "scaled" in s for s in lines)


def test_cli_writes_json(toy_factory, tmp_path, monkeypatch):
    toy = toy_factory(n_patients=40, patches=8, dim=16)
    monkeypatch.chdir(toy.root)
    monkeypatch.setenv("BENCH_ROOT", str(toy.root))
    out = tmp_path / "perf.json"
    res = CliRunner().invoke(app, ["perf", "--cohort", "TOY", "-m", "meanmil", "--patients", "4",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "| meanmil | – |" in res.output
    assert [c["method"] for c in json.loads(out.read_text())["costs"]] == ["attmil", "meanmil"]


def test_measured_run_cost_known_answer(toy, monkeypatch):
    """A key's measured cost = epochs x one epoch + the median count of training-fold evaluations x the
    validation pass scaled to the training fold; capped at one evaluation per epoch; with no stored run,
    one per epoch. The timing is replaced by a known EpochCost; the variant's sets reach the timed run."""
    from bench.tools import perf_epoch
    from bench.train.sweep import SweepSpec, expand

    seen = {}

    def fake_time_epoch(settings, method, cohort, fold, **kw):
        seen.update(kw, method=method, fold=fold)
        return perf_epoch.EpochCost(method, False, n_train=80, n_val=20, timed_train=4, timed_val=4,
                                    train_s=3.0, eval_s=0.5)

    monkeypatch.setattr(perf_epoch, "time_epoch", fake_time_epoch)
    (task,) = expand(toy.settings, SweepSpec(methods=["meanmil"], cohorts=["toy"], folds=[2], epochs=7,
                                             sets=[{"lr": 0.01}]))
    est = perf_epoch.measured_run_cost(toy.settings, task, patients=4, train_evaluations=[1, 3, 5, 6])
    # 7 epochs x 3.5 s + median 4 evaluations x (0.5 s / 20 x 80 = 2 s)
    assert est.thread_seconds == est.typical_seconds == 7 * 3.5 + 4 * 2.0
    assert seen["method"] == "meanmil" and seen["fold"] == 2 and seen["patients"] == 4 and seen["sets"] == {"lr": 0.01}
    assert "3.5 thread-s per epoch" in est.basis and "x 7 + 4 training-fold evaluations (median of 4" in est.basis
    capped = perf_epoch.measured_run_cost(toy.settings, task, patients=4, train_evaluations=[30])
    assert capped.thread_seconds == 7 * 3.5 + 7 * 2.0
    none = perf_epoch.measured_run_cost(toy.settings, task, patients=4)
    assert none.thread_seconds == 7 * 3.5 + 7 * 2.0 and "an upper bound" in none.basis


def test_dry_run_measure_cli(toy):
    """`bench sweep --dry-run --measure N` times every pending (method, cohort) once and prints the measured
    column, each group's basis and a total; --measure without --dry-run is refused."""
    base = ["sweep", "--methods", "meanmil,snn", "--cohorts", "toy", "--folds", "0,1", "--epochs", "2"]
    res = CliRunner().invoke(app, [*base, "--dry-run", "--measure", "3"])
    assert res.exit_code == 0, res.output
    assert "measured CPU-h" in res.output and "measured: in all ≈" in res.output
    for method in ("meanmil", "snn"):
        assert f"{method} epochs=2 TOY: measured:" in res.output
    assert "x 2 + 2 training-fold evaluations (no stored run" in res.output
    res = CliRunner().invoke(app, [*base, "--measure", "3"])
    assert res.exit_code != 0 and "--measure only goes with --dry-run" in str(res.exception)
