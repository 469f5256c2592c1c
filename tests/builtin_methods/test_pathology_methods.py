"""Known-answer tests of the pathology-only baselines with their own machinery: TransMIL, CLAM, DTFD."""

from __future__ import annotations

import math

import pytest
import torch
from method_inputs import (
    _batch,
    _build,
    _dims,
    dims,
    make_batch,
)
from torch import nn

from methods.clam import CLAMMB, CLAMSB
from methods.dtfd import DTFD, pseudo_bags

# ----------------------------------------------------------------------------------------------
# TransMIL


@pytest.mark.parametrize("n", [1, 2, 5, 16, 17, 30])
def test_transmil_square_wrap_padding(n):
    model = _build("transmil", _dims(), dim=32, landmarks=16).eval()
    seen = {}

    def grab(module, args):
        seen["x"] = args[0]

    model.body.layer1.register_forward_pre_hook(grab)
    with torch.no_grad():
        out = model.body(model.fc(_batch([n]).x))
    side = math.ceil(math.sqrt(n))
    assert out.shape == (1, 1 + side * side, 32)
    x = seen["x"]  # class token + padded grid, the input of the first TransLayer
    assert x.shape[1] == 1 + side * side
    extra = side * side - n
    assert torch.equal(x[:, 1 + n:], x[:, 1:1 + extra])  # the first `extra` patches, appended again
    assert torch.equal(x[:, :1], model.body.cls)


def test_transmil_padded_batch_equals_alone():
    model = _build("transmil", _dims(), dim=32, landmarks=16).eval()
    batch = _batch([5, 11])
    single = _batch([5])
    single.x = batch.x[:1, :5]
    with torch.no_grad():
        assert torch.allclose(model(batch).logits[:1], model(single).logits, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# CLAM


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


# ----------------------------------------------------------------------------------------------
# DTFD


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
