"""The prediction store under attack: reports read only runs that verify, nothing stored executes, locks
never follow links, imports replace a key all at once, and bad input is one error line."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from store_builder import add_run, rows
from typer.testing import CliRunner

from bench._core.errors import BenchError
from bench.data.cohort import load_cohort
from bench.store.locks import RunLock, holder
from bench.store.results_import import import_predictions
from bench.store.verify import verify_store
from bench.train.runner import RUN_SPEC, execute, plan_run, run_spec

FOLD0 = "results/snn/default/tcga_toy/seed0/fold0"
REDO0 = "redo with: bench run --method snn --cohort TOY --folds 0 --seed 0 --force"


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the `bench` entry point in-process: (exit code, stdout, stderr)."""
    from bench.cli import main

    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _cell(toy, method: str = "snn", epochs: int = 2, seed: int = 0, overrides=None) -> None:
    """Five folds of ``method`` on the toy cohort with each fold's own patients (so every run verifies)."""
    co = load_cohort(toy.settings, toy.cohort)
    rng = np.random.default_rng(seed)
    for k, split in enumerate(co.splits):
        ids, t, c = [co.case_ids[i] for i in split.val], co.time[split.val], co.censorship[split.val].astype(int)
        frames = [rows(ids, t, c, -t + rng.normal(0, 30, len(ids)), epoch=e) for e in range(1, epochs + 1)]
        tr = split.train
        frames.append(rows([co.case_ids[i] for i in tr], co.time[tr], co.censorship[tr].astype(int),
                           rng.normal(size=len(tr)), epoch=epochs, split="train"))
        add_run(toy.root / "results", method, co.name, k, frames, seed=seed, overrides=overrides)


def _tables(*extra: str):
    from bench.cli import app

    res = CliRunner().invoke(app, ["tables", "--table", "1", "--format", "csv", *extra])
    assert res.exit_code == 0, res.output
    return res


def _set_sha(run: pathlib.Path) -> None:
    """Make the manifest's sha256 match whatever predictions.csv now holds (a consistent-looking forgery)."""
    m = json.loads((run / "manifest.json").read_text())
    m["predictions"]["sha256"] = hashlib.sha256((run / "predictions.csv.gz").read_bytes()).hexdigest()
    (run / "manifest.json").write_text(json.dumps(m))


def _truncate(run):
    data = (run / "predictions.csv.gz").read_bytes()
    (run / "predictions.csv.gz").write_bytes(data[: len(data) // 2])


def _edit_risk(run):
    p = pd.read_csv(run / "predictions.csv.gz", dtype={"case_id": str})
    p.loc[0, "risk"] += 10.0
    p.to_csv(run / "predictions.csv.gz", index=False)


def _manifest_text(text):
    return lambda run: (run / "manifest.json").write_text(text)


def _status_running(run):
    m = json.loads((run / "manifest.json").read_text())
    m["status"] = "running"
    (run / "manifest.json").write_text(json.dumps(m))


def _cut_manifest(run):
    text = (run / "manifest.json").read_text()
    (run / "manifest.json").write_text(text[: len(text) // 2])


def _copy_fold1(run):
    for name in ("predictions.csv.gz", "manifest.json"):
        shutil.copy(run.parent / "fold1" / name, run / name)


def _random_bytes_forged(run):
    (run / "predictions.csv.gz").write_bytes(np.random.default_rng(0).bytes(3000))
    _set_sha(run)


def _empty_forged(run):
    (run / "predictions.csv.gz").write_bytes(b"")
    _set_sha(run)


def _other_patients_forged(run):
    """fold1's predictions re-filed as fold0 with a matching sha and key: only the split check can tell."""
    shutil.copy(run.parent / "fold1" / "predictions.csv.gz", run / "predictions.csv.gz")
    _set_sha(run)


TAMPER = {
    "truncated predictions": (_truncate, "corrupt: predictions.csv.gz does not match the manifest's sha256"),
    "edited risk": (_edit_risk, "corrupt: predictions.csv.gz does not match the manifest's sha256"),
    "deleted manifest": (lambda run: (run / "manifest.json").unlink(), "interrupted: no manifest"),
    "empty manifest": (_manifest_text(""), "corrupt: manifest unreadable"),
    "cut-short manifest": (_cut_manifest, "corrupt: manifest unreadable"),
    "manifest is a JSON list": (_manifest_text("[1, 2]"), "corrupt: manifest is a JSON list, not an object"),
    "status running": (_status_running, "incomplete: manifest status 'running'"),
    "fold1 copied into fold0": (_copy_fold1, "corrupt: manifest is of fold 1 but the folder is of 0"),
    "random bytes, sha forged": (_random_bytes_forged, "corrupt: predictions.csv"),
    "empty predictions, sha forged": (_empty_forged, "corrupt: predictions.csv.gz unreadable"),
    "other fold's patients, sha forged": (_other_patients_forged, "incomplete: epoch 1: 20 val patient(s) of fold 0 "
                                                                  "missing, 20 unexpected"),
}


@pytest.mark.parametrize("case", TAMPER)
def test_tables_and_verify_leave_out_a_run_that_does_not_verify(toy, case):
    tamper, detail = TAMPER[case]
    _cell(toy)
    fold0 = toy.root / FOLD0
    tamper(fold0)
    res = _tables()
    warning = next(ln for ln in res.stderr.splitlines() if ln.startswith("warning: left out"))
    assert warning.startswith(f"warning: left out {FOLD0} ({detail}")
    if case != "deleted manifest":  # an interrupted run names the command of its own run.json, here none
        assert warning.endswith(REDO0)
    assert "Traceback" not in res.output
    n, problems = verify_store(toy.settings)
    assert n == 5 and [p.path for p in problems] == [fold0] and f"{problems[0].kind}: {problems[0].detail}" \
        .startswith(detail)
    shutil.rmtree(fold0)
    assert _tables().stdout == res.stdout  # the same numbers as a store without that run: the 4 folds that verify


def test_stray_folders_are_noted_never_read(toy, monkeypatch, capsys):
    _cell(toy)
    before = _tables().stdout
    seed0 = toy.root / "results/snn/default/tcga_toy/seed0"
    shutil.copytree(seed0 / "fold0", seed0 / "fold0.bak")
    shutil.copytree(seed0, seed0.with_name("seed0_old"))
    _edit_risk(seed0 / "fold0.bak")  # would change Table I if it were read
    res = _tables()
    assert res.stdout == before
    assert res.stderr.splitlines() == [
        "note: ignored results/snn/default/tcga_toy/seed0/fold0.bak: not a run folder (run folders are named "
        "seed<N>/fold<N>)",
        "note: ignored results/snn/default/tcga_toy/seed0_old: not a run folder (run folders are named "
        "seed<N>/fold<N>)"]
    code, out, err = _main(monkeypatch, capsys, "results", "verify")
    assert code == 0, out + err
    assert "note: ignored results/snn/default/tcga_toy/seed0/fold0.bak" in out
    assert out.rstrip().endswith("5 run(s) checked: all complete and consistent")


def test_figures_leave_out_a_run_that_does_not_verify(toy):
    from bench.cli import app

    _cell(toy)
    _edit_risk(toy.root / FOLD0)
    res = CliRunner().invoke(app, ["figures", "--fig", "6", "--method", "snn", "--out", "figs"])
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines() == [f"warning: left out {FOLD0} (corrupt: predictions.csv.gz does not match the "
                                       f"manifest's sha256); {REDO0}"]
    toy_row = next(ln.split() for ln in res.stdout.splitlines() if ln.startswith("TOY"))
    assert toy_row[1:3] == ["40", "40"]  # the 80 val patients of the four folds that verify, not 100


def test_redo_commands_name_the_variant_and_the_import(toy, tmp_path):
    _cell(toy, "ccl", overrides={"model.k": 9})
    (toy.root / "results/ccl/k=9/tcga_toy/seed0/fold0/manifest.json").write_text("{")
    f = _import_file(toy, tmp_path, "a.csv")
    import_predictions(toy.settings, f, method="outside", cohort="toy")
    _edit_risk(toy.root / "results/outside/default/tcga_toy/seed0/fold2")
    _, problems = verify_store(toy.settings)
    assert [p.command for p in problems] == [
        "bench run --method ccl --cohort TOY --folds 0 --seed 0 --set k=9 --force",
        f"bench results import {f} --method outside --cohort TOY --seed 0 --force"]


def test_each_predictions_file_is_read_once(toy, monkeypatch):
    """The verification's read (and hash) of predictions.csv is the one the tables use: cheap on a big store."""
    import bench.store.predictions
    from bench.report.evaluation import open_store

    _cell(toy)
    reads = []
    real = pathlib.Path.read_bytes
    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda self: reads.append(self.name) or real(self))
    monkeypatch.setattr(bench.store.predictions, "read_predictions", lambda path: pytest.fail(f"{path} read again"))
    ev = open_store()
    assert ev.cell("snn", "tcga_toy").summary().n_folds == 5
    assert reads == ["predictions.csv.gz"] * 5 and not ev.excluded


# ----------------------------------------------------------------------------------------------
# Checkpoints


class _Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a planted checkpoint could do."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _plan(toy, **kw):
    return plan_run(toy.settings, "meanmil", "TOY", epochs=2, folds=[0], **kw)


def _reference(toy, tmp_path) -> pd.DataFrame:
    ref = _plan(toy, results=tmp_path / "ref")
    execute(ref)
    return pd.read_csv(ref.dir(0) / "predictions.csv.gz")


def _plant(plan, make_checkpoint) -> pathlib.Path:
    """A checkpoint (and the run.json of this very plan, so the runner does not drop it for another config)."""
    d = plan.dir(0)
    d.mkdir(parents=True)
    (d / RUN_SPEC).write_text(json.dumps(run_spec(plan, 0)))
    make_checkpoint(d / "checkpoint.pt")
    return d / "checkpoint.pt"


def test_planted_checkpoint_never_runs_in_verify_or_resume(toy, tmp_path, capsys):
    marker = tmp_path / "pwned"
    ref = _reference(toy, tmp_path)
    plan = _plan(toy)
    _plant(plan, lambda p: torch.save({"epoch": 1, "model": _Payload(marker)}, p))
    n, problems = verify_store(toy.settings)
    assert not marker.exists()
    assert n == 1 and problems[0].kind == "interrupted"
    assert "checkpoint unusable (cannot be loaded safely: UnpicklingError" in problems[0].detail
    assert problems[0].detail.endswith("the rerun starts over")
    assert [o.status for o in execute(plan)] == ["trained"]
    assert not marker.exists()
    assert "cannot be loaded safely" in capsys.readouterr().err
    pd.testing.assert_frame_equal(pd.read_csv(plan.dir(0) / "predictions.csv.gz"), ref)


@pytest.mark.parametrize("kind", ["random bytes", "wrong shapes"])
def test_unusable_checkpoint_is_dropped_and_the_fold_starts_over(toy, tmp_path, capsys, kind):
    ref = _reference(toy, tmp_path)
    cut = _plan(toy, results=tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        execute(cut, stop_after_epoch=1)
    good = cut.dir(0) / "checkpoint.pt"
    state = torch.load(good, weights_only=True)  # a legitimate checkpoint is tensors and plain data only
    assert state["epoch"] == 1
    _, problems = verify_store(toy.settings, tmp_path / "cut")
    assert problems[0].detail == "no manifest; checkpoint after epoch 1"

    def wrong_shapes(p):
        name = next(iter(state["model"]))
        torch.save({**state, "model": {**state["model"], name: torch.zeros(3, 3, 3)}}, p)

    plan = _plan(toy)
    ckpt = _plant(plan, (lambda p: p.write_bytes(b"\x00garbage" * 100)) if kind == "random bytes" else wrong_shapes)
    _, problems = verify_store(toy.settings)
    if kind == "random bytes":
        assert "checkpoint unusable" in problems[0].detail
    assert [o.status for o in execute(plan)] == ["trained"]
    err = capsys.readouterr().err
    assert f"warning: checkpoint {ckpt} " in err and "deleted it, the fold trains from epoch 1" in err
    assert not ckpt.exists()
    pd.testing.assert_frame_equal(pd.read_csv(plan.dir(0) / "predictions.csv.gz"), ref)
    assert verify_store(toy.settings) == (1, [])


# ----------------------------------------------------------------------------------------------
# Locks


def test_lock_symlink_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    d = tmp_path / "results" / "m" / "default" / "c" / "seed0" / "fold0"
    d.mkdir(parents=True)
    (d / ".lock").symlink_to(target)
    with pytest.raises(BenchError) as exc:
        RunLock(d).acquire()
    assert str(exc.value) == (f"{d / '.lock'} is a symbolic link (to {target}), not a lock file; delete it and "
                              "rerun (survbench creates the lock file itself)")
    assert holder(d) is None
    assert target.read_text() == "keep me"


# ----------------------------------------------------------------------------------------------
# Results import


def _import_file(toy, tmp_path, name: str, folds=range(5), shift: float = 0.0) -> pathlib.Path:
    co = load_cohort(toy.settings, toy.cohort)
    frames = [pd.DataFrame({"case_id": [co.case_ids[i] for i in co.splits[k].val], "fold": k,
                            "risk": -co.time[co.splits[k].val] + shift, "survival_months": co.time[co.splits[k].val],
                            "censorship": co.censorship[co.splits[k].val].astype(int)}) for k in folds]
    f = tmp_path / name
    pd.concat(frames).to_csv(f, index=False)
    return f


def _key_files(key: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(key)): p.read_bytes() for p in sorted(key.rglob("*")) if p.is_file()}


def test_force_import_replaces_the_whole_key(toy, tmp_path):
    a = _import_file(toy, tmp_path, "a.csv")
    b = _import_file(toy, tmp_path, "b.csv", folds=range(3), shift=1.0)
    import_predictions(toy.settings, a, method="outside", cohort="toy")
    rep = import_predictions(toy.settings, b, method="outside", cohort="toy", force=True)
    key = toy.settings.results_dir / "outside" / "default" / "tcga_toy" / "seed0"
    assert rep.replaced == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in key.iterdir()) == ["fold0", "fold1", "fold2"]
    sha_b = hashlib.sha256(b.read_bytes()).hexdigest()
    assert {json.loads((d / "manifest.json").read_text())["imported"]["sha256"] for d in key.iterdir()} == {sha_b}
    assert not [p for p in key.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    assert verify_store(toy.settings) == (3, [])


def test_failed_force_import_leaves_the_stored_runs_intact(toy, tmp_path, monkeypatch):
    import bench.store.results_import as ri

    a = _import_file(toy, tmp_path, "a.csv")
    b = _import_file(toy, tmp_path, "b.csv", shift=1.0)
    import_predictions(toy.settings, a, method="outside", cohort="toy")
    key = toy.settings.results_dir / "outside" / "default" / "tcga_toy" / "seed0"
    before = _key_files(key)
    calls = []
    real = ri.write_run

    def full_disk_at_fold3(path, preds, manifest):
        calls.append(path.name)
        if path.name == "fold3":
            raise BenchError(f"could not write {path}: No space left on device")
        real(path, preds, manifest)

    monkeypatch.setattr(ri, "write_run", full_disk_at_fold3)
    with pytest.raises(BenchError, match="No space left on device"):
        import_predictions(toy.settings, b, method="outside", cohort="toy", force=True)
    assert calls == ["fold0", "fold1", "fold2", "fold3"]
    assert _key_files(key) == before
    assert not [p for p in key.parent.iterdir() if p.name.startswith(".")]
    assert verify_store(toy.settings) == (5, [])


@pytest.mark.parametrize("column,value,message", [
    ("hazard_1", 1.5, "row 3 has hazard_1=1.5; it must be a probability between 0 and 1"),
    ("hazard_0", float("nan"), "row 3 has hazard_0=nan; it must be a probability between 0 and 1"),
    ("bin", 99, "row 3 has bin=99; it must be a time-bin label 0..3 (-1: unknown), n_bins being the number of "
                "hazard_<k> columns (or of --bin-edges values minus one)"),
])
def test_import_refuses_bad_values_with_one_line(toy, tmp_path, monkeypatch, capsys, column, value, message):
    f = _import_file(toy, tmp_path, "x.csv")
    df = pd.read_csv(f, dtype={"case_id": str})
    for k in range(4):
        df[f"hazard_{k}"] = 0.25
    df["bin"] = 0
    df.loc[1, column] = value
    df.to_csv(f, index=False)
    code, _, err = _main(monkeypatch, capsys, "results", "import", str(f), "--method", "outside", "--cohort", "TOY")
    assert _one_line_error(code, err) == f"error: {f}: {message}"
    assert not (toy.settings.results_dir / "outside").exists()


def test_import_refuses_negative_seed_a_file_as_results_and_header_only_file(toy, tmp_path, monkeypatch, capsys):
    f = _import_file(toy, tmp_path, "x.csv")
    code, _, err = _main(monkeypatch, capsys, "results", "import", str(f), "--method", "o", "--cohort", "TOY",
                         "--seed", "-1")
    assert _one_line_error(code, err) == ("error: bad --seed -1: a seed is an integer with 0 <= seed < 2**32 (what "
                                          "numpy and torch seeding accept)")
    code, _, err = _main(monkeypatch, capsys, "results", "import", str(f), "--method", "o", "--cohort", "TOY",
                         "--results", str(f))
    assert _one_line_error(code, err) == (f"error: --results {f} is a file, not a folder; give the folder of the "
                                          "prediction store (it is created if missing)")
    f.write_text("case_id,fold,risk,survival_months,censorship\n")
    code, _, err = _main(monkeypatch, capsys, "results", "import", str(f), "--method", "o", "--cohort", "TOY")
    assert _one_line_error(code, err) == f"error: {f} has a header but no rows; add one row per patient and fold"


# ----------------------------------------------------------------------------------------------
# grad_accum, environment, --results and --out


def test_grad_accum_longer_than_an_epoch_is_refused_before_training(toy):
    n_train = len(load_cohort(toy.settings, toy.cohort).splits[0].train)
    with pytest.raises(BenchError) as exc:
        plan_run(toy.settings, "meanmil", "TOY", folds=[0], sets={"grad_accum": 100000})
    assert str(exc.value) == (f"grad_accum=100000 is longer than an epoch: {n_train} training patients in batches of "
                              f"1 make {n_train} batch(es) per epoch, so the optimiser would never step; use "
                              f"--set grad_accum={n_train} or less")
    assert not toy.settings.results_dir.exists()


def test_verify_reports_environment_differences_as_information(toy, monkeypatch, capsys):
    from bench.store.manifest import versions

    _cell(toy)
    runs = sorted((toy.root / "results").glob("*/*/*/seed0/fold*"))
    for i, d in enumerate(runs):
        m = json.loads((d / "manifest.json").read_text())
        m["environment"] = {**versions(), "torch": "0.0.1" if i < 2 else versions()["torch"],
                            "machine": {"torch_threads": torch.get_num_threads()}}
        (d / "manifest.json").write_text(json.dumps(m))
    code, out, _ = _main(monkeypatch, capsys, "results", "verify")
    assert code == 0
    here = versions()["torch"]
    assert out.splitlines() == [f"environment: torch is {here} here; the stored runs recorded {here} (3 run(s)), "
                                "0.0.1 (2 run(s))", "5 run(s) checked: all complete and consistent"]


@pytest.mark.parametrize("command", [["tables"], ["results", "verify"], ["figures"]])
def test_results_that_is_a_file_or_missing_is_one_error_line(toy, monkeypatch, capsys, command):
    a_file = toy.root / "bench.toml"
    code, _, err = _main(monkeypatch, capsys, *command, "--results", str(a_file))
    assert _one_line_error(code, err) == (f"error: --results {a_file} is a file, not a folder; give the folder that "
                                          "holds the prediction store (default: results/)")
    code, _, err = _main(monkeypatch, capsys, *command, "--results", "nowhere")
    assert _one_line_error(code, err) == ("error: --results nowhere does not exist; give the folder that holds the "
                                          "prediction store (default: results/)")


@pytest.mark.parametrize("command", [["tables"], ["figures"]])
def test_out_that_is_a_file_is_one_error_line(toy, monkeypatch, capsys, command):
    _cell(toy)
    a_file = toy.root / "bench.toml"
    code, _, err = _main(monkeypatch, capsys, *command, "--out", str(a_file))
    assert _one_line_error(code, err) == (f"error: --out {a_file} is a file, not a folder; give a folder to write "
                                          "into (it is created if missing)")
    code, _, err = _main(monkeypatch, capsys, *command, "--out", str(a_file / "sub"))
    assert _one_line_error(code, err) == (f"error: --out {a_file / 'sub'} is inside {a_file}, which is a file, not a "
                                          "folder; give a folder to write into (it is created if missing)")
