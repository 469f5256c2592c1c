"""Known-answer tests of the co-attention family (spec §8-10): MCAT's co-attention, MOTCat's optimal
transport and micro-batches, CMTA's alignment and translation."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from method_inputs import (
    ROOT,
    _batch,
    _build,
    _dims,
)

from bench._core.config import load_settings, resolve_run_config
from bench._core.errors import BenchError
from bench.api import Batch, get_method
from bench.api.losses import nll_loss, risk_from_survival, survival_from_hazards
from methods.cmta import alignment_loss
from methods.coattn import (
    CoAttention,
    OTCoAttention,
    random_chunks,
    survival_mixture_logits,
    unbalanced_sinkhorn,
)

# ----------------------------------------------------------------------------------------------
# MCAT: genomics-guided co-attention


@pytest.mark.parametrize("heads", [1, 2])
def test_coattention_equals_torch_multihead_attention(heads):
    torch.manual_seed(0)
    ca = CoAttention(16, heads=heads)
    mha = torch.nn.MultiheadAttention(16, heads, batch_first=True)
    with torch.no_grad():
        ca.in_proj_bias.normal_()
        mha.in_proj_weight.copy_(ca.in_proj_weight)
        mha.in_proj_bias.copy_(ca.in_proj_bias)
        mha.out_proj.weight.copy_(ca.out_proj.weight)
        mha.out_proj.bias.copy_(ca.out_proj.bias)
    q, k = torch.randn(2, 6, 16), torch.randn(2, 9, 16)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    ours, scores = ca(q, k, k, key_padding_mask=mask)
    ref, weights = mha(q, k, k, key_padding_mask=~mask)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert scores.shape == (2, 6, 9) and bool(torch.isinf(scores[1, :, 5:]).all())
    if heads == 1:  # pre-softmax scores of the single head
        assert torch.allclose(torch.softmax(scores, dim=-1), weights, atol=1e-6)


def test_mcat_queries_are_genomic_tokens():
    model = _build("mcat", _dims()).eval()
    batch = _batch([9])
    with torch.no_grad():
        out = model(batch)
        assert out.extras["coattn"].shape == (1, 6, 9)  # 6 genomic queries over the 9 patches
        h_omic = model.sig_networks(batch.groups)
        h_path = model.wsi_net(batch.x)
        tokens, _ = model.coattn(h_omic, h_path, h_path)
        assert tokens.shape == (1, 6, 256)
        assert torch.allclose(model.head(tokens, h_omic)[0], out.logits, atol=1e-6)
        # keys/values are the patches: permuting them changes nothing; changing a genomic group does
        perm = batch.x[:, torch.randperm(9)]
        assert torch.allclose(model(Batch(**{**batch.__dict__, "x": perm})).logits, out.logits, atol=1e-5)
        assert model.coattn.in_proj_bias.abs().sum() == 0 and model.coattn.out_proj.bias.abs().sum() == 0


# ----------------------------------------------------------------------------------------------
# MOTCat: unbalanced optimal transport


def test_unbalanced_sinkhorn_reproduces_pot_094_entropy_regulariser():
    # Published output of ot.unbalanced.sinkhorn_knopp_unbalanced(a, b, M, 1., 1.) with POT <= 0.9.4
    # (PythonOT/POT issue #691), the POT generation the official MOTCat code ran on.
    plan = unbalanced_sinkhorn(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), reg=1.0, tau=1.0, reg_type="entropy")
    expected = torch.tensor([[0.51122814, 0.18807032], [0.18807032, 0.51122814]], dtype=torch.float64)
    assert plan.dtype == torch.float64
    assert torch.allclose(plan, expected, atol=1e-7)


@pytest.mark.parametrize("reg_type", ["entropy", "kl"])
def test_ot_plan_marginals_against_pot(reg_type):
    g = torch.Generator().manual_seed(1)
    h_path, h_omic = torch.randn(7, 5, generator=g), torch.randn(3, 5, generator=g)
    attn = OTCoAttention(reg=0.1, tau=0.5, reg_type=reg_type)
    _, plan, _ = attn(h_path, h_omic)
    cost = attn.cost(h_path, h_omic)
    m = (cost / cost.max()).double().numpy()
    a, b = np.full(7, 1 / 7), np.full(3, 1 / 3)
    ref_ref = np.ones((7, 3)) if reg_type == "entropy" else None
    ref = ot.unbalanced.sinkhorn_knopp_unbalanced(a, b, m, 0.1, 0.5, reg_type="kl", c=ref_ref)
    assert np.allclose(plan.sum(1).double().numpy(), ref.sum(1), atol=1e-6)  # patch marginal
    assert np.allclose(plan.sum(0).double().numpy(), ref.sum(0), atol=1e-6)  # genomic-token marginal
    assert np.allclose(plan.double().numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("reg_type", ["entropy", "kl"])
def test_ot_plan_solves_the_unbalanced_problem(reg_type):
    # First-order optimality of min <C,P> + eps*R(P) + tau*KL(P1|a) + tau*KL(P^T1|b):
    # C + eps*log(P / ref) + tau*log(P1/a) + tau*log(P^T1/b) = 0 (ref = 1 for entropy, a b^T for kl).
    g = torch.Generator().manual_seed(2)
    cost = torch.rand(6, 4, generator=g, dtype=torch.float64)
    eps, tau = 0.1, 0.5
    plan = unbalanced_sinkhorn(cost, eps, tau, reg_type, max_iter=100000, tol=1e-13)
    a, b = torch.full((6,), 1 / 6, dtype=torch.float64), torch.full((4,), 1 / 4, dtype=torch.float64)
    ref = torch.ones_like(cost) if reg_type == "entropy" else a[:, None] * b[None, :]
    grad = (cost + eps * torch.log(plan / ref) + tau * torch.log(plan.sum(1) / a)[:, None]
            + tau * torch.log(plan.sum(0) / b)[None, :])
    assert grad.abs().max() < 1e-8
    assert not math.isclose(float(plan.sum()), 1.0, rel_tol=1e-3)  # unbalanced: mass is not conserved


def test_pot_regulariser_choice_changes_the_plan_mass():
    g = torch.Generator().manual_seed(3)
    h_path, h_omic = torch.randn(20, 8, generator=g), torch.randn(6, 8, generator=g)
    ent = OTCoAttention(0.1, 0.5, "entropy")(h_path, h_omic)[1]
    kl = OTCoAttention(0.1, 0.5, "kl")(h_path, h_omic)[1]
    assert abs(float(ent.sum()) - float(kl.sum())) > 1e-2


def test_ot_tokens_use_unshifted_patches_and_no_plan_gradient():
    g = torch.Generator().manual_seed(4)
    h_path = torch.randn(9, 5, generator=g).requires_grad_(True)
    h_omic = torch.randn(6, 5, generator=g)
    tokens, plan, dist = OTCoAttention(0.05, 0.5)(h_path, h_omic)
    assert tokens.shape == (6, 5) and plan.shape == (9, 6) and plan.dtype == torch.float32
    assert torch.allclose(tokens, plan.T @ h_path, atol=1e-6)
    assert not plan.requires_grad and not dist.requires_grad
    tokens.sum().backward()  # d(sum P^T H)/dH_ik = sum_j P_ij, whatever H is
    assert torch.allclose(h_path.grad, plan.sum(1, keepdim=True).expand(9, 5), atol=1e-6)


def test_motcat_padded_batch_runs_ot_on_real_patches():
    model = _build("motcat", _dims()).eval()
    batch = _batch([6, 13])
    with torch.no_grad():
        out = model(batch)
    assert [p.shape for p in out.extras["ot_plan"]] == [(6, 6), (13, 6)]


# ----------------------------------------------------------------------------------------------
# MOTCat: micro-batches and the survival mixture


def test_random_chunks_follow_array_split():
    chunks = random_chunks(600, 256, torch.Generator().manual_seed(0))
    assert [len(c) for c in chunks] == [len(c) for c in np.array_split(np.arange(600), 600 // 256 + 1)]
    assert sorted(torch.cat(chunks).tolist()) == list(range(600))
    assert [len(c) for c in random_chunks(3, 1, torch.Generator().manual_seed(0))] == [1, 1, 1]  # no empty chunk


def test_survival_mixture_gives_mean_risk_and_official_loss():
    torch.manual_seed(0)
    chunk_logits = torch.randn(3, 4, requires_grad=True)
    mixed = survival_mixture_logits(chunk_logits)
    s_chunks = survival_from_hazards(torch.sigmoid(chunk_logits))
    assert torch.allclose(survival_from_hazards(torch.sigmoid(mixed[None]))[0], s_chunks.mean(0), atol=1e-6)
    assert torch.allclose(risk_from_survival(survival_from_hazards(torch.sigmoid(mixed[None]))),
                          risk_from_survival(s_chunks).mean(), atol=1e-6)
    for y, c in ((2, 0.0), (1, 1.0)):
        yt, ct = torch.tensor([y]), torch.tensor([c])
        per_chunk = nll_loss(torch.sigmoid(chunk_logits), yt.expand(3), ct.expand(3))
        jensen = per_chunk - nll_loss(torch.sigmoid(mixed)[None], yt, ct)
        assert float(jensen.detach()) >= -1e-6  # log of a mean >= mean of logs
        total = nll_loss(torch.sigmoid(mixed)[None], yt, ct) + jensen  # what the engine adds up
        assert float(total.detach()) == pytest.approx(float(per_chunk.detach()), abs=1e-6)


def test_motcat_micro_batch_eval_is_chunk_mean_and_deterministic():
    model = _build("motcat", _dims(), micro_batch=4).eval()
    batch = _batch([11])
    with torch.no_grad():
        out = model(batch).logits
        assert torch.equal(out, model(batch).logits)
        chunks = random_chunks(11, 4, torch.Generator().manual_seed(int(batch.index[0])))
        assert len(chunks) == 3
        h_bag = model.wsi_net(batch.x[0])
        h_omic = model.sig_networks([g.expand(3, -1) for g in batch.groups])
        tokens = torch.stack([model.coattn(h_bag[idx], h_omic[k])[0] for k, idx in enumerate(chunks)])
        chunk_logits = model.head(tokens, h_omic)[0]
        s_mean = survival_from_hazards(torch.sigmoid(chunk_logits)).mean(0)
    assert torch.allclose(survival_from_hazards(torch.sigmoid(out))[0], s_mean, atol=1e-6)
    model.train()
    aux = model(_batch([11, 5])).aux
    assert set(aux) == {"microbatch_jensen"} and aux["microbatch_jensen"].dim() == 0


def test_motcat_micro_batch_requires_alpha_zero():
    settings = load_settings(ROOT)
    info = get_method("motcat")
    resolve_run_config(settings, info, "tcga_ucec", {"micro_batch": 256})
    with pytest.raises(BenchError, match="alpha"):
        resolve_run_config(settings, info, "tcga_ucec", {"micro_batch": 256, "alpha": 0.5})


# ----------------------------------------------------------------------------------------------
# CMTA


def test_alignment_loss_values_on_hand_made_inputs():
    target = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    pred = torch.tensor([[0.0, 2.0, 5.0, 4.0]], requires_grad=True)
    assert float(alignment_loss(target, pred, "l1").detach()) == pytest.approx(0.75)  # (1 + 0 + 2 + 0) / 4
    assert float(alignment_loss(target, pred, "mse").detach()) == pytest.approx(1.25)  # (1 + 0 + 4 + 0) / 4
    cos = 35 / (math.sqrt(30) * math.sqrt(45))
    assert float(alignment_loss(target, pred, "cos").detach()) == pytest.approx(1 - cos, rel=1e-6)
    p, q = torch.softmax(target.detach(), -1), torch.softmax(pred.detach(), -1)
    kl = float((p * (p / q).log()).sum())
    assert float(alignment_loss(target, pred, "kl").detach()) == pytest.approx(kl, rel=1e-5)
    alignment_loss(target, pred, "l1").backward()
    assert target.grad is None and pred.grad is not None  # the encoder's class token is a stop-gradient target


def test_cmta_alignment_aux_is_weighted_l1_of_class_tokens():
    model = _build("cmta", _dims(), align_weight=2.5).eval()
    with torch.no_grad():
        out = model(_batch([7]))
    e = out.extras
    expected = 2.5 * ((e["p_cls"] - e["p_hat"]).abs().mean() + (e["g_cls"] - e["g_hat"]).abs().mean())
    assert set(out.aux) == {"align"}
    assert float(out.aux["align"]) == pytest.approx(float(expected), rel=1e-6)


def test_cmta_translation_uses_padded_patch_tokens():
    model = _build("cmta", _dims()).eval()
    shapes = {}

    def record(name):
        def hook(module, args, out):
            shapes[name] = (args[0].shape, args[1].shape)
        return hook

    model.p_in_g.register_forward_hook(record("p_in_g"))
    model.g_in_p.register_forward_hook(record("g_in_p"))
    with torch.no_grad():
        model(_batch([10]))  # 10 patches -> a 4 x 4 grid of 16 tokens
    assert shapes["p_in_g"] == ((1, 16, 256), (1, 6, 256))  # queries: padded patch tokens; keys: genomic tokens
    assert shapes["g_in_p"] == ((1, 6, 256), (1, 16, 256))
    assert model.pathomics_encoder.cls.abs().max() < 1e-4 and model.genomics_encoder.cls.abs().max() < 1e-4


def test_cmta_padded_batch_equals_alone():
    model = _build("cmta", _dims()).eval()
    batch = _batch([5, 12])
    single = _batch([5])
    single.x, single.groups = batch.x[:1, :5], [g[:1] for g in batch.groups]
    with torch.no_grad():
        assert torch.allclose(model(batch).logits[:1], model(single).logits, atol=1e-5)
