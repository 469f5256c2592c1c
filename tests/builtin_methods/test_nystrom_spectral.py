"""The spectral Newton–Schulz path equals the explicit iterations (float64, values and gradients, <= 1e-10)."""

from __future__ import annotations

import pytest
import torch
from method_inputs import assert_close_relative as _close

from bench.api import explicit_computation
from methods.layers import (
    PPEG,
    SPECTRAL_MIN_SIZE,
    NystromAttention,
    TransMILBody,
    moore_penrose_pinv,
    newton_schulz_spectral,
)


def _grads(fn, *inputs):
    out = fn(*inputs)
    up = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    return out, torch.autograd.grad((out * up).sum(), inputs)


def _attention_like(r: int, repeat: int = 0, seed: int = 0) -> torch.Tensor:
    """Row-stochastic ``[3, r, r]`` matrices; ``repeat`` rows and columns copied from the first ones (rank < r)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, r, r, generator=g, dtype=torch.float64) * 3
    if repeat:
        logits[:, -repeat:] = logits[:, :repeat]
        logits[:, :, -repeat:] = logits[:, :, :repeat]
    return torch.softmax(logits, -1)


@pytest.mark.parametrize("repeat", [0, 7])
@pytest.mark.parametrize("kind", ["pinv", "xzx"])
def test_spectral_iterations_equal_explicit_ones(kind, repeat):
    x = _attention_like(SPECTRAL_MIN_SIZE, repeat).requires_grad_()

    def explicit(a):
        z = moore_penrose_pinv(a, 6)
        return z if kind == "pinv" else a @ z @ a

    want, g_want = _grads(explicit, x)
    got, g_got = _grads(lambda a: newton_schulz_spectral(a, 6, kind), x)
    _close(got, want)
    _close(g_got[0], g_want[0])


def test_spectral_iterations_on_exactly_repeated_eigenvalues():
    # a block matrix with identical blocks: every eigenvalue of X X^T repeated, a zero eigenvalue too
    block = _attention_like(12, seed=3)[0]
    x = torch.block_diag(block, block, torch.zeros(2, 2, dtype=torch.float64)).unsqueeze(0).requires_grad_()
    want, g_want = _grads(lambda a: a @ moore_penrose_pinv(a, 6) @ a, x)
    got, g_got = _grads(lambda a: newton_schulz_spectral(a, 6, "xzx"), x)
    _close(got, want)
    _close(g_got[0], g_want[0])
    assert torch.isfinite(g_got[0]).all()


@pytest.mark.parametrize("n", [SPECTRAL_MIN_SIZE - 2, 100, 200])  # short path below/above the threshold; generic
def test_nystrom_attention_spectral_equals_explicit(n):
    torch.manual_seed(0)
    att = NystromAttention(dim=32, heads=4, dim_head=8, num_landmarks=128).double().eval()
    x = torch.randn(2, n, 32, dtype=torch.float64, requires_grad=True)
    got, g_got = _grads(att, x)
    att.spectral = False
    want, g_want = _grads(att, x)
    _close(got, want)
    _close(g_got[0], g_want[0])
    params = [p for p in att.parameters()]
    att.spectral = True
    pg_got = torch.autograd.grad(att(x).square().sum(), params)
    att.spectral = False
    pg_want = torch.autograd.grad(att(x).square().sum(), params)
    for a, b in zip(pg_got, pg_want, strict=True):
        _close(a, b)


def test_transmil_body_with_wrap_padding_spectral_equals_explicit():
    # 110 patches: an 11 x 11 grid repeats 11 of them, so layer 1 attends over repeated tokens (generic path)
    torch.manual_seed(0)
    body = TransMILBody(dim=32, heads=4, num_landmarks=SPECTRAL_MIN_SIZE).double().eval()
    h = torch.randn(1, 110, 32, dtype=torch.float64, requires_grad=True)
    got, g_got = _grads(body, h)
    with explicit_computation():
        torch.manual_seed(0)
        explicit = TransMILBody(dim=32, heads=4, num_landmarks=SPECTRAL_MIN_SIZE).double().eval()
    assert not explicit.layer1.attn.spectral and not explicit.ppeg.merged and body.layer1.attn.spectral
    want, g_want = _grads(explicit, h)
    _close(got, want)
    _close(g_got[0], g_want[0])


def test_merged_ppeg_equals_three_convolutions():
    torch.manual_seed(0)
    ppeg = PPEG(dim=16).double()
    x = torch.randn(2, 1 + 36, 16, dtype=torch.float64, requires_grad=True)
    params = list(ppeg.parameters())

    def run():
        out = ppeg(x, 6)
        up = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
        return out, torch.autograd.grad((out * up).sum(), [x, *params])

    got, g_got = run()
    ppeg.merged = False
    want, g_want = run()
    _close(got, want)
    for a, b in zip(g_got, g_want, strict=True):
        _close(a, b)


@pytest.mark.parametrize("iters", [0, 1])
def test_spectral_iterations_few_steps(iters):
    x = _attention_like(30, seed=5).requires_grad_()
    want, g_want = _grads(lambda a: moore_penrose_pinv(a, iters), x)
    got, g_got = _grads(lambda a: newton_schulz_spectral(a, iters, "pinv"), x)
    _close(got, want)
    _close(g_got[0], g_want[0])
    want, g_want = _grads(lambda a: a @ moore_penrose_pinv(a, iters) @ a, x)
    got, g_got = _grads(lambda a: newton_schulz_spectral(a, iters, "xzx"), x)
    _close(got, want)
    _close(g_got[0], g_want[0])
