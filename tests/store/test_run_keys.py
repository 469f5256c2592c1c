"""RunKey: the one key of a stored run — its folder, the folder read back, and the `bench run` commands."""

from __future__ import annotations

from pathlib import Path

from bench.store.keys import PLAN_ORDER, REDO_ORDER, SWEEP_ORDER, RunKey, run_command


def test_folder_round_trip():
    key = RunKey("ccl", "k=9", "tcga_ucec", 0, 3, "abc123")
    d = key.dir(Path("/r"))
    assert d == Path("/r/ccl/k=9/tcga_ucec/seed0/fold3")
    assert RunKey.from_path(d) == key  # the config hash is not part of the folder (nor of equality)
    assert RunKey.from_path(d).config_hash is None
    assert key.label() == "ccl/k=9/tcga_ucec/seed0/fold3"
    assert key.record() == {"method": "ccl", "variant": "k=9", "config_hash": "abc123", "cohort": "tcga_ucec",
                            "fold": 3, "seed": 0}
    for bad in ("/r/ccl/default/tcga_ucec/seed0/fold0.bak", "/r/ccl/default/tcga_ucec/seed01/fold0", "/seed0/fold0"):
        assert RunKey.from_path(Path(bad)) is None


def test_the_three_command_orders():
    key = RunKey("ccl", "k=9", "tcga_ucec", 1, 2)
    sets = [("k", "9")]
    assert key.command(sets, tail=["--force"]) == (
        "bench run --method ccl --cohort UCEC --folds 2 --seed 1 --set k=9 --force")
    assert key.command(sets, epochs=3, order=SWEEP_ORDER) == (
        "bench run --method ccl --cohort UCEC --folds 2 --set k=9 --seed 1 --epochs 3")
    assert run_command("ccl", "tcga_ucec", sets=sets, seed=1, folds=[0, 2], order=PLAN_ORDER) == (
        "bench run --method ccl --cohort UCEC --set k=9 --seed 1 --folds 0,2")
    assert run_command("snn", "BLCA") == "bench run --method snn --cohort BLCA"
    assert REDO_ORDER == ("folds", "seed", "set")
