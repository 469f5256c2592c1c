"""One source for each hyper-parameter default: the model's ``__init__`` signature.

``tests/api/method_defaults.json`` was written from survbench 0.1, where every default was also
written in ``MethodInfo.hparams``: for every built-in method, the hyper-parameter dict (its repr:
names, order, values and types) and, per cohort and named variant, the variant folder and config
hash. Reading the defaults from the signatures must reproduce all of it exactly: the stored runs'
keys do not move.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench._core.config import config_hash, load_settings, resolve_run_config, variant_name
from bench.api import all_methods, signature_hparams

SNAPSHOT = json.loads((Path(__file__).parent / "method_defaults.json").read_text())
BUILTIN = [m for m in all_methods() if m.source == "survbench"]
COHORTS = ("tcga_blca", "tcga_brca", "tcga_gbmlgg", "tcga_luad", "tcga_ucec")


def test_every_builtin_method_is_in_the_snapshot():
    assert sorted(m.name for m in BUILTIN) == sorted(SNAPSHOT)


@pytest.mark.parametrize("info", BUILTIN, ids=lambda m: m.name)
def test_defaults_come_from_init_and_equal_the_old_metadata(info):
    assert repr(signature_hparams(info.model)) == SNAPSHOT[info.name]["hparams"]
    assert repr(dict(info.hparams)) == SNAPSHOT[info.name]["hparams"]


@pytest.mark.parametrize("info", BUILTIN, ids=lambda m: m.name)
def test_config_hashes_and_variant_folders_unchanged(info):
    # the bundled project's bench.toml (the one the stored runs were made with)
    settings = load_settings(Path(__file__).resolve().parents[2])
    got = {}
    for cohort in COHORTS:
        for name, sets in [("default", {}), *info.variants.items()]:
            config, overrides = resolve_run_config(settings, info, cohort, sets)
            got[f"{cohort}/{name}"] = [variant_name(overrides), config_hash(config)]
    assert got == SNAPSHOT[info.name]["runs"]


def _model(init):
    from bench.api import SurvivalModel

    return type("Toy", (SurvivalModel,), {"__init__": init, "__module__": "toy_plugin"})


def test_signature_rules():
    def init(self, dims, hidden: int = 8, widths: tuple[int, ...] = (4, 2), *args, **kwargs):
        pass

    assert signature_hparams(_model(init)) == {"hidden": 8, "widths": [4, 2]}  # a tuple becomes a list

    def no_default(self, dims, hidden: int):
        pass

    from bench.api import BenchError

    with pytest.raises(BenchError, match=r"__init__ argument 'hidden' has no default"):
        signature_hparams(_model(no_default))


def test_metadata_defaults_of_an_old_plugin_still_register_with_a_warning():
    from bench.api import MethodInfo, get_method, register, unregister

    def init(self, dims, hidden: int = 8):
        pass

    cls = _model(init)
    try:
        with pytest.warns(DeprecationWarning, match=r"MethodInfo\(hparams=\.\.\.\) is deprecated"):
            register(MethodInfo(name="old_style", title="Old", modality="genomics", genomics="all", paper="test",
                                hparams={"hidden": 16}))(cls)
        assert dict(get_method("old_style").hparams) == {"hidden": 16}  # used as given, as survbench 0.1 did
        register(MethodInfo(name="new_style", title="New", modality="genomics", genomics="all", paper="test"))(cls)
        assert dict(get_method("new_style").hparams) == {"hidden": 8}
    finally:
        unregister("old_style")
        unregister("new_style")
