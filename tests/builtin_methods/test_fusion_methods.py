"""Known-answer tests of the fusion baselines and their shared blocks: batch splitting, bilinear and
Kronecker fusion (Porpoise, GPDBN), MFB (HFBSurv), M3IF."""

from __future__ import annotations

import torch
from method_inputs import (
    _batch,
    _build,
    _dims,
    dims,
    make_batch,
)

from bench.api import get_method
from methods.fusion import MFB, GatedBilinearFusion, kronecker, merge_outputs, split_batch
from methods.gpdbn import GPDBN
from methods.m3if import M3IF

# ----------------------------------------------------------------------------------------------
# shared blocks


def test_split_batch_cuts_padding_and_merge_restores_order():
    batch = make_batch((3, 5))
    parts = split_batch(batch)
    assert [p.x.shape[1] for p in parts] == [3, 5]
    assert torch.equal(parts[0].x[0], batch.x[0, :3]) and parts[1].case_ids == ["p1"]
    from bench.api import ModelOutput

    out = merge_outputs([ModelOutput(torch.ones(1, 4) * i, aux={"a": torch.tensor(float(i))}) for i in (1, 3)])
    assert out.logits[:, 0].tolist() == [1.0, 3.0] and float(out.aux["a"]) == 2.0


def test_bilinear_fusion_shapes_and_option():
    fusion = GatedBilinearFusion(256, 256, 8, 8, 256)
    assert sum(p.numel() for p in fusion.parameters()) == 396224  # 2 x (8224 + 16416 + 1056) + 279040 + 65792
    assert fusion(torch.randn(3, 256), torch.randn(3, 256)).shape == (3, 256)
    model = _build("mcat", _dims(), fusion="bilinear").eval()
    with torch.no_grad():
        assert model(_batch([4, 7])).logits.shape == (2, 4)


def test_kronecker_with_appended_one_is_33_by_33():
    o1, o2 = torch.randn(2, 32), torch.randn(2, 32)
    k = kronecker(o1, o2, append_one=True).view(2, 33, 33)
    assert torch.allclose(k[:, :32, :32], o1[:, :, None] * o2[:, None, :])
    assert torch.allclose(k[:, :32, 32], o1) and torch.allclose(k[:, 32, :32], o2)
    assert torch.all(k[:, 32, 32] == 1)
    assert kronecker(o1, o2).shape == (2, 1024)  # GPDBN: no appended 1


# ----------------------------------------------------------------------------------------------
# Porpoise / GPDBN


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


# ----------------------------------------------------------------------------------------------
# HFBSurv


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


# ----------------------------------------------------------------------------------------------
# M3IF


def test_m3if_sequence_and_auxiliary_heads():
    torch.manual_seed(0)
    model = M3IF(dims(), dim=16, heads=4, ffn=8, patch_hidden=8, head_hidden=4)
    batch = make_batch((7,))
    assert model.tokens(batch).shape == (1, 2 + 6 + 7, 16)
    model.train()
    assert set(model(batch).aux) == {"genomic", "pathology"}
    model.eval()
    assert model(batch).aux == {}
