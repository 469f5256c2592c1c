"""Known-answer tests of the remaining Table I baselines: CLAM, DTFD, Porpoise, M3IF, GPDBN, HFBSurv, SurvPath."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from bench._core.config import load_settings
from bench._core.errors import BenchError
from bench.api import Batch, InputDims, get_method
from bench.data.cohort import GROUP_NAMES, load_cohort
from methods.clam import CLAMMB, CLAMSB
from methods.dtfd import DTFD, pseudo_bags
from methods.fusion import MFB, GatedBilinearFusion, kronecker, merge_outputs, split_batch
from methods.gpdbn import GPDBN
from methods.m3if import M3IF
from methods.survpath import PathwayPatchAttention, SurvPath, pathway_tokens, read_gmt

ROOT = Path(__file__).resolve().parents[1]
GROUPS = (3, 2, 2, 2, 4, 2)


DimsWithColumns = InputDims  # InputDims carries omic_columns / group_columns


def dims(path_dim: int = 8, omic_dim: int = 15, n_bins: int = 4) -> InputDims:
    return InputDims(path_dim=path_dim, omic_dim=omic_dim, group_sizes=GROUPS, n_bins=n_bins, cohort="tcga_toy")


def make_batch(lengths=(5,), dim: int = 8, omic_dim: int = 15, bins=None, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b, n = len(lengths), max(lengths)
    x = torch.zeros(b, n, dim)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, m in enumerate(lengths):
        x[i, :m] = torch.randn(m, dim, generator=g)
        mask[i, :m] = True
    omic = torch.randn(b, omic_dim, generator=g)
    offsets = torch.tensor((0, *GROUPS)).cumsum(0)
    groups = [omic[:, int(offsets[i]):int(offsets[i + 1])] for i in range(len(GROUPS))]
    return Batch(x=x, mask=mask, omic=omic, groups=groups,
                 bins=torch.tensor(bins if bins is not None else [1] * b), censorship=torch.zeros(b),
                 time=torch.ones(b), index=torch.arange(b), case_ids=[f"p{i}" for i in range(b)])


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


# ---------------------------------------------------------------------------------------------- shared helpers


def test_split_batch_cuts_padding_and_merge_restores_order():
    batch = make_batch((3, 5))
    parts = split_batch(batch)
    assert [p.x.shape[1] for p in parts] == [3, 5]
    assert torch.equal(parts[0].x[0], batch.x[0, :3]) and parts[1].case_ids == ["p1"]
    from bench.api import ModelOutput

    out = merge_outputs([ModelOutput(torch.ones(1, 4) * i, aux={"a": torch.tensor(float(i))}) for i in (1, 3)])
    assert out.logits[:, 0].tolist() == [1.0, 3.0] and float(out.aux["a"]) == 2.0


# ---------------------------------------------------------------------------------------------- CLAM


def test_clam_selects_top_and_bottom_k_instances():
    model = CLAMSB(dims(), k_sample=2)
    scores = torch.tensor([0.1, 0.9, 0.3, 0.05, 0.7, 0.2])
    top, bottom = model.select_instances(scores)
    assert sorted(top.tolist()) == [1, 4] and sorted(bottom.tolist()) == [0, 3]
    small = model.select_instances(torch.tensor([0.4]))  # k = min(k_sample, N)
    assert small[0].tolist() == [0] and small[1].tolist() == [0]


def test_clam_instance_loss_uses_the_bins_classifier_and_branch():
    torch.manual_seed(0)
    model = CLAMMB(dims(), k_sample=2)
    batch = make_batch((6,), bins=[2])
    h = model.fc(batch.x)
    a = torch.zeros(1, 6, 4)
    a[0, :, 2] = torch.tensor([0.1, 0.9, 0.3, 0.05, 0.7, 0.2])  # only bin 2's branch carries the ranking
    got = model.instance_loss(h, a, batch.mask, batch.bins)
    inst = torch.cat([h[0, [1, 4]], h[0, [3, 0]]])
    want = nn.functional.cross_entropy(model.instance_classifiers[2](inst), torch.tensor([1, 1, 0, 0]))
    assert torch.allclose(got, want)
    # The aux loss is CLAM's 0.3 instance weight relative to the 0.7 bag weight, and only in training.
    model.train()
    out = model(batch)
    assert set(out.aux) == {"instance"}
    model.eval()
    assert model(batch).aux == {} and model(batch).logits.shape == (1, 4)


def test_clam_mb_logits_come_from_per_bin_pooled_vectors():
    torch.manual_seed(0)
    model = CLAMMB(dims()).eval()
    batch = make_batch((5,))
    out = model(batch)
    h = model.fc(batch.x)
    a = out.extras["attention"]  # [1, N, 4]
    pooled = torch.einsum("bnk,bnh->bkh", a, h)
    want = torch.stack([model.classifiers[c](pooled[:, c])[:, 0] for c in range(4)], dim=1)
    assert torch.allclose(out.logits, want, atol=1e-6)


# ---------------------------------------------------------------------------------------------- DTFD


@pytest.mark.parametrize(("n", "groups", "sizes"), [(10, 4, [3, 3, 2, 2]), (3, 4, [1, 1, 1]), (8, 4, [2, 2, 2, 2])])
def test_dtfd_pseudo_bags_cover_every_patch_once(n, groups, sizes):
    bags = pseudo_bags(n, groups, torch.Generator().manual_seed(1))
    assert [len(b) for b in bags] == sizes
    assert sorted(torch.cat(bags).tolist()) == list(range(n))


@pytest.mark.parametrize("distill", ["afs", "maxs", "maxmins"])
def test_dtfd_tiers_and_deterministic_evaluation(distill):
    torch.manual_seed(0)
    model = DTFD(dims(), hidden=16, attn_hidden=8, distill=distill)
    batch = make_batch((9,))
    model.train()
    out = model(batch)
    assert set(out.aux) == {"tier1"} and out.extras["pseudo_bags"] == 4
    model.eval()
    with torch.no_grad():
        a, b = model(batch).logits, model(batch).logits
    assert torch.equal(a, b)


def test_dtfd_instance_risk_ranks_by_class_activation():
    torch.manual_seed(0)
    model = DTFD(dims(), hidden=4, attn_hidden=2)
    with torch.no_grad():
        model.classifier1.weight.copy_(torch.ones(4, 4))  # higher activation -> higher hazards -> higher risk
    h = torch.tensor([[1.0, 0, 0, 0], [3.0, 0, 0, 0], [2.0, 0, 0, 0]])
    a = torch.full((3, 1), 1 / 3)
    assert torch.argsort(model.instance_risk(h, a), descending=True).tolist() == [1, 2, 0]


# ---------------------------------------------------------------------------------------------- Porpoise / GPDBN


def test_kronecker_with_appended_one_is_33_by_33():
    o1, o2 = torch.randn(2, 32), torch.randn(2, 32)
    k = kronecker(o1, o2, append_one=True).view(2, 33, 33)
    assert torch.allclose(k[:, :32, :32], o1[:, :, None] * o2[:, None, :])
    assert torch.allclose(k[:, :32, 32], o1) and torch.allclose(k[:, 32, :32], o2)
    assert torch.all(k[:, 32, 32] == 1)
    assert kronecker(o1, o2).shape == (2, 1024)  # GPDBN: no appended 1


def test_porpoise_gated_fusion_shapes_and_gate():
    fusion = GatedBilinearFusion(256, 256, 8, 8, out=256).eval()
    assert fusion.encoder1[0].in_features == 33 * 33
    v1, v2 = torch.randn(3, 256), torch.randn(3, 256)
    o1, o2 = fusion.gated(v1, v2)
    assert o1.shape == o2.shape == (3, 32) and fusion(v1, v2).shape == (3, 256)
    with torch.no_grad():  # a zero gate layer halves the reduced vector: sigmoid(0) = 0.5
        fusion.z1.weight.zero_()
        fusion.z1.bias.zero_()
    want = fusion.o1(0.5 * fusion.h1(v1))
    assert torch.allclose(fusion.gated(v1, v2)[0], want)
    model = get_method("porpoise").build(dims(), {"fusion": "concat"})
    assert model(make_batch((4,))).logits.shape == (1, 4)


def test_gpdbn_bilinear_modules_see_the_outer_products():
    torch.manual_seed(0)
    model = GPDBN(dims(), hidden=16, attn_hidden=8, mlp=[12]).eval()
    assert model.inter[0].in_features == 32 * 32 and model.mlp[0].in_features == 32 + 32 + 3 * 20
    batch = make_batch((4,))
    g, p = model.encode(batch)
    fused = torch.cat([g, p, model.inter(kronecker(g, p)), model.intra_g(kronecker(g, g)),
                       model.intra_p(kronecker(p, p))], dim=1)
    assert torch.allclose(model(batch).logits, model.classifier(model.mlp(fused)))


# ---------------------------------------------------------------------------------------------- HFBSurv


def test_mfb_pooling_known_answer():
    mfb = MFB(2, 2, out=2, rank=2, dropout=0.0)
    with torch.no_grad():
        mfb.u.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [2, 0]]))
        mfb.v.weight.copy_(torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 2]]))
        mfb.u.bias.zero_()
        mfb.v.bias.zero_()
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])
    # U x = [1, 2, 3, 2], V y = [3, 3, -1, -2] -> products [3, 6, -3, -4] -> rank sums [9, -7]
    z = torch.tensor([3.0, -7 ** 0.5])
    assert torch.allclose(mfb(x, y), (z / z.norm())[None], atol=1e-6)
    assert torch.allclose(mfb(x, y).norm(), torch.tensor(1.0))


def test_hfbsurv_runs_with_one_patient_and_weights_its_single_pair_by_one():
    model = get_method("hfbsurv").build(dims(), dict(get_method("hfbsurv").hparams))
    model.train()
    out = model(make_batch((5,)))  # batch size 1 in training: no BatchNorm
    assert out.logits.shape == (1, 4) and torch.allclose(out.extras["pair_weights"], torch.ones(1, 1))


# ---------------------------------------------------------------------------------------------- M3IF


def test_m3if_sequence_and_auxiliary_heads():
    torch.manual_seed(0)
    model = M3IF(dims(), dim=16, heads=4, ffn=8, patch_hidden=8, head_hidden=4)
    batch = make_batch((7,))
    assert model.tokens(batch).shape == (1, 2 + 6 + 7, 16)
    model.train()
    assert set(model(batch).aux) == {"genomic", "pathology"}
    model.eval()
    assert model(batch).aux == {}


# ---------------------------------------------------------------------------------------------- SurvPath


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


def _ucec_dims(build: str = "mutsig") -> DimsWithColumns:
    co = load_cohort(load_settings(ROOT), "UCEC", build)
    return DimsWithColumns(path_dim=8, omic_dim=len(co.genomic_columns), group_sizes=co.group_sizes, n_bins=4,
                           cohort=co.name, omic_columns=tuple(co.genomic_columns),
                           group_columns=tuple(tuple(co.groups[g].tolist()) for g in GROUP_NAMES))


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
