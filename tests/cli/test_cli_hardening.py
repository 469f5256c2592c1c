"""Hostile input to the CLI, bench.toml and grid files (one line, exit 2), and worker processes that die."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench._core.config import load_settings
from bench._core.errors import BenchError
from bench.data.toy import make_toy_project
from bench.train.runner import plan_run
from bench.train.sweep import expand, load_grid, parse_ints

BENCH = os.path.join(os.path.dirname(sys.executable), "bench")


def bench(root: Path, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, "BENCH_ROOT": str(root), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([BENCH, *args], cwd=root, env=full, capture_output=True, text=True, timeout=timeout)


def error_line(r: subprocess.CompletedProcess) -> str:
    """The one stderr line of a user error (exit 2, no traceback)."""
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


SEED_FIX = "a seed is an integer with 0 <= seed < 2**32 (what numpy and torch seeding accept)"
RUN = ["run", "--method", "snn", "--cohort", "toy", "--epochs", "1"]


# ----------------------------------------------------------------------------------------------
# 1. CLI and bench.toml


@pytest.mark.parametrize("args,expected", [
    ([*RUN, "--folds", ","], "error: bad --folds ',': write comma-separated integers like 0,2 or 'all'"),
    ([*RUN, "--folds", "0,0"], "error: folds 0,0 name a fold twice; name each fold once"),
    ([*RUN, "--seed", "-1"], f"error: bad value -1 for '--seed': {SEED_FIX}"),
    ([*RUN, "--seed", str(2**40)], f"error: bad value 1099511627776 for '--seed': {SEED_FIX}"),
    ([*RUN, "--workers", "0"], "error: bad --workers 0: must be >= 1"),
    (["sweep", "--methods", "snn", "--cohorts", "toy", "--workers", "0"], "error: bad --workers 0: must be >= 1"),
    (["sweep", "--methods", "snn", "--cohorts", "toy", "--seeds", str(2**32)],
     f"error: bad seed 4294967296: {SEED_FIX}"),
    (["perf", "--iters", "0"], "error: bad --iters 0: must be >= 1 (timed training iterations per mode; leave it out "
                               "for the profile's 12)"),
    ([*RUN, "--set", "genomics=../genomics/mutsig"],
     "error: bad value '../genomics/mutsig' for 'data.genomics': a genomics build is a name, not a path: mutsig, "
     "mcat_sig, mcat_full or another folder name under data/genomics"),
])
def test_bad_options_are_one_line(toy, args, expected):
    assert error_line(bench(toy.root, *args)) == expected
    assert not (toy.root / "results").exists()
    assert not (toy.root / "perf").exists()  # perf checks --iters before building its cohort


@pytest.mark.parametrize("method", ["[/]", "[bold]nosuch", "x[red]y[/red]"])
def test_error_text_is_not_markup(toy, method):
    line = error_line(bench(toy.root, "run", "--method", method, "--cohort", "toy"))
    assert line.startswith(f"error: unknown method '{method}'; valid methods: snn, ")


def _toml(tmp_path: Path, edit) -> Path:
    project = make_toy_project(tmp_path)
    path = project.root / "bench.toml"
    path.write_text(edit(path.read_text()))
    return project.root


FOLDS_FIX = "a list of distinct fold numbers 0..4, e.g. [0, 1, 2, 3, 4]"


@pytest.mark.parametrize("folds", ["[7]", "[true]", "[]", "[0, 0]", "[0, -1]", '["0"]'])
def test_bad_run_folds_in_bench_toml(tmp_path, folds):
    root = _toml(tmp_path, lambda t: t.replace("folds = [0, 1, 2, 3, 4]", f"folds = {folds}"))
    shown = {"[true]": "[True]", '["0"]': "['0']"}.get(folds, folds)
    with pytest.raises(BenchError) as err:
        load_settings(root)
    assert str(err.value) == f"bad value {shown} for 'run.folds': {FOLDS_FIX} (in {root / 'bench.toml'})"


def test_bad_seed_and_scalar_section_in_bench_toml(tmp_path):
    root = _toml(tmp_path, lambda t: t.replace("seed = 0\ndevice", f"seed = {2**32}\ndevice"))
    with pytest.raises(BenchError) as err:
        load_settings(root)
    assert str(err.value) == f"bad value 4294967296 for 'run.seed': {SEED_FIX} (in {root / 'bench.toml'})"
    (root / "bench.toml").write_text("train = 5\n")
    r = bench(root, *RUN)
    assert error_line(r) == (f"error: bad value 5 for 'train' in {root / 'bench.toml'}: 'train' is a section; "
                             "write a [train] header followed by key = value lines")


def test_seed_edges_and_fold_lists(toy):
    assert plan_run(toy.settings, "snn", "toy", seed=2**32 - 1, load_store=False).seed == 2**32 - 1
    with pytest.raises(BenchError, match=r"^bad value True for '--seed': expected int$"):
        plan_run(toy.settings, "snn", "toy", seed=True, load_store=False)
    assert parse_ints(" ALL ", "folds") is None and parse_ints("0, 2", "folds") == [0, 2]
    for text in ("", ",", " , ", "0,x"):
        with pytest.raises(BenchError) as err:
            parse_ints(text, "folds")
        assert str(err.value) == f"bad --folds '{text}': write comma-separated integers like 0,2 or 'all'"


# ----------------------------------------------------------------------------------------------
# 2. Grid files: every key checked before anything runs


GRID = 'methods = ["meanmil"]\ncohorts = ["toy"]\nepochs = 1\n'


@pytest.mark.parametrize("extra,message", [
    ('folds = ["x"]\n', """bad value ['x'] for 'folds' in grid {g}: a list of fold numbers like [0, 1] or "all\""""),
    ("folds = [true]\n", """bad value [True] for 'folds' in grid {g}: a list of fold numbers like [0, 1] or "all\""""),
    ("set = 5\n", "bad value 5 for 'set' in grid {g}: a table of overrides: [set] followed by key = value lines"),
    ("sets = [5]\n", "bad value [5] for 'sets' in grid {g}: a list of override tables, e.g. [{{}}, {{k = 9}}]"),
    ('workers = "many"\n', "bad value 'many' for 'workers' in grid {g}: an integer >= 1"),
    ("workers = 0\n", "bad value 0 for 'workers' in grid {g}: an integer >= 1"),
    ("features = 5\n", "bad value 5 for 'features' in grid {g}: 'auto', 'synthetic', a store name or a path to an "
                       ".h5 store, or a list of them (the grid runs once per store), e.g. [\"resnet50\", \"uni_v2\"]"),
    ("seeds = [-1]\n", "bad value [-1] for 'seeds' in grid {g}: a list of seeds like [0, 1]; " + SEED_FIX),
    ('executor = "cloud"\n', "bad value 'cloud' for 'executor' in grid {g}: local, slurm or debug"),
    ('[slurm]\ntime = "long"\n', "bad value 'long' for 'slurm.time' in grid {g}: minutes, an integer >= 1"),
])
def test_grid_types_are_checked_on_load(tmp_path, extra, message):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID + extra)
    with pytest.raises(BenchError) as err:
        load_grid(grid)
    assert str(err.value) == message.format(g=grid)


@pytest.mark.parametrize("extra,message", [
    ("folds = [9]\n", "fold 9 out of range for TOY: folds 0..4"),
    ('features = "nosuch"\n', "no feature store 'nosuch' for TOY; stores available: synthetic-p16-s1-seed0-d32"),
    ('[set]\nlr = "fast"\n', "bad value 'fast' for 'train.lr': expected float"),
    ('[set]\ngenomics = "../genomics/mutsig"\n', "bad value '../genomics/mutsig' for 'data.genomics': a genomics "
     "build is a name, not a path: mutsig, mcat_sig, mcat_full or another folder name under data/genomics"),
])
def test_grid_values_name_the_grid(toy, extra, message):
    from bench.data.cohort import load_cohort
    from bench.data.features import choose_store

    choose_store(toy.settings, load_cohort(toy.settings, "toy"))  # the default synthetic store exists
    grid = toy.root / "grid.toml"
    grid.write_text(GRID + extra)
    with pytest.raises(BenchError) as err:
        expand(toy.settings, load_grid(grid))
    assert str(err.value) == f"in grid {grid}: {message}"
    assert not (toy.root / "results").exists()


def test_bad_grid_from_the_cli(toy):
    grid = toy.root / "grid.toml"
    grid.write_text(GRID + "set = 5\n")
    line = error_line(bench(toy.root, "sweep", "--grid", str(grid)))
    assert line == (f"error: bad value 5 for 'set' in grid {grid}: a table of overrides: [set] followed by "
                    "key = value lines")


# ----------------------------------------------------------------------------------------------
# 3. A worker process killed mid-run: reported, the rest finishes, exit non-zero, no hang

# Its first forward pass in any process SIGKILLs that process (one process only: an O_EXCL marker file).
SUICIDE_METHOD = '''
import os
import signal

from torch import nn

from bench.api import InputDims, MethodInfo, ModelOutput, SurvivalModel, register


@register(MethodInfo(name="suicide_mlp", title="SuicideMLP", modality="genomics", paper="test",
                     train={"optimizer": "adam", "lr": 1e-3, "epochs": 2}, genomics="all",
                     notes="the first process to train it SIGKILLs itself"))
class SuicideMLP(SurvivalModel):
    def __init__(self, dims: InputDims, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dims.omic_dim, hidden), nn.ReLU(), nn.Linear(hidden, dims.n_bins))

    def forward(self, batch):
        try:
            fd = os.open(os.environ["SUICIDE_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return ModelOutput(self.net(batch.omic))
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.fixture
def suicide(tmp_path):
    """A toy project, and the env that finds the suicide_mlp plugin (entry point) and its marker file."""
    site = tmp_path / "site"
    (site / "suicide_plugin").mkdir(parents=True)
    (site / "suicide_plugin" / "__init__.py").write_text("")
    (site / "suicide_plugin" / "suicide.py").write_text(textwrap.dedent(SUICIDE_METHOD))
    info = site / "suicide_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: suicide-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[survbench.methods]\nsuicide_mlp = suicide_plugin.suicide\n")
    project = make_toy_project(tmp_path / "project", n_patients=60, patches=8, dim=16)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path, "SUICIDE_MARKER": str(tmp_path / "killed.pid")}
    return project, env, tmp_path / "killed.pid"


def _complete(d: Path) -> bool:
    m = d / "manifest.json"
    return m.is_file() and json.loads(m.read_text())["status"] == "complete"


@pytest.mark.slow
def test_killed_fold_worker_is_reported_and_the_rest_finish(suicide):
    project, env, marker = suicide
    r = bench(project.root, "run", "--method", "suicide_mlp", "--cohort", "toy", "--folds", "0,1,2", "--workers", "2",
              env=env, timeout=240)  # before: the pool waited forever for the killed worker's fold
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    assert marker.is_file()  # a worker did kill itself
    lost = [int(f) for f in re.findall(r"fold (\d): interrupted, its worker process died", r.stdout)]
    assert len(lost) == 1, r.stdout
    (x,) = lost
    assert r.stderr.strip().splitlines()[-1] == (f"1 fold(s) interrupted (fold {x}): a worker process died; rerun the "
                                                 "same command to resume from the checkpoint")
    runs = project.root / "results" / "suicide_mlp" / "default" / "tcga_toy" / "seed0"
    assert not _complete(runs / f"fold{x}")
    others = sorted({0, 1, 2} - {x})
    assert all(_complete(runs / f"fold{f}") for f in others)
    assert sorted(int(f) for f in re.findall(r"fold (\d): trained in", r.stdout)) == others
    again = bench(project.root, "run", "--method", "suicide_mlp", "--cohort", "toy", "--folds", "0,1,2",
                  "--workers", "2", env=env, timeout=240)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already stored, skipped") == 2 and f"fold {x}: trained in" in again.stdout
    assert all(_complete(runs / f"fold{f}") for f in (0, 1, 2))


@pytest.mark.slow
def test_killed_sweep_worker_is_reported_and_the_rest_finish(suicide):
    project, env, marker = suicide
    assert not marker.exists()
    r = bench(project.root, "sweep", "--methods", "suicide_mlp", "--cohorts", "toy", "--folds", "0,1,2",
              "--workers", "1", env=env, timeout=240)  # before: the sweep hung forever
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    assert marker.is_file()
    label = "suicide_mlp/default/tcga_toy/seed0/fold{}"
    assert (f"  {label.format(0)}: interrupted — its worker process died (killed, or out of memory); rerun the "
            "sweep to resume it from its last epoch checkpoint") in r.stdout
    assert f"{label.format(1)}: trained" in r.stdout and f"{label.format(2)}: trained" in r.stdout
    assert "done 2 · skipped 0 · running elsewhere 0 · failed 0 · interrupted 1 · remaining 0 (of 3)" in r.stdout
    failures = project.root / "results" / ".sweep-failures.json"
    assert r.stderr.strip() == (f"1 run(s) interrupted (a worker process died; rerun to resume them); errors in "
                                f"{failures}")
    assert [(f["label"], f["status"]) for f in json.loads(failures.read_text())] == [(label.format(0), "interrupted")]
    runs = project.root / "results" / "suicide_mlp" / "default" / "tcga_toy" / "seed0"
    assert not _complete(runs / "fold0") and _complete(runs / "fold1") and _complete(runs / "fold2")
