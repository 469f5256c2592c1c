"""Hostile input: `bench data import` files, store names, `bench new-method` names, a full disk under synth."""

from __future__ import annotations

import io
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bench import cli
from bench._core.errors import BenchError
from bench.data.cohort import load_cohort
from bench.data.features import choose_store
from bench.data.features.importer import import_features
from bench.data.features.store import read_info, read_slide
from bench.data.features.synthetic import synthesize
from bench.tools.scaffold import plan_scaffold, write_scaffold

BENCH = Path(sys.executable).parent / "bench"


def _slides(co, folder: Path, fmt: str = "pt", dim: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """One feature file per slide of the cohort in ``folder`` (.pt, or .h5 with coords); the features by slide."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for slides in co.slides:
        for sid in slides:
            x = rng.standard_normal((int(rng.integers(3, 9)), dim)).astype(np.float32)
            truth[sid] = x
            _save(folder / f"{sid}.{fmt}", x, rng.integers(0, 1000, (len(x), 2)))
    return truth


def _save(path: Path, x: np.ndarray, coords: np.ndarray | None = None) -> None:
    if path.suffix == ".pt":
        torch.save(torch.from_numpy(x), path)
    else:
        with h5py.File(path, "w") as f:
            f["features"] = x
            if coords is not None:
                f["coords"] = coords


def _cli(*args: str) -> tuple[int, str, str]:
    """Run the bench CLI in-process as a user would (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    argv, stdout, stderr = sys.argv, sys.stdout, sys.stderr
    sys.argv, sys.stdout, sys.stderr = ["bench", *args], out, err
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv, sys.stdout, sys.stderr = argv, stdout, stderr
    return code, out.getvalue(), err.getvalue()


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------------------------
# 1. feature import


@pytest.mark.parametrize("first,second", [
    ("{s}.pt", "{s}.h5"),
    ("{s}.pt", "{s}.svs.pt"),
    ("{s}.pt", "pt_files/{s}.pt"),
])
def test_one_slide_in_two_different_files_names_both(toy, tmp_path, first, second):
    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "f"
    truth = _slides(co, feats)
    sid = co.slides[4][0]
    (feats / "pt_files").mkdir()
    a, b = feats / first.format(s=sid), feats / second.format(s=sid)
    if a.exists():
        a.unlink()
    _save(a, truth[sid])
    _save(b, truth[sid] + 1)  # same shape, other values
    dest = tmp_path / "out" / "s.h5"
    # .h5 files come first (they may carry coords), then the folder before its sub-folders
    named = (b, a) if b.suffix == ".h5" else (a, b)
    with pytest.raises(BenchError, match=re.escape(
            f"slide {sid} of patient {co.case_ids[4]} is in two feature files with different content (different "
            f"feature values): {named[0]} and {named[1]}; keep the right one and move the other out of the feature "
            "folder")):
        import_features(co, feats, dest)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []  # no store, no temporary file


def test_two_files_of_different_shape_refused_before_writing(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "f"
    truth = _slides(co, feats)
    sid = co.slides[0][0]
    _save(feats / f"{sid}.svs.pt", truth[sid][:2])
    n = len(truth[sid])
    with pytest.raises(BenchError, match=re.escape(f"different content ({n} x 8 vs 2 x 8 features): "
                                                   f"{feats / f'{sid}.pt'} and {feats / f'{sid}.svs.pt'}")):
        import_features(co, feats, tmp_path / "out" / "s.h5")
    assert not (tmp_path / "out").exists()


def test_identical_copies_imported_once_and_reported(toy, tmp_path):
    """CLAM writes every slide twice (h5_files/ with coords, pt_files/): fine, imported once, said once."""
    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "clam"
    truth = _slides(co, feats / "h5_files", fmt="h5")
    (feats / "pt_files").mkdir()
    for sid, x in truth.items():
        _save(feats / "pt_files" / f"{sid}.pt", x)
    notes: list[str] = []
    info = import_features(co, feats, tmp_path / "s.h5", notify=notes.append)
    assert info.n_slides == co.n_slides and info.has_coords
    assert info.params["format"] == [".h5"]
    for sid, x in truth.items():
        np.testing.assert_allclose(read_slide(info, sid), x, atol=2e-3, rtol=2e-3)
    s0 = co.slides[0][0]
    assert notes == [f"{co.n_slides} slide(s) are in more than one feature file with the same content (e.g. "
                     f"{feats / 'h5_files' / f'{s0}.h5'} and {feats / 'pt_files' / f'{s0}.pt'}); imported each "
                     "once, from the copy with coords where there is one"]


def test_fp16_overflow_refused_at_import_or_kept_with_float32(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "f"
    truth = _slides(co, feats)
    sid, case = co.slides[6][0], co.case_ids[6]
    x = truth[sid].copy()
    x[1, 3] = -1e6  # finite in fp32, inf in fp16
    _save(feats / f"{sid}.pt", x)
    dest = tmp_path / "out" / "s.h5"
    with pytest.raises(BenchError, match=re.escape(
            f"{feats / f'{sid}.pt'}: slide {sid} of patient {case} has values up to 1e+06 in magnitude, beyond the "
            "largest float16 (65504); import with --dtype float32 to store them as they are")):
        import_features(co, feats, dest)
    assert not dest.exists()
    info = import_features(co, feats, dest, dtype="float32")
    assert info.dtype == "float32" and read_info(dest).dtype == "float32"
    with h5py.File(dest, "r") as f:
        assert f.attrs["dtype"] == "float32"
    assert read_slide(info, sid)[1, 3] == -1e6


def test_largest_float16_still_accepted(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    truth = _slides(co, tmp_path / "f")
    sid = co.slides[1][0]
    x = truth[sid].copy()
    x[0, 0] = 65504.0
    _save(tmp_path / "f" / f"{sid}.pt", x)
    info = import_features(co, tmp_path / "f", tmp_path / "s.h5")
    assert read_slide(info, sid)[0, 0] == 65504.0


@pytest.mark.parametrize("fmt", ["pt", "h5"])
def test_complex_features_refused(toy, tmp_path, fmt):
    co = load_cohort(toy.settings, "toy")
    truth = _slides(co, tmp_path / "f", fmt=fmt)
    sid = co.slides[3][0]
    path = tmp_path / "f" / f"{sid}.{fmt}"
    _save(path, truth[sid].astype(np.complex64), np.zeros((len(truth[sid]), 2)))
    with pytest.raises(BenchError, match=re.escape(
            f"{path}: slide {sid} of patient {co.case_ids[3]} has complex-valued (complex64) features, expected "
            "real numbers (float16/32/64); re-extract the slide")):
        import_features(co, tmp_path / "f", tmp_path / "s.h5")


def test_dim_zero_refused(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    _slides(co, tmp_path / "f")
    with pytest.raises(BenchError, match=re.escape("bad --dim 0: the feature dimension is a positive number (e.g. "
                                                   "1024); leave --dim out to take it from the files")):
        import_features(co, tmp_path / "f", tmp_path / "s.h5", expected_dim=0)
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("shape", ["n3", "2n", "short", "flat"])
def test_coords_of_wrong_shape_named(toy, tmp_path, shape):
    co = load_cohort(toy.settings, "toy")
    truth = _slides(co, tmp_path / "f", fmt="h5")
    sid = next(s for slides in co.slides for s in slides if len(truth[s]) != 2)
    x = truth[sid]
    n = len(x)
    coords = {"n3": np.zeros((n, 3)), "2n": np.zeros((2, n)), "short": np.zeros((n - 1, 2)),
              "flat": np.zeros(2 * n)}[shape]
    path = tmp_path / "f" / f"{sid}.h5"
    _save(path, x, coords)
    with pytest.raises(BenchError, match=re.escape(
            f"{path}: coords have shape {coords.shape} for features of shape {x.shape} (slide {sid}); coords must be "
            f"[N, 2] numbers with the features' N ({n}); re-extract the slide")):
        import_features(co, tmp_path / "f", tmp_path / "s.h5")


def test_bad_import_is_one_line_at_the_cli(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    _slides(co, tmp_path / "f")
    code, _, err = _cli("data", "import", "--cohort", "toy", "--features", str(tmp_path / "f"), "--dim", "0")
    assert code == 2 and err.strip().splitlines() == [
        "error: bad --dim 0: the feature dimension is a positive number (e.g. 1024); leave --dim out to take it "
        "from the files"]


# ----------------------------------------------------------------------------------------------
# 2. store names


NAME_RULE = ("a feature store name is a plain file name (not empty, no '/' or '\\', not starting with '.'), stored "
             "as <features>/<cohort>/NAME.h5; give a name like 'uni'")


@pytest.mark.parametrize("option,name", [
    ("--name", "../../../x"),
    ("--name", "ABS"),
    ("--name", ".hidden"),
    ("--name", ""),
    ("--name", "a\\b"),
    ("--encoder", "../x"),
])
def test_import_refuses_store_names_that_are_paths(toy, tmp_path, option, name):
    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "f"
    _slides(co, feats)
    name = str(tmp_path / "outside" / "x") if name == "ABS" else name
    before = _files(tmp_path.parent)
    code, out, err = _cli("data", "import", "--cohort", "toy", "--features", str(feats), option, name)
    also = " with --name (the store name defaults to the encoder)" if option == "--encoder" else ""
    assert (code, out, err.strip().splitlines()) == (2, "", [f"error: bad {option} {name!r}: {NAME_RULE}{also}"])
    assert _files(tmp_path.parent) == before  # nothing written, inside features/<cohort>/ or outside


def test_run_refuses_store_names_that_are_paths(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    outside = tmp_path / "elsewhere" / "x.h5"  # a store the name would reach: features/tcga_toy/../../elsewhere/x
    synthesize(co, outside, patches=4, dim=4)
    for spec in ("../../elsewhere/x", str(outside.with_suffix(""))):
        with pytest.raises(BenchError, match=re.escape(f"bad --features {spec!r}: {NAME_RULE} or the path of an .h5 "
                                                       "store")):
            choose_store(toy.settings, co, spec)
    assert choose_store(toy.settings, co, str(outside)).info.path == outside  # an .h5 path still works
    code, _, err = _cli("run", "--method", "meanmil", "--cohort", "toy", "--features", "../../elsewhere/x")
    assert code == 2 and err.strip().splitlines() == [
        f"error: bad --features '../../elsewhere/x': {NAME_RULE} or the path of an .h5 store"]
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------------------------
# 3. method names


@pytest.mark.parametrize("name,kw", [("None", "None"), ("true", "True"), ("FALSE", "False"), ("class", "class")])
def test_keyword_method_names_refused_in_any_case(tmp_path, name, kw):
    with pytest.raises(BenchError, match=re.escape(
            f"bad method name '{name}': '{kw}' is a Python keyword (refused in any letter case: the module or class "
            "named after it would not compile); choose another name")):
        plan_scaffold(name, "genomics", tmp_path)


def test_soft_keyword_method_names_refused(tmp_path):
    with pytest.raises(BenchError, match=re.escape("bad method name 'Match': 'match' is a Python soft keyword "
                                                   "(refused in any letter case, like the keywords)")):
        plan_scaffold("Match", "genomics", tmp_path)


def test_new_method_none_writes_nothing(toy, tmp_path):
    code, out, err = _cli("new-method", "None", "--dir", str(tmp_path / "pkg"))
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        "error: bad method name 'None': 'None' is a Python keyword (refused in any letter case: the module or class "
        "named after it would not compile); choose another name"]
    assert not (tmp_path / "pkg").exists()


def test_a_module_that_would_not_compile_is_not_written(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.tools.scaffold.class_name", lambda name: "None")  # a name the checks would miss
    s = plan_scaffold("fine", "genomics", tmp_path)
    with pytest.raises(BenchError, match=r"method name 'fine' gives a module that does not compile \(.*fine\.py: "):
        write_scaffold(s)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# 4. a full disk


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


@pytest.mark.slow
def test_data_synth_when_the_disk_refuses_writes(toy):
    """A real failed write inside HDF5 (file size limit): HDF5 used to crash the process (segfault)."""
    env = {**os.environ, "BENCH_ROOT": str(toy.root), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run([str(BENCH), "data", "synth", "--cohort", "toy", "--dim", "512", "--seed", "3"], cwd=toy.root,
                       env=env, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(300_000))
    dest = toy.root / "features" / "tcga_toy" / "synthetic-p16-s1-seed3-d512.h5"
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert r.stderr.strip().splitlines() == [
        f"error: could not write {dest}: File too large; earlier files are intact, free disk space or fix "
        "permissions and rerun"]
    assert not dest.exists() and not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}")]
