"""`bench data coverage`: a feature folder's coverage of a cohort per fold, from file headers only."""

from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from feature_trees import LAYOUTS, add_other_cohort, build_tree, edit_table, files_folder, write_h5
from test_import_hardening import _cli

from bench._core.errors import BenchError
from bench.data.cohort import load_cohort
from bench.data.features.importer import feature_coverage, import_features

MISSING = (3, 7)  # patients without any file; patient 10 lacks its second slide only


def _release(toy, tmp_path, layout="trident"):
    co = load_cohort(toy.settings, "toy")
    skip = (*(s for i in MISSING for s in co.slides[i]), co.slides[10][1])
    root = tmp_path / "release"
    build_tree(co, root, layout, dim=16, skip=skip)
    stray = files_folder(root, layout) / "TCGA-ZZ-0001-01Z-00-DX1.h5"
    write_h5(stray, np.zeros((2, 16), np.float32))
    return co, root, skip, stray


def _expected_folds(toy, lacking: set[str]) -> list[dict]:
    """Per fold and split, from the split files and the table (pandas), independently of the code under test."""
    table = pd.read_csv(toy.settings.data_dir / "genomics" / "mutsig" / "tcga_toy_all_clean.csv")
    slides = table.groupby("case_id")["slide_id"].apply(lambda s: [x.removesuffix(".svs") for x in s]).to_dict()
    out = []
    for k in range(5):
        split = pd.read_csv(toy.settings.splits_dir / "tcga_toy" / f"splits_{k}.csv")
        for part in ("train", "val"):
            ids = split[part].dropna().tolist()
            out.append({"fold": k, "split": part,
                        "patients_covered": sum(not (set(slides[c]) & lacking) for c in ids), "patients": len(ids),
                        "slides_covered": sum(s not in lacking for c in ids for s in slides[c]),
                        "slides": sum(len(slides[c]) for c in ids)})
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_coverage_per_fold_matches_the_split_files(toy, tmp_path, layout):
    co, root, skip, stray = _release(toy, tmp_path, layout)
    cov = feature_coverage(co, root)
    assert cov.folds() == _expected_folds(toy, set(skip))
    rec = cov.record()
    assert rec["missing_patients"] == [co.case_ids[3], co.case_ids[7], co.case_ids[10]]
    assert rec["missing_slides"] == list(skip)
    assert rec["unmatched_files"] == [str(stray)]
    assert (rec["patients_covered"], rec["patients"]) == (co.n_patients - 3, co.n_patients)
    assert (rec["slides_covered"], rec["slides"]) == (co.n_slides - len(skip), co.n_slides)
    n_files = (co.n_slides - len(skip)) * (2 if layout == "clam" else 1) + 1  # CLAM: h5_files/ and pt_files/; stray
    kind, encoder = {"flat": ("flat", None), "clam": ("flat", None)}.get(layout, (layout, "uni_v1"))
    assert (rec["encoder"], rec["dim"], rec["layout"], rec["files"]) == (encoder, 16, kind, n_files)


def test_coverage_reads_headers_only(toy, tmp_path, monkeypatch):
    co, root, _, _ = _release(toy, tmp_path)

    def no_read(*args, **kwargs):
        raise AssertionError("feature values read")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", no_read)
    monkeypatch.setattr(h5py.Dataset, "read_direct", no_read)
    assert feature_coverage(co, root).dim == 16


def test_coverage_cli_text_markdown_json(toy, tmp_path):
    co, root, skip, stray = _release(toy, tmp_path)
    code, out, err = _cli("data", "coverage", "--cohort", "toy", "--features", str(root), "--shown", "2")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Feature coverage — TOY"
    n, s = co.n_patients, co.n_slides
    assert re.fullmatch(rf"all\s+all\s+{n - 3}/{n}\s+{s - len(skip)}/{s}", lines[5])
    folder = files_folder(root, "trident")
    assert lines[-4:] == [
        f"* Folder {folder} (trident layout): encoder uni_v1, 16-d, {s - len(skip) + 1} feature file(s) .h5.",
        f"* Missing patients (3): {co.case_ids[3]}, {co.case_ids[7]} +1 more.",
        f"* Missing slides ({len(skip)}): {skip[0]}, {skip[1]} +{len(skip) - 2} more.",
        f"* Files matching no slide (1): {stray.name}."]
    code, md, _ = _cli("data", "coverage", "--cohort", "toy", "--features", str(root), "--format", "markdown")
    assert code == 0 and md.startswith("### Feature coverage — TOY\n")
    assert re.search(rf"^\| all\s+\| all\s+\| {n - 3}/{n}\s+\| {s - len(skip)}/{s}\s+\|$", md, re.M)
    code, js, _ = _cli("data", "coverage", "--cohort", "toy", "--features", str(root), "--format", "json")
    assert code == 0
    [rec] = json.loads(js)
    assert rec == json.loads(json.dumps(feature_coverage(co, root).record()))
    assert rec["missing_slides"] == list(skip)  # all of them in JSON


def test_coverage_of_all_cohorts(toy, tmp_path):
    oth = add_other_cohort(toy.settings)
    shutil.copytree(toy.settings.splits_dir / "tcga_toy", toy.settings.splits_dir / "tcga_oth")
    for f in (toy.settings.splits_dir / "tcga_oth").glob("splits_*.csv"):
        f.write_text(f.read_text().replace("TCGA-TY-", "TCGA-OT-"))
    co, root, skip, stray = _release(toy, tmp_path, layout="flat")
    oth_co = load_cohort(toy.settings, "oth")
    assert oth_co.case_ids == oth
    write_h5(root / f"{oth_co.slides[0][0]}.h5", np.zeros((2, 16), np.float32))
    code, js, err = _cli("data", "coverage", "--features", str(root), "--format", "json")
    assert (code, err) == (0, "")
    recs = {r["cohort"]: r for r in json.loads(js)}
    assert recs["tcga_oth"]["slides_covered"] == 1 and recs["tcga_toy"]["slides_covered"] == co.n_slides - len(skip)
    # a file of one cohort is not "matching no slide" when another cohort is shown
    assert recs["tcga_oth"]["unmatched_files"] == recs["tcga_toy"]["unmatched_files"] == [str(stray)]
    code, _, err = _cli("data", "coverage", "--cohort", "all", "--features", str(tmp_path / "nothing"))
    assert code == 2 and err.strip().splitlines() == [f"error: feature folder {tmp_path / 'nothing'} does not exist"]
    write_h5(tmp_path / "other" / "x.h5", np.zeros((2, 4), np.float32))
    code, _, err = _cli("data", "coverage", "--features", str(tmp_path / "other"))
    assert code == 2 and err.strip().splitlines() == [
        f"error: 0 of 1 feature files in {tmp_path / 'other'} match a slide of any cohort (OTH, TOY); name the files "
        "by slide id (TCGA-XX-XXXX-01Z-00-DX1[.<UUID>].h5)"]


def test_coverage_names_ambiguities_without_failing(toy, tmp_path):
    co, root, _, _ = _release(toy, tmp_path, layout="flat")
    sid = co.slides[4][0]
    write_h5(root / f"{sid.split('.')[0]}.h5", np.zeros((2, 16), np.float32))
    cov = feature_coverage(co, root)
    assert cov.match.ambiguities == [
        f"slide {sid} matches 2 feature files of different names ({root / f'{sid}.h5'} and "
        f"{root / (sid.split('.')[0] + '.h5')}); keep one and move the others out of the feature folder"]
    code, out, _ = _cli("data", "coverage", "--cohort", "toy", "--features", str(root))
    assert code == 0 and out.splitlines()[-1] == f"* Ambiguous: {cov.match.ambiguities[0]}."
    with pytest.raises(BenchError, match=re.escape(cov.match.ambiguities[0])):
        import_features(co, root, tmp_path / "s.h5", allow_missing=True)


def test_import_prints_the_coverage_first(toy, tmp_path):
    co, root, skip, _ = _release(toy, tmp_path)
    code, out, err = _cli("data", "import", "--cohort", "toy", "--features", str(root), "--allow-missing-slides")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Feature coverage — TOY"
    dest = toy.root / "features" / "tcga_toy" / "uni_v1.h5"  # the store is named after the encoder folder
    wrote = next(i for i, ln in enumerate(lines) if ln.startswith(f"wrote {dest}: "))
    # patient 10 is dropped whole: its first slide is not imported either
    assert lines[wrote].startswith(f"wrote {dest}: {co.n_slides - len(skip) - 1} slides")
    assert lines.index("* Missing patients (3): " + ", ".join(co.case_ids[i] for i in (3, 7, 10)) + ".") < wrote


def test_coverage_with_slides_dx(toy, tmp_path):
    edit_table(toy.settings, lambda df: df.assign(slide_id=df["slide_id"].str.replace(
        "TCGA-TY-0000-01Z-00-DX2.", "TCGA-TY-0000-01Z-00-TS1.", regex=False)))
    co = load_cohort(toy.settings, "toy")
    build_tree(co, tmp_path / "f", "flat")
    rec = feature_coverage(co, tmp_path / "f", slides="dx").record()
    assert (rec["selection"], rec["slides"], rec["slides_covered"]) == ("dx", co.n_slides - 1, co.n_slides - 1)
    assert rec["skipped_slides"] == ["TCGA-TY-0000-01Z-00-TS1.TOY00001"] and rec["unmatched_files"] == []
    code, out, _ = _cli("data", "coverage", "--cohort", "toy", "--features", str(tmp_path / "f"), "--slides", "dx")
    assert code == 0 and ("* Diagnostic slides only (--slides dx): 1 other slide(s) with a file left out; 0 "
                          "patient(s) without a diagnostic slide.") in out.splitlines()
