"""Nyström attention without the padding tokens equals the padded computation (float64, <= 1e-10).

``padded_landmark_nystrom`` drops the zero tokens that pad a sequence longer than the landmark count
to a multiple of it, and the landmarks made of them; the generic path (``exact_padded = False``)
computes them. Values, input and parameter gradients, and the dropout mask in training mode.
"""

from __future__ import annotations

import pytest
import torch
from method_inputs import assert_close_relative as _close

from bench.api import explicit_computation
from methods.layers import SPECTRAL_MIN_SIZE, NystromAttention, TransMILBody, padded_landmark_nystrom


def _layout(n: int, m: int) -> tuple[int, int, int]:
    """(padding tokens, tokens per landmark, landmarks made of padding only) of the generic path."""
    p = (m - n % m) % m
    group = (n + p) // m
    return p, group, p // group


# (n, m): a landmark mixing padding and content or not; the reduced kernel below and above the
# spectral threshold (r + 1 = m - z + 1 rows); one zero landmark only; three tokens per landmark
CASES = [(145, 128), (200, 128), (150, 16), (37, 16), (300, 128)]


def test_cases_cover_the_layouts():
    layouts = {case: _layout(*case) for case in CASES}
    assert any(p % g for p, g, _ in layouts.values()) and any(p % g == 0 for p, g, _ in layouts.values())
    sizes = [m - z + 1 for (_, m), (_, _, z) in layouts.items()]
    assert min(sizes) < SPECTRAL_MIN_SIZE <= max(sizes)
    assert {z for _, _, z in layouts.values()} >= {1} and {g for _, g, _ in layouts.values()} >= {2, 3}


@pytest.mark.parametrize("n,m", CASES)
def test_padded_landmarks_equal_the_padded_computation(n, m):
    torch.manual_seed(0)
    att = NystromAttention(dim=32, heads=4, dim_head=8, num_landmarks=m).double().eval()
    assert att.exact_padded and _layout(n, m)[2] >= 1
    x = torch.randn(2, n, 32, dtype=torch.float64, requires_grad=True)
    params = list(att.parameters())
    up = torch.randn(2, n, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def run():
        out = att(x)
        return out, torch.autograd.grad((out * up).sum(), [x, *params])

    got, g_got = run()
    att.exact_padded = False
    want, g_want = run()
    _close(got, want)
    for a, b in zip(g_got, g_want, strict=True):
        _close(a, b)


def test_padded_landmarks_keep_the_dropout_mask():
    torch.manual_seed(0)
    att = NystromAttention(dim=32, heads=4, dim_head=8, num_landmarks=16, dropout=0.5).double().train()
    x = torch.randn(2, 37, 32, dtype=torch.float64)
    torch.manual_seed(5)
    got = att(x)
    after_fast = torch.rand(3)  # the random stream goes on where the padded computation leaves it
    att.exact_padded = False
    torch.manual_seed(5)
    want = att(x)
    after_padded = torch.rand(3)
    assert torch.equal(got == 0, want == 0) and 0.3 < float((want == 0).double().mean()) < 0.7
    _close(got, want)
    assert torch.equal(after_fast, after_padded)


def test_no_padding_landmark_takes_the_generic_path():
    # 255 tokens on 128 landmarks: one padding token, shared with a content token: nothing to drop
    assert _layout(255, 128)[2] == 0
    q = torch.randn(1, 2, 255, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="no landmark is padding only"):
        padded_landmark_nystrom(q, q, q, 128, 6)
    torch.manual_seed(0)
    att = NystromAttention(dim=16, heads=2, dim_head=8, num_landmarks=128).double().eval()
    x = torch.randn(1, 255, 16, dtype=torch.float64)
    got = att(x)
    att.exact_padded = False
    assert torch.equal(got, att(x))


def test_transmil_body_without_padding_equals_explicit_body():
    # 140 patches -> 12 x 12 grid (4 repeated) + class token = 145 tokens on 128 landmarks: both layers
    # take the padded-landmark path; the explicit body pads, iterates and runs three PPEG convolutions
    torch.manual_seed(0)
    body = TransMILBody(dim=32, heads=4, num_landmarks=128).double().eval()
    with explicit_computation():
        torch.manual_seed(0)
        explicit = TransMILBody(dim=32, heads=4, num_landmarks=128).double().eval()
    assert body.layer1.attn.exact_padded and not explicit.layer1.attn.exact_padded
    h = torch.randn(1, 140, 32, dtype=torch.float64, requires_grad=True)
    got = body(h)
    want = explicit(h)
    _close(got, want)
    up = torch.randn(got.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _close(torch.autograd.grad((got * up).sum(), h)[0], torch.autograd.grad((want * up).sum(), h)[0])
