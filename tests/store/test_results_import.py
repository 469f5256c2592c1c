"""`bench results import`: checked imports of outside predictions; MCAT's published numbers as known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench._core.config import load_settings
from bench._core.errors import BenchError
from bench.data.cohort import load_cohort
from bench.report.evaluation import Evaluation
from bench.report.render import Mark
from bench.report.tables import Options, format_p, table1, table2
from bench.store.results_import import import_predictions

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "data" / "reference_results"
MCAT = "MCATsm_nll_surv_a0.0_5foldcv_gc32_concat"


def _toy_predictions(toy, risk_sign: float = -1.0, epochs: int = 1) -> pd.DataFrame:
    """Validation predictions of every fold of the toy cohort with risk = sign * time (+ epoch noise)."""
    co = load_cohort(toy.settings, toy.cohort)
    frames = []
    for k, split in enumerate(co.splits):
        for e in range(1, epochs + 1):
            frames.append(pd.DataFrame({
                "case_id": [co.case_ids[i] for i in split.val], "fold": k, "epoch": e,
                "risk": risk_sign * co.time[split.val] + (e - 1) * np.arange(len(split.val)),
                "survival_months": co.time[split.val], "censorship": co.censorship[split.val].astype(int)}))
    return pd.concat(frames, ignore_index=True)


def _row(table, label):
    return next(row for row in table.blocks[0].rows if row[1] == label)


def test_import_then_tabulate(toy, tmp_path):
    f = tmp_path / "preds.csv"
    _toy_predictions(toy).to_csv(f, index=False)
    rep = import_predictions(toy.settings, f, method="outside", cohort="toy", title="Outside model",
                             modality="multimodal", genomics_build="mutsig", pathology="real")
    assert sorted(rep.folds) == [0, 1, 2, 3, 4] and sum(rep.folds.values()) == 100
    manifest = json.loads((rep.paths[0] / "manifest.json").read_text())
    assert manifest["imported"]["rows"] == 20 and manifest["data"]["pathology"]["kind"] == "real"
    assert manifest["method"]["title"] == "Outside model" and manifest["epochs"][0]["val_cindex"] == 1.0
    ev = Evaluation(toy.settings.results_dir)
    t = table1(ev, Options())
    toy_col = t.blocks[0].headers.index("TOY")
    # the only row with real pathology: a group of one is not ranked
    assert _row(t, "Outside model")[toy_col] == Mark("1.0000 ± 0.0000", None)
    assert any("Imported predictions" in n and "Outside model" in n for n in t.notes)
    t2 = table2(ev, Options())
    row = next(r for r in t2.blocks[0].rows if r[0] == "Outside model")
    assert row[t2.blocks[0].headers.index("TOY fold-safe")] == "n/a"  # no training predictions were imported


def test_import_epochs_and_cli(toy, tmp_path):
    from bench.cli import app

    f = tmp_path / "preds.csv"
    _toy_predictions(toy, epochs=2).to_csv(f, index=False)
    res = CliRunner().invoke(app, ["results", "import", str(f), "--method", "snn", "--cohort", "TOY",
                                   "--variant", "epochs=2"])
    assert res.exit_code == 0, res.output
    assert "imported 200 rows" in res.output and "(epochs=2)" in res.output
    ev = Evaluation(toy.settings.results_dir)
    best, last = ev.cell("snn", "tcga_toy", (("epochs", "2"),), "best-val"), ev.cell(
        "snn", "tcga_toy", (("epochs", "2"),), "last")
    assert best.summary().mean == 1.0 and last.summary().mean < 1.0  # epoch 2 risks are perturbed
    res = CliRunner().invoke(app, ["tables", "--table", "1", "--variant", "epochs=2", "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert "snn,epochs=2,TOY,best-val,cindex,1.0," in res.output


def test_import_refuses_rows_that_do_not_match(toy, tmp_path):
    df = _toy_predictions(toy)
    wrong_fold = df.copy()
    wrong_fold.loc[0, "fold"] = 1  # a fold-0 val patient claimed for fold 1
    f = tmp_path / "bad.csv"
    wrong_fold.to_csv(f, index=False)
    with pytest.raises(BenchError, match=r"1 row\(s\) do not match.*row 2: patient TCGA-TY-\d+ is not a val patient "
                                         r"of fold 1"):
        import_predictions(toy.settings, f, method="outside", cohort="toy")
    assert not (toy.settings.results_dir / "outside").exists()  # nothing written

    wrong_time = df.copy()
    wrong_time.loc[3, "survival_months"] += 1.0
    wrong_time.loc[5, "case_id"] = "TCGA-XX-9999"
    wrong_time.to_csv(f, index=False)
    with pytest.raises(BenchError, match=r"2 row\(s\).*row 5: patient .* has survival_months.*row 7: patient "
                                         r"TCGA-XX-9999 is not in the TOY table"):
        import_predictions(toy.settings, f, method="outside", cohort="toy")

    rep = import_predictions(toy.settings, f, method="outside", cohort="toy", drop_unmatched=True)
    assert len(rep.dropped) == 2 and sum(rep.folds.values()) == 98
    manifest = json.loads((rep.paths[0] / "manifest.json").read_text())
    assert len(manifest["imported"]["dropped_rows"]) == 2  # both dropped rows belong to fold 0
    with pytest.raises(BenchError, match="already holds a run"):
        import_predictions(toy.settings, f, method="outside", cohort="toy", drop_unmatched=True)


def test_import_refuses_bad_files(toy, tmp_path):
    f = tmp_path / "x.csv"
    pd.DataFrame({"case_id": ["a"], "fold": [0], "risk": [1.0]}).to_csv(f, index=False)
    with pytest.raises(BenchError, match="lacks column"):
        import_predictions(toy.settings, f, method="outside", cohort="toy")
    df = _toy_predictions(toy)
    pd.concat([df, df.iloc[[0]]]).to_csv(f, index=False)
    with pytest.raises(BenchError, match="appears twice"):
        import_predictions(toy.settings, f, method="outside", cohort="toy")
    with pytest.raises(BenchError, match="bad --variant"):
        df.to_csv(f, index=False)
        import_predictions(toy.settings, f, method="outside", cohort="toy", variant="not a variant")


# ----------------------------------------------------------------------------------------------
# Known answers: MCAT's published per-patient predictions and summaries


@pytest.fixture(scope="module")
def mcat_store(tmp_path_factory):
    settings = load_settings(ROOT)
    tmp = tmp_path_factory.mktemp("mcat")
    preds = pd.read_csv(REFERENCE / "mcat_iccv2021_val_predictions.csv.gz", dtype={"case_id": str})
    preds = preds[preds["config"] == MCAT].drop(columns="config")
    f = tmp / "mcat.csv"
    preds.to_csv(f, index=False)  # all five cohorts in one file: its `cohort` column selects the rows
    results = tmp / "results"
    for cohort in ("BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC"):
        rep = import_predictions(settings, f, method="mcat_reference", cohort=cohort, results=results,
                                 title="MCAT (published predictions)", modality="multimodal",
                                 genomics_build="mcat_sig", pathology="real")
        assert rep.skipped_other_cohorts > 0 and sorted(rep.folds) == [0, 1, 2, 3, 4]
    return Evaluation(results)


def test_known_answer_cindex_and_logrank(mcat_store):
    published = pd.read_csv(REFERENCE / "cindex" / f"{MCAT}.csv").set_index("Project")
    t1, t2 = table1(mcat_store, Options()), table2(mcat_store, Options())
    f1 = t1.frame[t1.frame["method"] == "mcat_reference"].set_index("cohort")
    f2 = t2.frame[(t2.frame["method"] == "mcat_reference") & (t2.frame["convention"] == "paper")].set_index("cohort")
    row = _row(t1, "MCAT (published predictions)")
    for cohort in ("BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC"):
        pub = published.loc[cohort.lower()]
        assert f1.loc[cohort, "mean"] == pytest.approx(pub["Val C-Index (Mean)"], abs=1e-12)
        assert f1.loc[cohort, "std"] == pytest.approx(pub["Val C-Index (STD)"], abs=1e-12)
        assert row[t1.blocks[0].headers.index(cohort)].text == (
            f"{pub['Val C-Index (Mean)']:.4f} ± {pub['Val C-Index (STD)']:.4f}")
        assert f2.loc[cohort, "p"] == pytest.approx(pub["P-Value"], rel=1e-9)
    assert row[t1.blocks[0].headers.index("BLCA")].text == "0.6243 ± 0.0342"
    p_row = next(r for r in t2.blocks[0].rows if r[0] == "MCAT (published predictions)")
    assert p_row[t2.blocks[0].headers.index("BLCA median")] == format_p(0.0008422345714155) == "8.4e-4"
    overall = np.mean([published.loc[c, "Val C-Index (Mean)"] for c in ("blca", "brca", "gbmlgg", "luad", "ucec")])
    assert row[t1.blocks[0].headers.index("Overall")].text == f"{overall:.4f}"


def test_known_answer_pooled_cindex(mcat_store):
    published = pd.read_csv(REFERENCE / "cindex" / f"{MCAT}.csv").set_index("Project")
    for cohort in ("blca", "gbmlgg"):
        s = mcat_store.cell("mcat_reference", f"tcga_{cohort}").summary("pooled", n_resamples=100)
        assert s.mean == pytest.approx(published.loc[cohort, "C-Index (All)"], abs=1e-12)
        assert s.low < s.mean < s.high
