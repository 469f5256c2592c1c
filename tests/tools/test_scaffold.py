"""`bench new-method`: the generated module passes the contract as written, for every modality."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench._core.errors import BenchError
from bench.api import get_method, unregister
from bench.tools.contract import run_contract
from bench.tools.scaffold import (
    check_name_free,
    class_name,
    default_tests_dir,
    module_path,
    next_steps,
    plan_scaffold,
    write_scaffold,
)

BIN = Path(sys.executable).parent


def bench(cwd: Path, *args: str, pythonpath: list[Path] = ()) -> subprocess.CompletedProcess:
    path = os.pathsep.join([*map(str, pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(BIN / "bench"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def package(root: Path, *parts: str) -> Path:
    d = root.joinpath(*parts)
    d.mkdir(parents=True)
    for i in range(1, len(parts) + 1):
        if parts[i - 1] != "src":
            (root.joinpath(*parts[:i]) / "__init__.py").touch()
    return d


def test_names_modules_and_test_folders(tmp_path):
    assert class_name("my_mil") == "MyMil"
    assert class_name("MyMIL") == "MyMIL"
    assert class_name("mcat2") == "Mcat2"
    assert class_name("batch") == "BatchModel"  # would shadow the imported Batch
    flat = package(tmp_path / "flat", "mypkg", "models")
    assert module_path(flat, "abc") == "mypkg.models.abc"
    assert default_tests_dir(flat) == (tmp_path / "flat" / "tests").resolve()
    src = package(tmp_path / "srclayout", "src", "mypkg")
    assert module_path(src, "abc") == "mypkg.abc"
    assert default_tests_dir(src) == (tmp_path / "srclayout" / "tests").resolve()
    plain = tmp_path / "plain"
    plain.mkdir()
    assert module_path(plain, "abc") == "abc"
    assert default_tests_dir(plain) == plain.resolve()


@pytest.mark.parametrize("name,modality,pattern", [
    ("2bad", "genomics", r"bad method name '2bad': use letters"),
    ("my-mil", "genomics", r"bad method name 'my-mil'"),
    ("Class", "genomics", r"'class' is a Python keyword"),
    ("torch", "genomics", r"would shadow the installed module 'torch'"),
    ("fine", "omics", r"bad --modality 'omics': choose one of genomics, pathology, multimodal"),
])
def test_bad_names_and_modalities(tmp_path, name, modality, pattern):
    with pytest.raises(BenchError, match=pattern):
        plan_scaffold(name, modality, tmp_path)


def test_taken_name_names_its_source():
    with pytest.raises(BenchError, match=r"method name 'attmil' is taken: AttMIL from survbench; choose another"):
        check_name_free("AttMIL")


def test_existing_files_need_force(tmp_path):
    s = plan_scaffold("again", "genomics", tmp_path)
    write_scaffold(s)
    s.method_path.write_text("# mine\n")
    with pytest.raises(BenchError, match=r"again\.py exists; pass --force"):
        write_scaffold(s)
    assert s.method_path.read_text() == "# mine\n"
    write_scaffold(s, force=True)
    assert "@register(MethodInfo(" in s.method_path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["genomics", "pathology", "multimodal"])
def test_generated_method_passes_the_contract(modality, tmp_path, monkeypatch):
    pkg = package(tmp_path / "repo", f"scaffold_{modality}")
    s = plan_scaffold(f"Gen{modality.capitalize()}", modality, pkg)
    assert (s.name, s.cls, s.module) == (f"gen{modality}", f"Gen{modality.capitalize()}",
                                         f"scaffold_{modality}.gen{modality}")
    assert s.test_path == (tmp_path / "repo" / "tests" / f"test_gen{modality}.py").resolve()
    write_scaffold(s)
    text = s.method_path.read_text()
    for field in ("name=", "title=", "modality=", "paper=", "official_code=", "reported=", "selection=", "tie=",
                  "train=", "hparam_choices=", "genomics=", "notes=", "order="):
        assert field in text, field
    assert "def forward(self, batch: Batch) -> ModelOutput:" in text
    # The generated files are lint-clean under survbench's own rules (import grouping depends on the
    # project that receives them, so isort is left out).
    lint = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "--extend-ignore", "I001", str(s.method_path),
                           str(s.test_path)], cwd=Path(__file__).parents[2], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout

    monkeypatch.syspath_prepend(str(tmp_path / "repo"))
    try:
        module = __import__(s.module, fromlist=[s.cls])
        info = get_method(s.name)
        assert (info.model, info.modality, info.title, info.source) == (getattr(module, s.cls), modality, s.cls,
                                                                        s.module)
        results = {r.name: r for r in run_contract(s.name, tmp_path / "work")}
    finally:
        unregister(s.name)
        sys.modules.pop(s.module, None)
    status = {n: r.status for n, r in results.items()}
    assert status == {"builds": "pass", "shapes": "pass", "mask": "skip" if modality == "genomics" else "pass",
                      "learns": "pass", "deterministic": "pass", "state": "pass", "stores": "pass"}, results
    before, after = map(float, re.findall(r"\d+\.\d+", results["learns"].reason))
    assert after < before


@pytest.mark.slow
def test_new_method_then_check_method_through_an_entry_point(tmp_path):
    """A plugin repository (src layout): generate, register by entry point, check; run its own test."""
    repo = tmp_path / "repo"
    package(repo, "src", "mylab")
    r = bench(repo, "new-method", "lab_mil", "--modality", "pathology", "--dir", "src/mylab", "--title", "LabMIL")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:3] == ["wrote src/mylab/lab_mil.py", "wrote tests/test_lab_mil.py",
                                         "LabMIL (pathology): class LabMil in module mylab.lab_mil"]
    assert "test it:     pytest tests/test_lab_mil.py" in r.stdout
    assert '    lab_mil = "mylab.lab_mil"' in r.stdout  # the entry point to declare
    assert 'title="LabMIL"' in (repo / "src" / "mylab" / "lab_mil.py").read_text()

    site = tmp_path / "site"
    info = site / "mylab-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[survbench.methods]\nlab_mil = mylab.lab_mil\n")
    r = bench(tmp_path, "check-method", "lab_mil", pythonpath=[repo / "src", site])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == "check-method lab_mil: LabMIL (pathology) from mylab (mylab.lab_mil)"
    assert re.findall(r"^\s+(PASS|FAIL|SKIP)\s+(\w+)", r.stdout, flags=re.M) == [
        ("PASS", c) for c in ("builds", "shapes", "mask", "learns", "deterministic", "state", "stores")]
    assert r.stdout.splitlines()[-1] == "lab_mil: 7 passed, 0 failed, 0 skipped"

    # Taken names are refused on the command line too, as one line with exit 2.
    r = bench(repo, "new-method", "lab_mil", "--dir", "src/mylab", "--force", pythonpath=[repo / "src", site])
    assert r.returncode == 2
    assert r.stderr.strip() == "error: method name 'lab_mil' is taken: LabMIL from mylab (mylab.lab_mil); " \
                               "choose another name"


@pytest.mark.slow
def test_generated_test_file_passes(tmp_path):
    """The test written beside the module runs with pytest in the author's project (a flat module)."""
    s = plan_scaffold("flatmethod", "genomics", tmp_path)
    write_scaffold(s)
    assert s.test_path == (tmp_path / "test_flatmethod.py").resolve()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                        str(s.test_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\b2 passed\b", r.stdout), r.stdout


def test_next_steps_for_a_builtin_method(tmp_path):
    methods = package(tmp_path, "methods")
    s = plan_scaffold("newone", "multimodal", methods)
    assert s.builtin and s.module == "methods.newone"
    assert s.test_path == (tmp_path / "tests" / "test_newone.py").resolve()
    steps = next_steps(s)
    assert steps[0] == f"register it: add `newone` to the import list in {methods / '__init__.py'}"
    assert steps[1] == "check it:    bench check-method newone"
    write_scaffold(s)
    assert "from methods.newone import Newone  # registers the method\n" in s.test_path.read_text()
