"""Known-answer tests of SurvPath: its attention mask, its genomic tokens (signature groups, transcriptomic
pathways, a GMT file) and the official zero-padding option."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from method_inputs import (
    GROUPS,
    DimsWithColumns,
    _ucec_dims,
    dims,
    make_batch,
)

from bench._core.errors import BenchError
from bench.api import get_method
from bench.data.cohort import GROUP_NAMES
from methods.survpath import PathwayPatchAttention, SurvPath, pathway_tokens, read_gmt


def test_survpath_attention_mask_pattern():
    torch.manual_seed(0)
    attn = PathwayPatchAttention(dim=8, dim_head=4)
    g, p = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    mask = torch.tensor([[True, True, True, True, False]])  # the last patch is padding
    out_g, out_p, (a_g, a_p) = attn(g, p, mask, return_attention=True)
    assert a_g.shape == (1, 3, 8) and a_p.shape == (1, 5, 3)  # pathways see 3 + 5 keys, patches only 3
    assert torch.allclose(a_g.sum(-1), torch.ones(1, 3)) and torch.all(a_g[..., -1] == 0)
    # Changing patch 1 changes the pathway outputs and patch 1's own output, but no other patch's output.
    p2 = p.clone()
    p2[0, 1] = torch.randn(8)  # (a constant shift would vanish in the LayerNorm)
    out_g2, out_p2, _ = attn(g, p2, mask)
    assert not torch.allclose(out_g, out_g2)
    assert not torch.allclose(out_p[0, 1], out_p2[0, 1])
    assert torch.allclose(out_p[0, [0, 2, 3]], out_p2[0, [0, 2, 3]])
    # A padded patch changes nothing real.
    p3 = p.clone()
    p3[0, 4] = torch.randn(8)
    out_g3, out_p3, _ = attn(g, p3, mask)
    assert torch.allclose(out_g, out_g3) and torch.allclose(out_p[0, :4], out_p3[0, :4])
    # Changing a pathway token changes every output.
    g2 = g.clone()
    g2[0, 0] = torch.randn(8)
    _, out_p4, _ = attn(g2, p, mask)
    assert not torch.allclose(out_p[0, :4], out_p4[0, :4])


def test_survpath_default_tokens_are_the_six_signature_groups():
    torch.manual_seed(0)
    model = SurvPath(dims(), dim=16, dim_head=8)
    assert [t.name for t in model.tokens] == list(GROUP_NAMES)
    assert [net[0][0].in_features for net in model.token_nets] == list(GROUPS)
    batch = make_batch((4, 6))
    assert [v.shape[1] for v in model.token_inputs(batch)] == list(GROUPS)
    model.eval()
    out = model(batch, return_attention=True)
    assert out.logits.shape == (2, 4) and out.extras["attention"][0].shape == (2, 6, 6 + 6)


def test_survpath_official_zero_padding_option():
    torch.manual_seed(0)
    model = SurvPath(dims(), dim=16, dim_head=8, train_zero_pad=10)
    batch = make_batch((4,))
    x, mask = model._patches(batch)
    assert x.shape[1] == 10 and bool(mask.all()) and torch.all(x[0, 4:] == 0)
    model.eval()
    x, mask = model._patches(batch)
    assert x.shape[1] == 4  # evaluation never pads


def test_survpath_says_when_a_cohort_cannot_support_transcriptomic_tokens():
    ucec = _ucec_dims()
    with pytest.raises(BenchError, match=r"has none among .*modalities=all"):
        SurvPath(ucec, modalities="rnaseq")
    # The default (the six signature groups with all their columns) runs on UCEC's CNV/mutation columns.
    assert len(SurvPath(ucec).tokens) == 6
    # Without column names in InputDims the option names the harness change it needs.
    with pytest.raises(BenchError, match=r"InputDims\.omic_columns"):
        SurvPath(dims(), modalities="rnaseq")


def test_survpath_rnaseq_signature_tokens_keep_only_rna_columns():
    cols = ("TP53_cnv", "TP53_rnaseq", "KRAS_rnaseq", "AKT1_rnaseq", "CD4_rnaseq", "GATA3_rnaseq", "IL6_rnaseq",
            "IL6_mut")
    groups = ((0, 1), (2,), (3,), (4,), (5,), (6, 7))
    d = DimsWithColumns(path_dim=8, omic_dim=len(cols), group_sizes=tuple(map(len, groups)), n_bins=4,
                        cohort="tcga_toy", omic_columns=cols, group_columns=groups)
    model = SurvPath(d, modalities="rnaseq", dim=16, dim_head=8)
    assert [t.columns for t in model.tokens] == [(1,), (2,), (3,), (4,), (5,), (6,)]
    omic = torch.arange(len(cols), dtype=torch.float32)[None]
    batch = dataclasses.replace(make_batch((3,), omic_dim=len(cols)), omic=omic)
    assert [v.tolist() for v in model.token_inputs(batch)] == [[[1.0]], [[2.0]], [[3.0]], [[4.0]], [[5.0]], [[6.0]]]


def test_survpath_tokens_from_a_gmt_file(tmp_path):
    gmt = tmp_path / "toy.gmt"
    gmt.write_text("PATH_A\tdesc\tTP53\tKRAS\tNOPE1\nPATH_B\t\tNOPE2\tNOPE3\nPATH_C\tx\tIL6\n", encoding="utf-8")
    assert read_gmt(gmt) == {"PATH_A": ["TP53", "KRAS", "NOPE1"], "PATH_B": ["NOPE2", "NOPE3"], "PATH_C": ["IL6"]}
    cols = ("IL6_rnaseq", "KRAS_cnv", "KRAS_rnaseq", "TP53_rnaseq", "TP53_mut")
    toks = pathway_tokens(cols, read_gmt(gmt), "rnaseq")
    assert [(t.name, t.columns, t.genes_defined, t.genes_found) for t in toks] == [
        ("PATH_A", (2, 3), 3, ("KRAS", "TP53")), ("PATH_C", (0,), 1, ("IL6",))]  # PATH_B has no column: dropped
    assert pathway_tokens(cols, read_gmt(gmt), "all")[0].columns == (1, 2, 4, 3)
    d = DimsWithColumns(path_dim=8, omic_dim=len(cols), group_sizes=GROUPS, n_bins=4, cohort="tcga_toy",
                        omic_columns=cols)
    model = SurvPath(d, tokens="gmt", gmt=str(gmt), dim=16, dim_head=8).eval()
    batch = make_batch((3,), omic_dim=len(cols))
    assert model(batch).logits.shape == (1, 4)
    with pytest.raises(BenchError, match=r"none of the 3 pathways"):
        pathway_tokens(("X_rnaseq",), read_gmt(gmt), "rnaseq")
    with pytest.raises(BenchError, match="does not exist"):
        get_method("survpath").check_config({"model": {"tokens": "gmt", "gmt": str(tmp_path / "missing.gmt")}})
    bad = tmp_path / "bad.gmt"
    bad.write_text("ONLY_NAME\n", encoding="utf-8")
    with pytest.raises(BenchError, match=r"bad\.gmt:1"):
        read_gmt(bad)
