"""The import paths of survbench 0.1's flat layout keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

# old module -> (a name it exported, the module that defines it now)
OLD = {
    "bench.registry": ("MethodInfo", "bench.api.registry"),
    "bench.batches": ("Batch", "bench.api.model"),
    "bench.config": ("load_settings", "bench._core.config"),
    "bench.errors": ("BenchError", "bench._core.errors"),
    "bench.losses": ("nll_loss", "bench.api.losses"),
    "bench.cohort": ("fit_time_bins", "bench.api.bins"),
    "bench.toy": ("make_toy_project", "bench.data.toy"),
    "bench.features": ("choose_store", "bench.data.features"),
    "bench.features.store": ("StoreInfo", "bench.data.features.store"),
    "bench.features.importer": ("import_features", "bench.data.features.importer"),
    "bench.features.synthetic": ("synthesize", "bench.data.features.synthetic"),
    "bench.survival_metrics": ("uno_cindex", "bench.metrics.survival"),
    "bench.predictions": ("write_run", "bench.store.predictions"),
    "bench.manifest": ("build_manifest", "bench.store.manifest"),
    "bench.locks": ("RunLock", "bench.store.locks"),
    "bench.verify": ("verify_store", "bench.store.verify"),
    "bench.results_import": ("import_predictions", "bench.store.results_import"),
    "bench.engine": ("train_fold", "bench.train.engine"),
    "bench.runner": ("plan_run", "bench.train.runner"),
    "bench.sweep": ("expand", "bench.train.sweep"),
    "bench.evaluation": ("Evaluation", "bench.report.evaluation"),
    "bench.tables": ("build_tables", "bench.report.tables"),
    "bench.table_render": ("render", "bench.report.render"),
    "bench.figures": ("km_figure", "bench.report.figures"),
    "bench.contract": ("run_contract", "bench.tools.contract"),
    "bench.scaffold": ("plan_scaffold", "bench.tools.scaffold"),
    "bench.perf": ("run_perf", "bench.tools.perf"),
    "bench.cli_report": ("tables", "bench.cli.report"),
    "bench.cli_methods": ("check_method", "bench.cli.authoring"),
    "bench.cli_sweep": ("sweep", "bench.cli.sweep"),
}


@pytest.mark.parametrize("old", list(OLD))
def test_old_path_warns_and_forwards(old, monkeypatch):
    name, home = OLD[old]
    parent = old.rpartition(".")[0]
    if parent != "bench":
        # A deprecated parent package warns on its own first import; import it first so that the
        # warning checked below is the submodule's, whatever order the tests run in.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            importlib.import_module(parent)
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"^{old} is deprecated and will be removed in the next release"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(home), name)
    assert name in dir(module)
    with pytest.raises(AttributeError, match="deprecated alias"):
        module.no_such_name  # noqa: B018


def test_the_warning_points_at_the_importing_line(tmp_path):
    script = tmp_path / "plugin.py"
    script.write_text("import warnings\nwarnings.simplefilter('always')\nfrom bench.registry import MethodInfo\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{script}:3: DeprecationWarning: bench.registry is deprecated" in r.stderr
