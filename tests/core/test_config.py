"""bench.toml and --set: every key and value checked, errors name the key."""

import pytest

from bench._core.config import load_settings, parse_sets, variant_name
from bench._core.errors import BenchError


def _toml(tmp_path, text):
    (tmp_path / "bench.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text,pattern", [
    ("[train]\nlrr = 1e-3\n", r"unknown key 'train\.lrr' in .*bench\.toml; valid keys: .*lr"),
    ("[trian]\nlr = 1e-3\n", r"unknown section \[trian\]"),
    ("[train]\noptimizer = 'lion'\n", r"bad value 'lion' for 'train\.optimizer': choose one of sgd, adam"),
    ("[train]\nepochs = 0\n", r"bad value 0 for 'train\.epochs'"),
    ("[data]\nbins = 'all'\n", r"bad value 'all' for 'data\.bins'"),
    ("[run]\nfolds = [0, -1]\n", r"bad value \[0, -1\] for 'run\.folds'"),
    ("[train\n", r"is not valid TOML"),
])
def test_bad_settings_name_the_key(tmp_path, text, pattern):
    with pytest.raises(BenchError, match=pattern):
        load_settings(_toml(tmp_path, text))


def test_defaults_and_overrides(tmp_path):
    s = load_settings(_toml(tmp_path, "[train]\nlr = 0.01\n"))
    assert s["train"]["lr"] == 0.01 and s["train"]["epochs"] == 30 and s["data"]["bins"] == "train"
    assert s.results_dir == tmp_path / "results"


def test_set_parsing_and_variant_names():
    assert parse_sets(["k=9,tau=0.3", "cca=false", "train.lr=1e-4", "name=abc"]) == {
        "k": 9, "tau": 0.3, "cca": False, "train.lr": 1e-4, "name": "abc"}
    with pytest.raises(BenchError, match="write key=value"):
        parse_sets(["k9"])
    assert variant_name({}) == "default"
    assert variant_name({"model.k": 9, "model.cca": False}) == "cca=false,k=9"
    assert variant_name({"model.x": "a" * 80}).startswith("cfg-")
