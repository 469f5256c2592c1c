"""Run costs from the store (bench.store.costs) and ``bench sweep --dry-run``'s estimate of what is left."""

import json

import pytest

from bench.store.costs import CostEstimate, RunCost, estimate_cost, manifest_cost, measured_costs, run_work, total_hours
from bench.train.sweep import SweepSpec, cost_report, expand, planned_work, run_keys, run_sweep


def _manifest(wall=100.0, threads=2, epochs=10, n_train=80, n_val=20, n_patches=1500, resumed=0, status="complete",
              method="meanmil", variant="default", cohort="tcga_toy", device="cpu", finished="2026-12-01T10:00:00"):
    pathology = {"n_patches": n_patches} if n_patches else None
    return {"status": status, "timing": {"wall_seconds": wall, "resumed_from_epoch": resumed, "finished": finished},
            "environment": {"machine": {"torch_threads": threads, "device": device}},
            "config": {"train": {"epochs": epochs}},
            "data": {"n_train": n_train, "n_val": n_val, "pathology": pathology},
            "key": {"method": method, "variant": variant, "cohort": cohort}}


def test_manifest_cost_known_answers():
    c = manifest_cost(_manifest())
    assert c == RunCost("meanmil", "default", "tcga_toy", "cpu", 200.0, 10 * 100 * 15.0, "2026-12-01")
    assert manifest_cost(_manifest(n_patches=0)).work == 10 * 100  # genomics only: one unit per patient
    assert manifest_cost(_manifest(resumed=3)) is None  # its wall time covers only the resumed epochs
    assert manifest_cost(_manifest(status="running")) is None
    broken = _manifest()
    del broken["config"]
    assert manifest_cost(broken) is None
    assert run_work(30, 373, 150.0) == 30 * 373 * 150.0 and run_work(30, 373, None) == 30 * 373


def _cost(rate, work=1000.0, **kw):
    base = dict(method="m", variant="default", cohort="tcga_a", device="cpu", finished="2026-12-01")
    base.update(kw)
    return RunCost(thread_seconds=rate * work, work=work, **{k: base[k] for k in ("method", "variant", "cohort",
                                                                                "device")}, finished=base["finished"])


def test_estimate_prefers_same_cohort_then_other_cohorts_then_variants():
    same = [_cost(2.0), _cost(3.0), _cost(7.0)]
    other = [_cost(5.0, cohort="tcga_b")]
    variant = [_cost(0.5, variant="k=4")]
    e = estimate_cost(same + other + variant, "m", "default", "tcga_a", "cpu", 400.0)
    assert e.thread_seconds == pytest.approx(2.0 * 400.0, rel=1e-12)  # the fastest rate of the best set
    assert e.typical_seconds == pytest.approx(3.0 * 400.0, rel=1e-12)  # its median rate
    assert e.basis == "fastest of 3 stored run(s) on this cohort, made 2026-12-01"
    assert estimate_cost(same[:2], "m", "default", "tcga_a", "cpu", 1.0).typical_seconds == pytest.approx(2.5)
    e = estimate_cost(other + variant, "m", "default", "tcga_a", "cpu", 400.0)
    assert e.thread_seconds == pytest.approx(5.0 * 400.0, rel=1e-12) and "on B, scaled" in e.basis
    assert e.typical_seconds == pytest.approx(5.0 * 400.0, rel=1e-12)
    e = estimate_cost(variant, "m", "default", "tcga_a", "cpu", 400.0)
    assert e.thread_seconds == pytest.approx(0.5 * 400.0, rel=1e-12) and "variants (k=4)" in e.basis


def test_estimate_passes_over_sets_older_than_the_methods_newest_run():
    stale = [_cost(50.0, finished="2026-11-01")]  # made before a speed-up
    fresh = [_cost(4.0, variant="tau=0.3", finished="2026-12-07")]
    e = estimate_cost(stale + fresh, "m", "default", "tcga_a", "cpu", 10.0)
    assert e.thread_seconds == pytest.approx(40.0, rel=1e-12)
    assert "made 2026-11-01 to 2026-12-07" in e.basis


def test_estimate_counts_only_the_same_method_and_device():
    costs = [_cost(1.0, device="cuda"), _cost(1.0, method="other")]
    e = estimate_cost(costs, "m", "default", "tcga_a", "cpu", 10.0)
    assert e == CostEstimate(None, "no stored run of m on cpu")
    assert total_hours([e, CostEstimate(7200.0, "x", 10800.0)]) == (2.0, 1)
    assert total_hours([e, CostEstimate(7200.0, "x", 10800.0)], typical=True) == (3.0, 1)


def test_measured_costs_reads_complete_runs_only(tmp_path):
    for i, (status, resumed) in enumerate([("complete", 0), ("complete", 2), ("running", 0)]):
        d = tmp_path / "meanmil" / "default" / "tcga_toy" / "seed0" / f"fold{i}"
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps(_manifest(status=status, resumed=resumed)))
    (tmp_path / "meanmil" / "default" / "tcga_toy" / "seed0" / "notafold").mkdir()
    costs = measured_costs(tmp_path)
    assert [c.thread_seconds for c in costs] == [200.0]


def test_dry_run_estimates_pending_keys_from_the_stored_run(toy):
    """One stored toy run of 2 epochs: a pending fold of the same grid is estimated at its measured
    thread-seconds (same cohort, same work), and with 4 epochs at twice that."""
    spec = SweepSpec(methods=["meanmil"], cohorts=["toy"], folds=[0, 1], epochs=2)
    keys = expand(toy.settings, spec)
    run_keys(keys[:1], str(toy.root))
    stored = measured_costs(toy.settings.results_dir)
    assert len(stored) == 1
    work, device = planned_work(toy.settings, keys[1])
    assert device == "cpu" and work == pytest.approx(stored[0].work, rel=1e-12)
    lines = []
    run_sweep(toy.settings, spec, lines.append, dry_run=True)
    report = lines[-1]
    hours = stored[0].thread_seconds / 3600
    assert f"{hours:.3g}" in report and "fastest of 1 stored run(s) on this cohort" in report
    assert f"in all ≈ {hours:.3g} thread-hours (≈ {hours:.3g} at the median rates)" in report
    longer = expand(toy.settings, SweepSpec(methods=["meanmil"], cohorts=["toy"], folds=[1], epochs=4))
    assert planned_work(toy.settings, longer[0])[0] == pytest.approx(2 * work, rel=1e-12)
    assert f"≈ {2 * hours / 3:.3g}–{2 * hours / 3:.3g} h of wall time with 3 worker(s)" in cost_report(
        toy.settings, longer, 3)


def test_training_evaluations_counts_train_epochs_of_complete_runs(toy):
    """Per complete stored run of the method: the distinct epochs of its training-fold rows."""
    spec = SweepSpec(methods=["meanmil"], cohorts=["toy"], folds=[0], epochs=3)
    run_keys(expand(toy.settings, spec), str(toy.root))
    from bench.store.costs import training_evaluations
    from bench.store.predictions import predictions_path, read_manifest, read_predictions, store_layout

    (d,) = store_layout(toy.settings.results_dir).runs
    frame = read_predictions(predictions_path(d, read_manifest(d)))
    expected = frame.loc[frame["split"] == "train", "epoch"].nunique()
    assert 1 <= expected <= 3 and 3 in set(frame.loc[frame["split"] == "train", "epoch"])  # the last epoch always
    assert training_evaluations(toy.settings.results_dir, "meanmil") == [expected]
    assert training_evaluations(toy.settings.results_dir, "snn") == []
    m = read_manifest(d)
    (d / "manifest.json").write_text(json.dumps({**m, "status": "running"}))
    assert training_evaluations(toy.settings.results_dir, "meanmil") == []
