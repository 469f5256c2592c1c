"""`--splits site`: runs on the site-preserved splits (splits/<cohort>/site/), their own variant and key; the
default runs keep their config hash; bad input stops with one line naming the site or folder and the fix."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from bench._core.config import config_hash
from bench._core.errors import BenchError
from bench._core.files import sha256_file, sha256_json
from bench.cli.app import main
from bench.data.audit import site_of, site_splits, write_site_splits
from bench.data.cohort import load_cohort
from bench.data.inner_splits import write_inner_splits
from bench.report.evaluation import Evaluation, open_store
from bench.report.tables import Options, table1
from bench.store.verify import check_run
from bench.train.runner import execute, plan_run
from bench.train.sweep import SweepSpec, expand, load_grid


@pytest.fixture
def sited(toy_factory):
    """A toy project of 60 patients from 10 tissue source sites, with its site splits written."""
    project = toy_factory(n_patients=60, sites=10)
    co = load_cohort(project.settings, project.cohort)
    write_site_splits(project.root / "splits" / project.cohort / "site", co.case_ids)
    return project


def test_default_config_hash_is_unchanged(toy):
    plan = plan_run(toy.settings, "snn", toy.cohort, epochs=2, folds=[0])
    assert plan.config["data"]["splits"] == "fixed" and plan.variant == "epochs=2"
    # the hash of a config without the split key (how every stored run's config was hashed)
    before = json.loads(json.dumps(plan.config))
    del before["data"]["splits"], before["train"]["selection"]
    assert plan.chash == config_hash(plan.config) == sha256_json(before)[:12]
    assert plan.cohort.split_kind == "fixed" and plan.cohort.split_dir == toy.root / "splits" / "tcga_toy"


def test_site_plan_reads_the_site_files(sited):
    plan = plan_run(sited.settings, "snn", sited.cohort, epochs=2, splits="site")
    fixed = plan_run(sited.settings, "snn", sited.cohort, epochs=2)
    site_dir = sited.root / "splits" / "tcga_toy" / "site"
    assert plan.variant == "splits=site,epochs=2" and plan.overrides["data.splits"] == "site"
    assert plan.chash != fixed.chash and plan.key(0) != fixed.key(0)
    assert plan.cohort.split_dir == site_dir
    for k in range(5):
        split = plan.cohort.split(k)
        assert split.path == site_dir / f"splits_{k}.csv"
        assert plan.cohort.hashes[f"splits_{k}"] == sha256_file(site_dir / f"splits_{k}.csv")
        val = pd.read_csv(site_dir / f"splits_{k}.csv", dtype=str)["val"].dropna().tolist()
        assert sorted(plan.cohort.case_ids[i] for i in split.val) == sorted(val)
    # every site in one validation fold, computed from the barcodes
    fold_of_site: dict[str, set[int]] = {}
    for split in plan.cohort.splits:
        for i in split.val:
            fold_of_site.setdefault(site_of(plan.cohort.case_ids[i]), set()).add(split.k)
    assert len(fold_of_site) == 10 and all(len(f) == 1 for f in fold_of_site.values())
    # --set splits=site is the same plan; so is the command it prints
    same = plan_run(sited.settings, "snn", sited.cohort, epochs=2, sets={"splits": "site"})
    assert (same.variant, same.chash) == (plan.variant, plan.chash)
    assert plan.command() == "bench run --method snn --cohort TOY --set splits=site,epochs=2"


def test_site_split_made_the_default_in_bench_toml_is_still_its_variant(sited):
    toml = sited.root / "bench.toml"
    toml.write_text(toml.read_text().replace('[data]\n', '[data]\nsplits = "site"\n'))
    from bench._core.config import load_settings

    plan = plan_run(load_settings(sited.root), "snn", sited.cohort, epochs=2)
    assert plan.variant == "splits=site,epochs=2"  # never filed under `default` beside fixed-split runs


def test_missing_site_files(toy):
    with pytest.raises(BenchError) as e:
        plan_run(toy.settings, "snn", toy.cohort, splits="site")
    assert str(e.value) == (f"no site splits for TOY: {toy.root}/splits/tcga_toy/site holds no splits_<k>.csv; write "
                            "them with `bench data site-splits --cohort TOY`")
    with pytest.raises(BenchError) as e:
        plan_run(toy.settings, "snn", toy.cohort, splits="sites")
    assert str(e.value) == "bad value 'sites' for 'data.splits': choose one of fixed, site"


def test_sites_that_cannot_be_separated(toy, toy_factory):
    with pytest.raises(BenchError) as e:  # the toy's 100 patients come from one site
        site_splits(load_cohort(toy.settings, toy.cohort).case_ids)
    assert str(e.value) == ("only 1 tissue source site(s) (TY) for 5 folds: a site-preserved split needs at least one "
                            "site per fold; use the fixed splits (--splits fixed)")
    ids = [f"TCGA-AA-{i:04d}" for i in range(12)] + [f"TCGA-{s}-0000" for s in ("B1", "C1", "D1", "E1")]
    with pytest.raises(BenchError) as e:
        site_splits(ids)
    assert str(e.value) == ("tissue source site AA holds 12 of 16 patients: the fold that validates on it would "
                            "train on fewer patients than it validates, so the sites cannot be separated into 5 usable "
                            "folds; use the fixed splits (--splits fixed)")


def test_site_files_that_split_a_site_are_refused(sited):
    site_dir = sited.root / "splits" / "tcga_toy" / "site"
    f0, f1 = (pd.read_csv(site_dir / f"splits_{k}.csv", index_col=0, dtype=str) for k in (0, 1))
    moved = f0["val"].dropna().iloc[0]  # one patient of fold 0's first site moved to fold 1's validation
    site = site_of(moved)

    def write(frame, train, val, k):
        n = max(len(train), len(val))
        pd.DataFrame({"train": train + [None] * (n - len(train)), "val": val + [None] * (n - len(val))}).to_csv(
            site_dir / f"splits_{k}.csv")

    v0 = [c for c in f0["val"].dropna() if c != moved]
    write(f0, sorted(set(f0["train"].dropna()) | {moved}), v0, 0)
    v1 = [*f1["val"].dropna(), moved]
    write(f1, sorted(set(f1["train"].dropna()) - {moved}), v1, 1)
    with pytest.raises(BenchError) as e:
        plan_run(sited.settings, "snn", sited.cohort, splits="site")
    assert str(e.value) == (f"tissue source site {site} has validation patients in folds 0 and 1 of {site_dir}: not a "
                            "site-preserved split; rewrite it with `bench data site-splits --cohort TOY --force`")


def test_inner_selection_on_site_splits_needs_site_inner_files(sited):
    with pytest.raises(BenchError) as e:
        plan_run(sited.settings, "snn", sited.cohort, splits="site", sets={"selection": "inner"})
    assert str(e.value) == (f"selection=inner needs {sited.root}/splits/tcga_toy/site/inner_0.csv; draw the inner "
                            "splits with `bench data inner-splits --cohort TOY --splits site`")
    write_inner_splits(load_cohort(sited.settings, sited.cohort, splits="site"))
    plan = plan_run(sited.settings, "snn", sited.cohort, splits="site", sets={"selection": "inner"}, folds=[0])
    assert plan.variant == "splits=site,selection=inner"
    train = {plan.cohort.case_ids[i] for i in plan.cohort.split(0).train}
    assert set(plan.inner_patients(0)) <= train  # drawn inside the site fold's training patients


def test_sweep_and_grid_splits(sited, tmp_path):
    spec = SweepSpec(methods=["snn"], cohorts=["toy"], folds=[0], epochs=1, splits="site")
    (task,) = expand(sited.settings, spec)
    assert task.variant == "splits=site,epochs=1"
    assert task.command() == "bench run --method snn --cohort TOY --folds 0 --set splits=site --seed 0 --epochs 1"
    grid = tmp_path / "g.toml"
    grid.write_text('methods = ["snn"]\ncohorts = ["toy"]\nfolds = [0]\nepochs = 1\nsplits = "site"\n')
    (from_grid,) = expand(sited.settings, load_grid(grid))
    assert from_grid.key == task.key and from_grid.key.config_hash == task.key.config_hash
    grid.write_text('methods = ["snn"]\ncohorts = ["toy"]\nsplits = "sites"\n')
    with pytest.raises(BenchError) as e:
        load_grid(grid)
    assert str(e.value) == f"bad value 'sites' for 'splits' in grid {grid}: one of fixed, site"


@pytest.mark.parametrize("argv", [["tables", "--splits", "sites"], ["run", "--method", "snn", "--cohort", "TOY",
                                                                     "--splits", "site"]])
def test_cli_bad_splits_is_one_line(toy, monkeypatch, capsys, argv):
    monkeypatch.setattr(sys, "argv", ["bench", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert err == ("error: bad --splits 'sites': choose one of fixed, site" if "tables" in argv else
                   f"error: no site splits for TOY: {toy.root}/splits/tcga_toy/site holds no splits_<k>.csv; write "
                   "them with `bench data site-splits --cohort TOY`")


@pytest.mark.slow
def test_site_run_end_to_end(sited):
    site_dir = sited.root / "splits" / "tcga_toy" / "site"
    plan = plan_run(sited.settings, "snn", sited.cohort, epochs=2, folds=[0], splits="site")
    fixed = plan_run(sited.settings, "snn", sited.cohort, epochs=2, folds=[0])
    execute(plan)
    execute(fixed)
    d = plan.dir(0)
    assert d == sited.root / "results" / "snn" / "splits=site,epochs=2" / "tcga_toy" / "seed0" / "fold0"
    assert check_run(sited.settings, d) is None  # verified against the site split file
    m = json.loads((d / "manifest.json").read_text())
    assert m["data"]["splits"] == "site" and m["data"]["split_folder"] == "splits/tcga_toy/site"
    assert m["data"]["split_file"] == "splits_0.csv"
    assert m["data"]["split_sha256"] == sha256_file(site_dir / "splits_0.csv")
    assert m["config"]["data"]["splits"] == "site" and m["key"]["variant"] == "splits=site,epochs=2"
    preds = pd.read_csv(d / "predictions.csv.gz", dtype={"case_id": str})
    val = set(pd.read_csv(site_dir / "splits_0.csv", dtype=str)["val"].dropna())
    assert set(preds.loc[preds["split"] == "val", "case_id"]) == val
    fm = json.loads((fixed.dir(0) / "manifest.json").read_text())
    assert fm["data"]["splits"] == "fixed" and fm["data"]["split_folder"] == "splits/tcga_toy"
    # a report with both: two cells, never one; the site view shows the site run as its variant without the axis
    ev = Evaluation(sited.root / "results", settings=sited.settings)
    fixed_cell = ev.cell("snn", "tcga_toy", (("epochs", "2"),))
    site_cell = ev.cell("snn", "tcga_toy", (("epochs", "2"), ("splits", "site")))
    assert fixed_cell is not None and site_cell is not None
    assert fixed_cell.seeds[0].folds[0].run.path == fixed.dir(0)
    assert site_cell.seeds[0].folds[0].run.path == d
    t = table1(ev, Options(), (("epochs", "2"),))
    assert any("splits=site" in n for n in t.notes)
    view = open_store(sited.root / "results", sited.settings, splits="site")
    assert view.cell("snn", "tcga_toy", (("epochs", "2"),)).seeds[0].folds[0].run.path == d
    assert not view.excluded


def test_audit_of_the_site_splits_finds_no_shared_site(sited, monkeypatch, capsys):
    from bench.data.audit import audit_cohort

    fixed = audit_cohort(load_cohort(sited.settings, sited.cohort))
    site = audit_cohort(load_cohort(sited.settings, sited.cohort, splits="site"))
    assert (fixed.sites["shared_sites"] > 0).all()  # 10 sites dealt in turn: every fixed fold shares sites
    assert (site.sites["shared_sites"] == 0).all() and (site.sites["val_patients_from_shared_sites"] == 0).all()
    monkeypatch.setattr(sys, "argv", ["bench", "data", "audit", "--cohort", "TOY", "--splits", "site", "-f", "json"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 0
    assert [r["shared_sites"] for r in json.loads(capsys.readouterr().out)[0]["sites"]] == [0] * 5
