"""Real feature releases: layouts (flat, CLAM, <encoder>/, TRIDENT), slide matching by full name or prefix, any D,
--slides dx, and the bad input of real folders (two dimensions, two encoders, non-HDF5 files, another cohort)."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from feature_trees import TRIDENT, add_other_cohort, build_tree, edit_table, file_name, files_folder, write_h5
from test_import_hardening import _cli

from bench._core.errors import BenchError
from bench.api import all_methods
from bench.data.batches import ResidentBags
from bench.data.cohort import load_cohort
from bench.data.features.importer import import_features
from bench.data.features.layouts import discover_layout, match_slides
from bench.data.features.store import read_info, read_slide
from bench.store.predictions import read_manifest
from bench.train.runner import execute, plan_run


def _touch(root: Path, *paths: str) -> None:
    for p in paths:
        write_h5(root / p, np.zeros((2, 4), np.float32))


# ----------------------------------------------------------------------------------------------
# discovery


@pytest.mark.parametrize("files,given,kind,encoder,relative", [
    (["a.h5", "a.pt"], "", "flat", None, "."),
    (["h5_files/a.h5", "pt_files/a.pt", "masks/a.h5"], "", "flat", None, "."),
    (["uni/a.h5"], "", "encoder", "uni", "uni"),
    (["uni/h5_files/a.h5", "patches/a.h5"], "", "encoder", "uni", "uni"),
    (["features_conch_v15/a.h5"], "", "encoder", "conch_v15", "features_conch_v15"),
    ([f"{TRIDENT}/features_uni_v1/a.h5", f"{TRIDENT}/patches/a_patches.h5"], "", "trident", "uni_v1",
     f"{TRIDENT}/features_uni_v1"),
    ([f"{TRIDENT}/features_uni_v1/a.h5", f"{TRIDENT}/patches/a_patches.h5"], TRIDENT, "trident", "uni_v1",
     "features_uni_v1"),
    ([f"{TRIDENT}/features_uni_v1/a.h5"], f"{TRIDENT}/features_uni_v1", "trident", "uni_v1", "."),
])
def test_discover_layout(tmp_path, files, given, kind, encoder, relative):
    _touch(tmp_path, *files)
    root = tmp_path / given if given else tmp_path
    layout = discover_layout(root)
    assert (layout.kind, layout.encoder, layout.relative) == (kind, encoder, relative)
    assert set(layout.files) == {"a"}  # masks/, patches/ (coords and images) are not feature folders


def test_several_encoders_need_encoder(tmp_path):
    _touch(tmp_path, f"{TRIDENT}/features_uni_v1/a.h5", f"{TRIDENT}/features_conch_v15/a.h5", "virchow2/a.h5")
    with pytest.raises(BenchError, match=re.escape(
            f"{tmp_path} holds features of 3 encoders: virchow2 (virchow2), conch_v15 ({TRIDENT}/features_conch_v15), "
            f"uni_v1 ({TRIDENT}/features_uni_v1); choose one with --encoder NAME")):
        discover_layout(tmp_path)
    assert discover_layout(tmp_path, "conch_v15").folder == tmp_path / TRIDENT / "features_conch_v15"
    assert discover_layout(tmp_path, "virchow2").kind == "encoder"
    with pytest.raises(BenchError, match=re.escape(
            f"no features of encoder gigapath in {tmp_path}; encoders found: virchow2 (virchow2), conch_v15")):
        discover_layout(tmp_path, "gigapath")


def test_one_encoder_at_two_magnifications_names_both(tmp_path):
    _touch(tmp_path, f"{TRIDENT}/features_uni_v1/a.h5", "40x_256px_0px_overlap/features_uni_v1/a.h5")
    with pytest.raises(BenchError, match=re.escape(
            f"encoder uni_v1 has features in 2 folders of {tmp_path} ({TRIDENT}/features_uni_v1, "
            "40x_256px_0px_overlap/features_uni_v1); pass --encoder with one of these folders")):
        discover_layout(tmp_path, "uni_v1")
    assert discover_layout(tmp_path, f"{TRIDENT}/features_uni_v1").folder.parent.name == TRIDENT


def test_files_both_direct_and_in_encoder_folders_refused(tmp_path):
    _touch(tmp_path, "a.h5", "uni/a.h5")
    with pytest.raises(BenchError, match=re.escape(
            f"{tmp_path} holds feature files both directly (e.g. a.h5) and in encoder folders (uni); point "
            "--features at one folder of one encoder")):
        discover_layout(tmp_path)


def test_no_feature_files(tmp_path):
    _touch(tmp_path, "patches/a.h5")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BenchError, match=re.escape(f"no feature files (.h5 or .pt) in {tmp_path} or its sub-folders")):
        discover_layout(tmp_path)


def test_encoder_named_by_folder_must_agree(tmp_path):
    _touch(tmp_path, "features_uni/a.h5")
    with pytest.raises(BenchError, match=re.escape(
            f"{tmp_path / 'features_uni'} holds features of encoder uni (by its name), not conch; drop --encoder or "
            "pass --encoder uni")):
        discover_layout(tmp_path / "features_uni", "conch")


# ----------------------------------------------------------------------------------------------
# import from each layout


@pytest.mark.parametrize("naming", ["full", "prefix", "mixed"])
@pytest.mark.parametrize("layout", ["flat", "clam", "encoder", "trident"])
def test_each_layout_imports_exactly_the_cohort_slides(toy_factory, tmp_path, layout, naming):
    toy = toy_factory(n_patients=12)
    co = load_cohort(toy.settings, "toy")
    root = tmp_path / "release"
    truth = build_tree(co, root, layout, naming=naming)
    write_h5(files_folder(root, layout) / "TCGA-ZZ-0001-01Z-00-DX1.h5", np.ones((2, 8), np.float32))  # no slide
    info = import_features(co, root, tmp_path / "uni.h5")
    assert info.slide_ids == [s for sl in co.slides for s in sl]  # every slide, once, in the cohort's order
    for sid, x in truth.items():
        np.testing.assert_allclose(read_slide(info, sid), x, atol=2e-3, rtol=2e-3)
    named = layout in ("encoder", "trident")
    assert info.encoder == ("uni_v1" if named else "unknown") and info.has_coords
    assert info.describe()["encoder"] == info.encoder  # what a run's manifest records
    with h5py.File(info.path, "r") as f:
        assert f.attrs["encoder"] == info.encoder
    expected_layout = {"encoder": "encoder:uni_v1", "trident": f"trident:{TRIDENT}/features_uni_v1"}.get(layout)
    assert info.params.get("layout") == expected_layout
    assert info.source == str(files_folder(root, layout if layout != "clam" else "flat").resolve())


def test_import_of_a_root_of_two_encoders(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    root = tmp_path / "trident_out"
    build_tree(co, root, "trident", encoder="uni_v1", dim=8)
    truth = build_tree(co, root, "trident", encoder="conch_v15", dim=4, seed=1)
    code, out, err = _cli("data", "import", "--cohort", "toy", "--features", str(root))
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        f"error: {root} holds features of 2 encoders: conch_v15 ({TRIDENT}/features_conch_v15), uni_v1 "
        f"({TRIDENT}/features_uni_v1); choose one with --encoder NAME"]
    assert not (toy.root / "features").exists()
    # by the folder's path: the store is still named after the encoder
    code, out, err = _cli("data", "import", "--cohort", "toy", "--features", str(root), "--encoder",
                          f"{TRIDENT}/features_conch_v15")
    assert code == 0, err
    info = read_info(toy.root / "features" / "tcga_toy" / "conch_v15.h5")
    assert (info.encoder, info.dim, info.n_slides) == ("conch_v15", 4, co.n_slides)
    sid = co.slides[0][0]
    np.testing.assert_allclose(read_slide(info, sid), truth[sid], atol=2e-3, rtol=2e-3)


def test_names_match_case_insensitively(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    truth = build_tree(co, tmp_path / "f", "flat")
    for sid in truth:
        (tmp_path / "f" / f"{sid}.h5").rename(tmp_path / "f" / f"{sid.lower()}.svs.h5")
    info = import_features(co, tmp_path / "f", tmp_path / "s.h5")
    assert info.n_slides == co.n_slides


@pytest.mark.parametrize("dim", [768, 1024, 1536, 2560])
def test_any_feature_dimension(toy_factory, tmp_path, dim):
    toy = toy_factory(n_patients=6)
    co = load_cohort(toy.settings, "toy")
    truth = build_tree(co, tmp_path / "r", "trident", dim=dim, encoder="enc")
    info = import_features(co, tmp_path / "r", tmp_path / "s.h5", dtype="float32")
    assert info.dim == dim and read_info(info.path).dim == dim
    for sid, x in truth.items():
        np.testing.assert_array_equal(read_slide(info, sid), x)


# ----------------------------------------------------------------------------------------------
# ambiguities


def test_one_slide_named_by_two_files_is_refused(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "f"
    truth = build_tree(co, feats, "flat")
    sid = co.slides[3][0]
    write_h5(feats / f"{file_name(sid, 'prefix')}.h5", truth[sid])
    dest = tmp_path / "out" / "s.h5"
    with pytest.raises(BenchError, match=re.escape(
            f"slide {sid} matches 2 feature files of different names ({feats / f'{sid}.h5'} and "
            f"{feats / (file_name(sid, 'prefix') + '.h5')}); keep one and move the others out of the feature folder")):
        import_features(co, feats, dest)
    assert not dest.parent.exists()


def test_one_file_for_two_slides_is_refused(toy, tmp_path):
    # patient 0 has two slides; give both the DX1 prefix (two scans of one slide, two UUIDs)
    edit_table(toy.settings, lambda df: df.assign(slide_id=df["slide_id"].str.replace(
        "TCGA-TY-0000-01Z-00-DX2.", "TCGA-TY-0000-01Z-00-DX1.", regex=False)))
    co = load_cohort(toy.settings, "toy")
    a, b = co.slides[0]
    assert a.split(".")[0] == b.split(".")[0] == "TCGA-TY-0000-01Z-00-DX1"
    feats = tmp_path / "f"
    build_tree(co, feats, "flat", skip=(a, b))
    write_h5(feats / "TCGA-TY-0000-01Z-00-DX1.h5", np.zeros((3, 8), np.float32))
    assert match_slides(co, discover_layout(feats).files).ambiguities == [
        f"{feats / 'TCGA-TY-0000-01Z-00-DX1.h5'} matches 2 slides of TOY by its name ({a}, {b}); rename it to the "
        "full slide name"]
    with pytest.raises(BenchError, match=re.escape(f"{feats / 'TCGA-TY-0000-01Z-00-DX1.h5'} matches 2 slides of TOY")):
        import_features(co, feats, tmp_path / "s.h5", allow_missing=True)
    assert not (tmp_path / "s.h5").exists()


# ----------------------------------------------------------------------------------------------
# bad input


def test_two_dimensions_in_one_folder_name_both_files(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "f"
    build_tree(co, feats, "flat", dim=1024)
    odd = co.slides[5][0]
    write_h5(feats / f"{odd}.h5", np.zeros((3, 768), np.float32))
    first = feats / f"{co.slides[0][0]}.h5"
    with pytest.raises(BenchError, match=re.escape(
            f"feature dimension mismatch: {feats / f'{odd}.h5'} has 768-d features, expected 1024 as {first} "
            "(1024-d); all slides must come from one encoder: keep one encoder's files in the folder")):
        import_features(co, feats, tmp_path / "out" / "s.h5")
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_hdf5_is_named(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "f"
    build_tree(co, feats, "trident")
    sid, case = co.slides[2][0], co.case_ids[2]
    bad = files_folder(feats, "trident") / f"{sid}.h5"
    bad.write_text("<html>403 Forbidden</html>")  # what a failed download leaves
    code, out, err = _cli("data", "import", "--cohort", "toy", "--features", str(feats))
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        f"error: {bad} is not an HDF5 file (slide {sid} of patient {case}); re-extract the slide, or move the file "
        "out and use --allow-missing-slides"]
    assert not (toy.root / "features").exists()  # nothing half-written


def test_a_folder_of_another_bundled_cohort_is_named(toy, tmp_path):
    add_other_cohort(toy.settings)  # tcga_oth: the same patients under site OT
    co = load_cohort(toy.settings, "toy")
    feats = tmp_path / "f"
    for sl in co.slides[:4]:
        for s in sl:
            write_h5(feats / f"{s.replace('TCGA-TY-', 'TCGA-OT-')}.h5", np.zeros((2, 8), np.float32))
    write_h5(feats / "TCGA-QQ-0001-01Z-00-DX1.h5", np.zeros((2, 8), np.float32))
    n = len(list(feats.iterdir()))
    code, out, err = _cli("data", "import", "--cohort", "toy", "--features", str(feats), "--encoder", "uni")
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        f"error: 0 of {n} feature files in {feats} match a slide of TOY; they look like OTH slides ({n - 1} of {n} "
        "name OTH patients): pass --cohort OTH"]
    assert not (toy.root / "features").exists()


def test_a_folder_of_no_known_cohort_says_how_to_name_files(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    write_h5(tmp_path / "f" / "slide_001.h5", np.zeros((2, 8), np.float32))
    with pytest.raises(BenchError, match=re.escape(
            f"0 of 1 feature files in {tmp_path / 'f'} match a slide of TOY (e.g. slide_001); name the files by "
            "slide id (TCGA-XX-XXXX-01Z-00-DX1[.<UUID>].h5)")):
        import_features(co, tmp_path / "f", tmp_path / "s.h5")


# ----------------------------------------------------------------------------------------------
# --slides dx


def _with_frozen_sections(toy) -> None:
    """Patient 1 gets a frozen section (TS1) beside its DX1; patient 2's only slide becomes a frozen section."""
    def edit(df):
        extra = df[df["case_id"] == "TCGA-TY-0001"].assign(slide_id="TCGA-TY-0001-01A-01-TS1.FROZEN1.svs")
        df.loc[df["case_id"] == "TCGA-TY-0002", "slide_id"] = "TCGA-TY-0002-01A-01-TS1.FROZEN2.svs"
        return _insert_after(df, extra)
    edit_table(toy.settings, edit)


def _insert_after(df, extra):
    import pandas as pd

    i = int(df.index[df["case_id"] == extra["case_id"].iloc[0]][-1])
    return pd.concat([df.loc[:i], extra, df.loc[i + 1:]], ignore_index=True)


def test_slides_dx_keeps_diagnostic_slides_only(toy, tmp_path):
    _with_frozen_sections(toy)
    co = load_cohort(toy.settings, "toy")
    assert co.slides[1] == ["TCGA-TY-0001-01Z-00-DX1.TOY00010", "TCGA-TY-0001-01A-01-TS1.FROZEN1"]
    feats = tmp_path / "f"
    truth = build_tree(co, feats, "flat")
    with pytest.raises(BenchError, match=re.escape(
            "1 patient(s) of TOY have no diagnostic slide (-DX) in the table: TCGA-TY-0002; pass "
            "--allow-missing-slides to drop them (recorded in the store) or --slides all")):
        import_features(co, feats, tmp_path / "s.h5", slides="dx")
    info = import_features(co, feats, tmp_path / "s.h5", slides="dx", allow_missing=True)
    dx = [s for sl in co.slides for s in sl if "-DX" in s]
    assert info.slide_ids == dx and info.params["slides"] == "dx"
    assert info.dropped_patients == ["TCGA-TY-0002"]
    bags = ResidentBags(info, co)  # a bag of a --slides dx store is the patient's diagnostic slides
    assert not bags.available[2] and bags.available.sum() == co.n_patients - 1
    np.testing.assert_allclose(bags.bag(1).float().numpy(), truth[co.slides[1][0]], atol=2e-3, rtol=2e-3)
    full = import_features(co, feats, tmp_path / "all.h5")  # the default keeps every slide
    assert full.n_slides == co.n_slides and "slides" not in full.params


def test_slides_option_checked(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    build_tree(co, tmp_path / "f", "flat")
    code, _, err = _cli("data", "import", "--cohort", "toy", "--features", str(tmp_path / "f"), "--slides", "ffpe")
    assert code == 2 and err.strip().splitlines() == [
        "error: bad --slides 'ffpe': all (every slide of the table) or dx (diagnostic slides only, -DX in the slide "
        "name)"]


# ----------------------------------------------------------------------------------------------
# a 1536-d release trains every method


@pytest.mark.slow
def test_a_1536_d_store_trains_every_method_for_one_epoch(toy_factory, tmp_path):
    toy = toy_factory(n_patients=15, dim=1536, patches=4)
    co = load_cohort(toy.settings, "toy")
    build_tree(co, tmp_path / "release", "trident", dim=1536, encoder="uni_v2")
    dest = toy.settings.features_dir / co.name / "uni_v2.h5"
    info = import_features(co, tmp_path / "release", dest)
    assert (info.dim, info.encoder) == (1536, "uni_v2")
    for m in all_methods():
        plan = plan_run(toy.settings, m.name, "toy", folds=[0], epochs=1, features="uni_v2", sets={"grad_accum": 1})
        execute(plan)
        manifest = read_manifest(plan.dir(0))
        assert manifest is not None and manifest["status"] == "complete", m.name
        pathology = manifest["data"]["pathology"]
        if m.uses_pathology:
            assert (pathology["dim"], pathology["encoder"], pathology["kind"]) == (1536, "uni_v2", "real"), m.name
