"""The public API of bench/__init__.py: lazily imported, and the README's example runs as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import bench

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The README's Python block (the only one that imports bench)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    (code,) = [b for b in blocks if b.startswith("import bench\n")]
    return code


def test_readme_example_runs_on_a_toy_project(toy, capsys):
    code = readme_example()
    assert 'cohort = "UCEC"\n' in code
    # The one change: the toy project's cohort instead of UCEC.
    exec(compile(code.replace('cohort = "UCEC"\n', 'cohort = "toy"\n'), str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "['snn', 'snntrans']" in out
    assert re.search(r"^\d+ parameters$", out, flags=re.M)
    assert re.search(r"^\(0\.\d+, 0\.0\)$", out, flags=re.M)  # one fold: std 0
    assert "| Genomics" in out and "TOY" in out  # Table I in markdown, with the toy cohort's column
    assert (toy.root / "scratch-results" / "snn" / "epochs=1" / "tcga_toy" / "seed0" / "fold0" / "manifest.json"
            ).is_file()


def test_every_public_name_resolves_to_the_library_function():
    from bench.report.render import render
    from bench.train.runner import execute

    assert set(bench.__all__) == {"__version__", "load_settings", "list_methods", "create_model", "plan_run",
                                  "execute", "summarize", "open_store", "build_tables", "render_table", "reproduce"}
    for name in bench.__all__:
        assert callable(getattr(bench, name)) or name == "__version__"
    assert bench.render_table is render and bench.execute is execute
    assert set(bench.__all__) <= set(dir(bench))


def test_import_bench_stays_light():
    code = "import sys, bench; print(sorted(m for m in ('torch', 'pandas', 'typer') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == "[]"


def test_create_model_and_list_methods(toy):
    import pytest

    from bench.api import BenchError

    assert [m.name for m in bench.list_methods(modality="pathology")][:2] == ["maxmil", "meanmil"]
    with pytest.raises(BenchError, match="unknown modality 'omics'"):
        bench.list_methods(modality="omics")
    model = bench.create_model("meanmil", "toy")
    assert model.training
    first = next(model.parameters())
    assert first.shape[-1] == toy.settings["synthetic"]["dim"]  # no real store: bench.toml's synthetic dim
    assert next(bench.create_model("meanmil", "toy", path_dim=7).parameters()).shape[-1] == 7
