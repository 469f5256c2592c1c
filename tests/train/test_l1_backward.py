"""The L1 penalty's gradient added outside the graph is bit-identical to the graph version, for every method."""

from __future__ import annotations

import pytest
import torch

from bench.api import all_methods
from bench.api.losses import nll_loss
from bench.tools.contract import _prepare
from bench.train.engine import backward_with_l1, l1_penalty

L1 = 1e-4
# models that use a parameter more than once per forward (DTFD's tier-1 attention per pseudo-bag, M3IF's and
# SurvPath's shared layers): autograd sums that parameter's contributions in arrival order, so adding the
# penalty after the loss gradients rounds differently in the last bit; there the check is to float32 rounding
REUSED = {"dtfd", "m3if", "survpath"}




def _loss(model, ctx, i):
    batch = ctx.batch([int(ctx.batches.t.train[i])], train=True)
    out = model(batch)
    loss = out.nll_weight * nll_loss(torch.sigmoid(out.logits), batch.bins, batch.censorship, alpha=0.0)
    for v in out.aux.values():
        loss = loss + v
    return loss


@pytest.mark.parametrize("name", [m.name for m in all_methods() if m.source == "survbench"])
def test_l1_outside_the_graph_is_bit_identical(name, tmp_path):
    ctx = _prepare(name, tmp_path)
    grads = []
    for fast in (False, True):
        model = ctx.build(seed=0).train()
        torch.manual_seed(1)  # the same dropout masks both ways
        for i in range(3):  # accumulation: the second and third backward add to stored gradients
            loss = _loss(model, ctx, i) / 2
            if fast:
                backward_with_l1(model, loss, L1)
            else:
                (loss + L1 * l1_penalty(model)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    graph, fast = grads
    assert graph.keys() == fast.keys()
    for n in graph:
        if graph[n] is None:
            assert fast[n] is None, n
        elif name in REUSED:
            assert (fast[n] - graph[n]).abs().max() <= 1e-6 * graph[n].abs().max(), f"{name}: {n}"
        else:
            assert torch.equal(graph[n], fast[n]), f"{name}: {n} differs"
    assert any(g is not None and g.abs().sum() > 0 for g in fast.values())
