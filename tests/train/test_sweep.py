"""`bench sweep`: grids, executors (local pool, submitit local/debug), locks, faults and resumption."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench._core.config import load_settings
from bench._core.errors import BenchError
from bench.data.cohort import available_cohorts
from bench.data.toy import make_toy_project
from bench.store.locks import RunLock, holder
from bench.store.verify import verify_store
from bench.train.runner import execute, plan_run
from bench.train.sweep import SweepSpec, expand, key_status, load_grid, run_keys, run_local, run_slurm

BENCH = os.path.join(os.path.dirname(sys.executable), "bench")


def _spec(**kw):
    base = dict(methods=["meanmil", "snn"], cohorts=["toy"], folds=[0, 1], seeds=[0, 1], epochs=2)
    base.update(kw)
    return SweepSpec(**base)


@pytest.mark.slow
def test_local_pool_then_rerun_runs_nothing(toy):
    keys = expand(toy.settings, _spec())
    assert len(keys) == 8 and {k.method for k in keys} == {"meanmil", "snn"}
    results = []
    run_local(keys, toy.root, workers=2, on_result=results.append)
    assert sorted(r.status for r in results) == ["trained"] * 8
    assert all(key_status(toy.settings, k) == "complete" for k in keys)
    again = []
    run_local(keys, toy.root, workers=2, on_result=again.append)
    assert {r.status for r in again} == {"skipped"}
    assert verify_store(toy.settings) == (8, [])


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["debug", "local"])
def test_submitit_executors(toy, cluster):
    keys = expand(toy.settings, _spec())
    results = []
    ids = run_slurm(keys, toy.root, {"cluster": cluster, "chunk_size": 4, "time": 10,
                                     "folder": str(toy.root / "submitit")}, True, results.append, lambda _: None)
    assert len(ids) == 2
    assert sorted(r.status for r in results) == ["trained"] * 8
    rerun = []
    run_slurm(keys, toy.root, {"cluster": cluster, "chunk_size": 4, "folder": str(toy.root / "submitit")}, True,
              rerun.append, lambda _: None)
    assert {r.status for r in rerun} == {"skipped"}


@pytest.mark.parametrize("spec,pattern", [
    ({"methods": ["nope"]}, r"unknown method 'nope'"),
    ({"cohorts": ["kirc"]}, r"unknown cohort 'kirc'"),
    ({"folds": [0, 9]}, r"fold 9 out of range for TOY"),
    ({"sets": [{"k": 9}]}, r"unknown key 'k' for method meanmil"),
    ({"sets": [{"lr": "fast"}]}, r"bad value 'fast' for 'train\.lr'"),
    ({"seeds": [-1]}, r"bad seed -1"),
    ({"executor": "cloud"}, r"unknown executor 'cloud'"),
])
def test_bad_specs_fail_before_anything_runs(toy, spec, pattern):
    with pytest.raises(BenchError, match=pattern):
        expand(toy.settings, _spec(**spec))
    assert not (toy.root / "results").exists()


def test_bad_grid_file(toy):
    from bench.train.sweep import load_grid

    grid = toy.root / "grid.toml"
    grid.write_text('methods = ["meanmil"]\ncohorts = ["toy"]\nfoldz = [0]\n')
    with pytest.raises(BenchError, match=r"unknown key\(s\) foldz in grid"):
        load_grid(grid)
    grid.write_text('methods = ["meanmil"]\ncohorts = ["toy"]\nfolds = [0]\nseeds = [0]\nepochs = 1\n'
                    '[set]\nhidden = 32\n')
    keys = expand(toy.settings, load_grid(grid))
    assert [k.variant for k in keys] == ["hidden=32,epochs=1"]


@pytest.mark.slow
def test_lock_excludes_second_holder_and_frees_on_death(tmp_path):
    d = tmp_path / "run"
    code = ("import sys,time; from pathlib import Path; from bench.store.locks import RunLock;"
            "l=RunLock(Path(sys.argv[1])); assert l.acquire(); print('held', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    assert holder(d)["pid"] == p.pid
    assert not RunLock(d).acquire()
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert holder(d) is None  # the dead process's lock is free again
    lock = RunLock(d)
    assert lock.acquire()
    lock.release()


def _sweep_cmd(root: Path, *extra: str) -> list[str]:
    return [BENCH, "sweep", "--methods", "meanmil", "--cohorts", "toy", "--folds", "0,1", "--epochs", "8",
            "--executor", "local", "--workers", "1", *extra]


def _env(root: Path) -> dict:
    return {**os.environ, "BENCH_ROOT": str(root), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    kw = dict(n_patients=200, patches=48, dim=32)
    cut = make_toy_project(tmp_path / "cut", **kw)
    ref = make_toy_project(tmp_path / "ref", **kw)
    fold0 = cut.root / "results" / "meanmil" / "epochs=8" / "tcga_toy" / "seed0" / "fold0"
    proc = subprocess.Popen(_sweep_cmd(cut.root), cwd=cut.root, env=_env(cut.root), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (fold0 / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "sweep ended before a checkpoint was written"
        time.sleep(0.02)
    time.sleep(0.1)  # now inside a later epoch
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker
    proc.wait()
    assert not (fold0 / "manifest.json").exists(), "the run finished before it was killed"
    assert not list((cut.root / "results").rglob("*.tmp")), "partial files left in the store"
    verify = subprocess.run([BENCH, "results", "verify"], cwd=cut.root, env=_env(cut.root), capture_output=True,
                            text=True)
    assert verify.returncode == 1
    assert "meanmil/epochs=8/tcga_toy/seed0/fold0" in verify.stdout and "interrupted" in verify.stdout
    assert "checkpoint after epoch" in verify.stdout
    rerun = subprocess.run(_sweep_cmd(cut.root), cwd=cut.root, env=_env(cut.root), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "seed0/fold0: resumed" in rerun.stdout
    assert "fold0: trained" not in rerun.stdout
    full = subprocess.run(_sweep_cmd(ref.root), cwd=ref.root, env=_env(ref.root), capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    for fold in ("fold0", "fold1"):
        a = pd.read_csv(fold0.parent / fold / "predictions.csv.gz")
        b = pd.read_csv(ref.root / "results" / "meanmil" / "epochs=8" / "tcga_toy" / "seed0" / fold
                        / "predictions.csv.gz")
        pd.testing.assert_frame_equal(a, b)
    assert subprocess.run([BENCH, "results", "verify"], cwd=cut.root, env=_env(cut.root)).returncode == 0


def test_failing_writes_are_clear_and_keep_earlier_results(toy, monkeypatch):
    import errno

    import bench.store.predictions as predictions

    plan = plan_run(toy.settings, "meanmil", "toy", epochs=1, folds=[0, 1])
    execute(plan)
    before = (plan.dir(0) / "predictions.csv.gz").read_bytes()
    plan2 = plan_run(toy.settings, "meanmil", "toy", epochs=2, folds=[0])
    real = predictions.write_json

    def full_disk(path, obj):
        raise BenchError(f"could not write {path}: {os.strerror(errno.ENOSPC)}; earlier files are intact, "
                         "free disk space or fix permissions and rerun")

    monkeypatch.setattr(predictions, "write_json", full_disk)
    with pytest.raises(BenchError, match="No space left on device; earlier files are intact"):
        execute(plan2)
    monkeypatch.setattr(predictions, "write_json", real)
    assert (plan.dir(0) / "predictions.csv.gz").read_bytes() == before
    n, problems = verify_store(toy.settings)
    assert n == 3 and [p.path for p in problems] == [plan2.dir(0)]
    assert problems[0].command == "bench run --method meanmil --cohort TOY --set epochs=2 --folds 0"
    assert [o.status for o in execute(plan2)] == ["resumed"]  # from the checkpoint of epoch 1


def test_run_keys_reports_failures_and_continues(toy, monkeypatch):
    keys = expand(toy.settings, _spec(methods=["meanmil"], seeds=[0]))
    import bench.train.runner as runner

    real = runner.run_one_fold

    def flaky(plan, fold, *a, **k):
        if fold == 0:
            raise RuntimeError("GPU fell off the bus")
        return real(plan, fold, *a, **k)

    monkeypatch.setattr(runner, "run_one_fold", flaky)
    results = run_keys(keys, str(toy.root))
    assert [(r.label.split("/")[-1], r.status) for r in results] == [("fold0", "failed"), ("fold1", "trained")]
    assert "GPU fell off the bus" in next(r.error for r in results if r.status == "failed")


@pytest.mark.slow
def test_terminating_a_sweep_leaves_no_worker_behind(tmp_path):
    project = make_toy_project(tmp_path / "p", n_patients=200, patches=48, dim=32)
    proc = subprocess.Popen(_sweep_cmd(project.root, "--workers", "2"), cwd=project.root, env=_env(project.root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list((project.root / "results").rglob("checkpoint.pt")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert workers
    proc.terminate()
    proc.wait(timeout=60)
    time.sleep(1.0)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and "zombie" not in Path(f"/proc/{w}/status").read_text().lower()]
    assert not alive, f"workers {alive} outlived the sweep"


PROJECT = Path(__file__).resolve().parents[2]
SHIPPED_GRIDS = sorted((PROJECT / "grids").rglob("*.toml"))


@pytest.mark.parametrize("grid", SHIPPED_GRIDS, ids=lambda p: str(p.relative_to(PROJECT / "grids")))
def test_shipped_grids_expand_on_the_project(grid, monkeypatch):
    """Every grid in grids/ names registered methods, bundled cohorts and valid settings: it expands to
    methods x sets x cohorts x seeds x folds keys on the project itself (nothing is trained or built)."""
    monkeypatch.setenv("BENCH_ROOT", str(PROJECT))
    settings, spec = load_settings(), load_grid(grid)
    keys = expand(settings, spec)
    cohorts = available_cohorts(settings) if spec.cohorts == ["all"] else spec.cohorts
    n_folds = [len(plan_run(settings, spec.methods[0], c, folds=spec.folds).folds) for c in cohorts]
    assert len(keys) == len(spec.methods) * len(spec.sets) * len(spec.seeds) * sum(n_folds)
    assert {k.method for k in keys} == set(spec.methods)


def test_workers_take_whole_rows_in_the_grid_order(toy, monkeypatch):
    """A grid written cheap-first runs cheap-first: each worker takes the next whole row (method, settings,
    cohort, seed with all its folds) as it frees up, never one half of the grid each."""
    import bench.train.sweep as sweep

    keys = expand(toy.settings, _spec(methods=["snn", "meanmil"], sets=[{"lr": 0.01}, {}], folds=[0, 1, 2]))
    seen = {}

    def fake_slots(chunks, n_slots, *args):
        seen["chunks"], seen["slots"] = chunks, n_slots

    monkeypatch.setattr(sweep, "run_slots", fake_slots)
    run_local(keys, toy.root, workers=2, on_result=lambda r: None)
    rows = [(c[0].method, dict(c[0].sets), c[0].seed, [k.fold for k in c]) for c in seen["chunks"]]
    assert seen["slots"] == 2
    assert rows == [(m, s, seed, [0, 1, 2]) for m in ("snn", "meanmil") for s in ({"lr": 0.01}, {})
                    for seed in (0, 1)]
    assert all(len({(k.method, k.sets, k.cohort, k.seed) for k in c}) == 1 for c in seen["chunks"])
