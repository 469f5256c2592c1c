"""The discrete-time NLL against hand-computed values."""

import math

import pytest
import torch

from bench.api.losses import nll_loss, risk_from_survival, survival_from_hazards

H = torch.tensor([[0.1, 0.2, 0.3, 0.4]])


def test_survival_and_risk():
    s = survival_from_hazards(H)
    assert torch.allclose(s, torch.tensor([[0.9, 0.72, 0.504, 0.3024]]))
    assert float(risk_from_survival(s)) == pytest.approx(-(0.9 + 0.72 + 0.504 + 0.3024))


def test_uncensored_term():
    # died in bin 2: survived bins 0 and 1 (S_1 = 0.72), hazard of bin 2 = 0.3
    loss = nll_loss(H, torch.tensor([2]), torch.tensor([0.0]))
    assert float(loss) == pytest.approx(-(math.log(0.72) + math.log(0.3)), rel=1e-6)


def test_censored_term():
    # censored in bin 1: survived through bin 1 (S_1 = 0.72)
    loss = nll_loss(H, torch.tensor([1]), torch.tensor([1.0]))
    assert float(loss) == pytest.approx(-math.log(0.72), rel=1e-6)


def test_first_bin_and_alpha():
    # bin 0 uncensored: S~_0 = 1, so only -log h_0; alpha re-weights the uncensored part
    y, c = torch.tensor([0, 3]), torch.tensor([0.0, 1.0])
    h = H.repeat(2, 1)
    unc = -math.log(0.1)
    cen = -math.log(0.3024)
    assert float(nll_loss(h, y, c)) == pytest.approx((unc + cen) / 2, rel=1e-6)
    alpha = 0.5
    expected = ((1 - alpha) * (unc + cen) + alpha * unc) / 2
    assert float(nll_loss(h, y, c, alpha=alpha)) == pytest.approx(expected, rel=1e-6)
    assert float(nll_loss(h, y, c, reduction="sum")) == pytest.approx(unc + cen, rel=1e-6)


def test_clamped_at_eps():
    loss = nll_loss(torch.tensor([[0.0, 0.5, 0.5, 0.5]]), torch.tensor([0]), torch.tensor([0.0]))
    assert float(loss) == pytest.approx(-math.log(1e-7), rel=1e-4)
