"""Registered metadata of the built-in methods: Table I rows and order, parameter counts at the spec's
sizes, the official fold-score protocols and cohort defaults, and the official initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from method_inputs import (
    ROOT,
    UCEC_GROUPS,
    _build,
    _dims,
)

from bench._core.config import default_run_config, load_settings
from bench.api import get_method
from bench.tools.params import SPEC_BLCA_GROUPS


def test_registered_rows_and_table1_order():
    expected = {"clam_sb": (60, "CLAM-SB", False), "clam_mb": (70, "CLAM-MB", False), "dtfd": (90, "DTFD", True),
                "m3if": (120, "M3IF", True), "gpdbn": (130, "GPDBN", True), "porpoise": (140, "Porpoise", False),
                "hfbsurv": (150, "HFBSurv", True), "survpath": (160, "SurvPath", False)}
    for name, (order, title, inferred) in expected.items():
        info = get_method(name)
        assert (info.order, info.title, info.reimplementation) == (order, title, inferred)
        assert info.reported["BLCA"][0] > 0.5
    assert get_method("survpath").train["alpha"] == 0.5 and get_method("survpath").data["patch_cap"] == 4096
    assert get_method("porpoise").selection == "last" and get_method("dtfd").tie == "latest"


@pytest.mark.parametrize(("name", "groups", "expected"), [
    ("transmil", SPEC_BLCA_GROUPS, 2.67e6),
    ("mcat", SPEC_BLCA_GROUPS, 4.49e6),
    ("mcat", UCEC_GROUPS, 3.66e6),
    ("motcat", SPEC_BLCA_GROUPS, 4.23e6),
    ("cmta", SPEC_BLCA_GROUPS, 8.26e6),
    ("cmta", UCEC_GROUPS, 4.94e6),
])
def test_parameter_counts_match_spec(name, groups, expected):
    model = _build(name, _dims(groups, path_dim=1024, cohort="tcga_blca"))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - expected) / expected < 0.005, f"{name}: {n} parameters vs spec {expected:.0f}"


def test_metadata_protocols():
    t, m, o, c = (get_method(n) for n in ("transmil", "mcat", "motcat", "cmta"))
    assert (t.selection, t.tie, dict(t.train), t.order, t.modality) == ("best-val", "latest", {}, 80, "pathology")
    assert t.reimplementation
    assert (m.selection, m.order, m.genomics) == ("last", 110, "groups")
    assert (o.selection, o.tie, o.order) == ("best-val", "earliest", 170)
    assert (c.selection, c.tie, c.order) == ("best-val", "earliest", 180)
    for info in (m, o):
        keys = ("optimizer", "lr", "weight_decay", "grad_accum", "epochs", "sampler")
        assert {k: info.train[k] for k in keys} == {"optimizer": "adam", "lr": 2e-4, "weight_decay": 1e-5,
                                                    "grad_accum": 32, "epochs": 20, "sampler": "balanced"}
    assert {k: c.train[k] for k in ("optimizer", "lr", "momentum", "weight_decay", "epochs", "batch_size", "sampler")} \
        == {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-5, "epochs": 30, "batch_size": 1,
            "sampler": "balanced"}


def test_cohort_defaults_from_official_scripts():
    settings = load_settings(ROOT)
    motcat, cmta = get_method("motcat"), get_method("cmta")
    eps = {co: default_run_config(settings, motcat, f"tcga_{co}")["model"]["ot_reg"]
           for co in ("blca", "brca", "gbmlgg", "luad", "ucec")}
    assert eps == {"blca": 0.05, "brca": 0.1, "gbmlgg": 0.1, "luad": 0.05, "ucec": 0.1}
    lam = {co: default_run_config(settings, cmta, f"tcga_{co}")["model"]["align_weight"]
           for co in ("blca", "brca", "gbmlgg", "luad", "ucec")}
    assert lam == {"blca": 1.0, "brca": 100.0, "gbmlgg": 1.0, "luad": 1e-4, "ucec": 1.0}
    cfg = default_run_config(settings, cmta, "tcga_ucec")
    assert cfg["data"]["patch_cap"] == 0 and cfg["data"]["patch_cap_eval"] is True  # OOM option off, eval-capped


@pytest.mark.parametrize("name", ["attmil", "porpoise"])
def test_mcat_amil_family_keeps_pytorch_default_init_as_officially(name):
    """MCAT's MIL_Attention_FC_surv never calls its initialize_weights helper: every Linear keeps PyTorch's
    default init (drawn in construction order); init=xavier is the recorded alternative."""
    info = get_method(name)
    assert info.hparams["init"] == "default"
    torch.manual_seed(0)
    model = info.build(_dims(), {})
    torch.manual_seed(0)
    first = torch.nn.Linear(16, 512)  # the projector is the first module built
    assert torch.equal(model.fc[0].weight, first.weight) and torch.equal(model.fc[0].bias, first.bias)
    assert all(float(m.bias.detach().abs().sum()) > 0 for m in model.modules() if isinstance(m, torch.nn.Linear))
    torch.manual_seed(0)
    xavier = info.build(_dims(), {"init": "xavier"})
    linears = [m for m in xavier.modules() if isinstance(m, torch.nn.Linear)]
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in linears)
    w = xavier.fc[0].weight.detach()
    assert abs(float(w.std()) - math.sqrt(2 / sum(w.shape))) < 0.05 * math.sqrt(2 / sum(w.shape))
