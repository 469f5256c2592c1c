"""The encoder axis and the split axis in reports: a run on another feature store or on the site splits is
its own variant; `--features NAME` / `--splits site` views select them; a cell never pools stores silently."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from store_builder import add_cell

from bench._core.errors import BenchError
from bench.data.cohort import load_cohort
from bench.data.features import choose_store, describe_store, store_label
from bench.report.evaluation import Evaluation, open_store, provenance, view_axes
from bench.report.tables import Options, table1
from bench.train.runner import plan_run
from bench.train.sweep import SweepSpec, expand

BLCA = "tcga_blca"
# per fold: the per-epoch C-index (one epoch); cell means 1.0, 2/3 and 0.5 tell the cells apart
ONE, TWO_THIRDS, HALF = [[1.0]] * 5, [[2 / 3]] * 5, [[0.5]] * 5


def _set_store(results, method, variant, name, folds=range(5)):
    """Name the feature store in the manifests of a hand-built cell, as `bench run` records it."""
    for k in folds:
        p = results / method / variant / BLCA / "seed0" / f"fold{k}" / "manifest.json"
        m = json.loads(p.read_text())
        m["data"]["pathology"]["file"] = f"{BLCA}/{name}.h5"
        m["data"]["store"] = {"name": name, "encoder": "resnet50", "dim": 1024, "kind": "real"}
        p.write_text(json.dumps(m))


@pytest.fixture
def store(tmp_path):
    """MeanMIL on the default synthetic store (C 1.0), on store `uni` (2/3) and on the site splits (0.5);
    SNN (genomics only, no store) on the fixed splits (1.0)."""
    r = tmp_path / "results"
    add_cell(r, "meanmil", BLCA, ONE, modality="pathology", pathology="synthetic")
    _set_store(r, "meanmil", "default", "synthetic-p128-s0.05-seed0-d1024")
    add_cell(r, "meanmil", BLCA, TWO_THIRDS, overrides={"data.features": "uni"}, modality="pathology",
             pathology="real")
    _set_store(r, "meanmil", "features=uni", "uni")
    add_cell(r, "meanmil", BLCA, HALF, overrides={"data.splits": "site"}, modality="pathology", pathology="synthetic")
    _set_store(r, "meanmil", "splits=site", "synthetic-p128-s0.05-seed0-d1024")
    add_cell(r, "snn", BLCA, ONE)
    return r


def _mean(ev, method, overrides=()):
    cell = ev.cell(method, BLCA, overrides)
    return None if cell is None else cell.summary().mean


def test_each_store_and_split_family_is_its_own_cell(store):
    ev = Evaluation(store)
    assert _mean(ev, "meanmil") == pytest.approx(1.0)
    assert _mean(ev, "meanmil", (("features", "uni"),)) == pytest.approx(2 / 3)
    assert _mean(ev, "meanmil", (("splits", "site"),)) == pytest.approx(0.5)
    t = table1(ev, Options())
    row = t.frame[(t.frame["method"] == "meanmil") & (t.frame["cohort"] == "BLCA")]
    assert row["mean"].tolist() == [pytest.approx(1.0)]  # the default cell only: no pooling with the others
    assert any("features=uni" in n and "splits=site" in n for n in t.notes)  # named as other variants
    assert "Feature store: synthetic-p128-s0.05-seed0-d1024 (every cell with pathology)." in t.notes


def test_features_view_selects_one_store_and_keeps_genomics_only_runs(store):
    ev = Evaluation(store, axes={"features": "uni"})
    assert _mean(ev, "meanmil") == pytest.approx(2 / 3)  # seen as the default variant of this view
    assert _mean(ev, "snn") == pytest.approx(1.0)  # read no store: in every store's view
    assert ev.variants("meanmil") == [()]
    t = table1(ev, Options())
    assert "Feature store: uni (every cell with pathology)." in t.notes


def test_splits_view_selects_the_site_runs(store):
    ev = Evaluation(store, axes={"splits": "site"})
    assert _mean(ev, "meanmil") == pytest.approx(0.5)
    assert _mean(ev, "snn") is None  # SNN has no site-split runs: the view does not borrow fixed-split ones
    assert ev.variants("meanmil") == [()]


def test_a_cell_pooling_two_stores_says_so(store):
    # fold 4 of the default cell re-recorded on another store (as a run from before manifests named stores would be)
    _set_store(store, "meanmil", "default", "resnet50", folds=[4])
    t = table1(Evaluation(store), Options())
    assert ("Feature stores: resnet50 (MeanMIL); synthetic-p128-s0.05-seed0-d1024 (MeanMIL)." in t.notes)
    assert "Cells pooling runs on several feature stores: MeanMIL; show one store with --features NAME." in t.notes


def test_provenance_store_name():
    assert provenance({"data": {"pathology": None}}).store == "none"
    old = {"data": {"pathology": {"kind": "synthetic", "synthetic": True, "file": "tcga_ucec/synthetic-a.h5"}}}
    assert provenance(old).store == "synthetic-a"  # manifests before `data.store`: the file name
    new = {"data": {"pathology": {"kind": "real", "file": "tcga_ucec/x.h5"}, "store": {"name": "uni"}}}
    assert provenance(new).store == "uni"


def test_view_axes():
    assert view_axes() == {} and view_axes("fixed", "synthetic") == {} and view_axes(None, "default") == {}
    assert view_axes("site", "uni") == {"splits": "site", "features": "uni"}
    with pytest.raises(BenchError) as e:
        view_axes("sites")
    assert str(e.value) == "bad --splits 'sites': choose one of fixed, site"


def test_open_store_checks_site_runs_against_the_site_files(toy):
    add_cell(toy.root / "results", "snn", "tcga_toy", HALF, overrides={"data.splits": "site"})
    ev = open_store(toy.root / "results", toy.settings, splits="site")
    assert ev.axes == {"splits": "site"} and not ev.has("snn", "tcga_toy")
    site = toy.root / "splits" / "tcga_toy" / "site"
    assert [p.detail for p in ev.excluded][:1] == [f"cannot check patients: no split file {site}/splits_0.csv in "
                                                   "this project"]


# ----------------------------------------------------------------------------------------------
# Runs on a store: the variant, the config hash, the manifest's record


def _second_store(toy, name="uni"):
    """A copy of the toy's synthetic store under another name (a store `bench run` must not confuse with it)."""
    co = load_cohort(toy.settings, toy.cohort)
    src = choose_store(toy.settings, co, "synthetic").info.path
    dest = src.with_name(f"{name}.h5")
    shutil.copy(src, dest)
    return co, dest


def test_store_label(toy):
    co = load_cohort(toy.settings, toy.cohort)
    default = choose_store(toy.settings, co, "synthetic").info.path
    assert store_label(toy.settings, co, "auto") is None  # no real store: the default synthetic one
    assert store_label(toy.settings, co, "synthetic") is None
    assert store_label(toy.settings, co, default.stem) is None and store_label(toy.settings, co, str(default)) is None
    _second_store(toy, "uni")
    assert store_label(toy.settings, co, "auto") == "uni"  # the one real store
    assert store_label(toy.settings, co, "uni") == "uni"
    _second_store(toy, "ctp")
    with pytest.raises(BenchError) as e:
        store_label(toy.settings, co, "auto")
    assert str(e.value) == ("TOY has several real feature stores (ctp, uni); choose one with --features NAME")


def test_a_run_on_another_store_is_its_own_variant(toy):
    base = plan_run(toy.settings, "meanmil", toy.cohort, epochs=2, folds=[0], features="synthetic")
    _second_store(toy, "uni")
    plan = plan_run(toy.settings, "meanmil", toy.cohort, epochs=2, folds=[0], features="uni")
    assert base.variant == "epochs=2" and plan.variant == "features=uni,epochs=2"
    assert plan.config["data"]["features"] == "uni" and "features" not in base.config["data"]
    assert plan.chash != base.chash and plan.key(0) != base.key(0)
    assert plan.store.info.path.name == "uni.h5"
    # the command it prints makes the same plan again; auto picks the one real store, the same variant
    again = plan_run(toy.settings, "meanmil", toy.cohort, epochs=2, folds=[0], sets={"features": "uni"})
    auto = plan_run(toy.settings, "meanmil", toy.cohort, epochs=2, folds=[0])
    assert (again.variant, again.chash) == (auto.variant, auto.chash) == (plan.variant, plan.chash)
    assert plan.command() == "bench run --method meanmil --cohort TOY --set features=uni,epochs=2"
    # a genomics-only method reads no store: its key does not depend on --features
    snn = [plan_run(toy.settings, "snn", toy.cohort, epochs=2, folds=[0], features=f) for f in ("uni", "synthetic")]
    assert snn[0].variant == snn[1].variant == "epochs=2" and snn[0].chash == snn[1].chash


def test_describe_store(toy):
    co = load_cohort(toy.settings, toy.cohort)
    info = choose_store(toy.settings, co, "synthetic").info
    assert describe_store(info) == {"name": info.path.stem, "encoder": "synthetic", "dim": 32, "kind": "synthetic"}
    anon = dataclasses.replace(info, encoder="", synthetic=False)
    assert describe_store(anon)["encoder"] == "unknown"
    assert describe_store(dataclasses.replace(info, encoder="uni_v2"))["encoder"] == "uni_v2"
    assert describe_store(None) is None


def test_sweep_runs_the_grid_once_per_store(toy):
    _second_store(toy, "uni")
    spec = SweepSpec(methods=["meanmil", "snn"], cohorts=["toy"], folds=[0], epochs=1,
                     features=["synthetic", "uni"])
    tasks = expand(toy.settings, spec)
    got = sorted((t.method, t.variant, t.features) for t in tasks)
    assert got == [("meanmil", "epochs=1", "synthetic"), ("meanmil", "features=uni,epochs=1", "uni"),
                   ("snn", "epochs=1", "synthetic")]
    uni = next(t for t in tasks if t.features == "uni")
    assert uni.command() == "bench run --method meanmil --cohort TOY --folds 0 --seed 0 --epochs 1 --features uni"
    with pytest.raises(BenchError, match="no feature store 'nope' for TOY"):
        expand(toy.settings, dataclasses.replace(spec, features=["nope"]))


# ----------------------------------------------------------------------------------------------
# Every method on any store: built for the store's dimension


@pytest.mark.parametrize("dim", [7, 1536])
def test_every_pathology_method_builds_for_any_dimension(dim):
    import torch

    from bench.api import Batch, InputDims, all_methods

    groups = (3, 4, 5, 6, 7, 5)
    d = InputDims(path_dim=dim, omic_dim=sum(groups), group_sizes=groups, n_bins=4, cohort="tcga_toy")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 12, dim, generator=g)
    batch = Batch(x=x, mask=torch.ones(1, 12, dtype=torch.bool), omic=torch.randn(1, sum(groups), generator=g),
                  groups=[torch.randn(1, s, generator=g) for s in groups], bins=torch.zeros(1, dtype=torch.long),
                  censorship=torch.zeros(1), time=torch.ones(1), index=torch.arange(1), case_ids=["p0"])
    methods = [m for m in all_methods() if m.uses_pathology]
    assert len(methods) >= 15
    for info in methods:
        torch.manual_seed(0)
        model = info.build(d, dict(info.hparams)).eval()
        with torch.no_grad():
            logits = model(batch).logits
        assert logits.shape == (1, 4) and torch.isfinite(logits).all(), info.name


def test_report_commands_of_a_view_carry_its_options(store):
    from bench.cli.report import with_axes

    ev = Evaluation(store, axes={"splits": "site", "features": "uni"})
    cmds = with_axes(["bench run --method snn --cohort BLCA --seed 1", "bench results import FILE --method x"], ev)
    assert cmds == ["bench run --method snn --cohort BLCA --seed 1 --splits site --features uni",
                    "bench results import FILE --method x"]
    assert with_axes(["bench run --method snn --cohort BLCA"], Evaluation(store)) == [
        "bench run --method snn --cohort BLCA"]


def test_compare_in_a_view_names_the_command_with_its_axis(store):
    from bench.report.compare import Side, compare

    ev = Evaluation(store, axes={"splits": "site"})
    with pytest.raises(BenchError) as e:
        compare(ev, Side("meanmil", ()), Side("snn", ()), BLCA)
    assert str(e.value).endswith("make it with: bench run --method snn --cohort BLCA --set splits=site")
    got = compare(Evaluation(store), Side("meanmil", ()), Side("meanmil", (("features", "uni"),)), BLCA,
                  n_resamples=100)
    assert got.diffs["diff"].tolist() == pytest.approx([1 / 3] * 5)  # the two stores, compared as two variants
