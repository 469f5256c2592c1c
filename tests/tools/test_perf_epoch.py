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
