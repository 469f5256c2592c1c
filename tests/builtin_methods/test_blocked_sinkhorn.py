"""MOTCat's blocked Sinkhorn gives POT's plan bit for bit, whichever way POT's loop ends: convergence,
the iteration cap, or a numerical failure (it then returns the previous iterate), and wherever in a block
of iterations that happens (the block size is varied so the stopping iteration falls at a block's start,
inside it and at its end)."""

from __future__ import annotations

import re
import warnings

import ot
import pytest
import torch

from bench.api import explicit_computation
from methods.coattn import SINKHORN_BLOCK, OTCoAttention, blocked_sinkhorn, unbalanced_sinkhorn


def _pot(cost: torch.Tensor, reg: float, tau: float, reg_type: str, max_iter: int, tol: float):
    """POT's plan, the iterations it ran and the iteration of its numerical-error exit (None if none)."""
    n_a, n_b = cost.shape
    a = torch.full((n_a,), 1.0 / n_a, dtype=torch.float64)
    b = torch.full((n_b,), 1.0 / n_b, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, log = ot.unbalanced.sinkhorn_knopp_unbalanced(
            a, b, cost, reg, tau, reg_type="kl", c=torch.ones_like(cost) if reg_type == "entropy" else None,
            numItermax=max_iter, stopThr=tol, log=True)
    failed = [int(re.search(r"\d+", str(w.message)).group()) for w in caught if "Numerical errors" in str(w.message)]
    return plan, len(log["err"]), failed[0] if failed else None


def _blocks(stop: int) -> list[int]:
    """Block sizes that put iteration ``stop`` (0-based) at a block's start, end and inside one."""
    return sorted({1, 2, 3, SINKHORN_BLOCK, max(stop, 1), stop + 1, stop + 2, 1000})


@pytest.mark.parametrize("reg_type", ["entropy", "kl"])
def test_random_plans_equal_pot(reg_type):
    g = torch.Generator().manual_seed(1)
    for trial in range(60):
        n_a, n_b = int(torch.randint(1, 160, (1,), generator=g)), int(torch.randint(1, 8, (1,), generator=g))
        cost = torch.rand(n_a, n_b, dtype=torch.float64, generator=g)
        reg, tau = [0.1, 0.05, 0.01][trial % 3], [0.5, 0.1, 2.0][trial % 2]
        max_iter, tol = [(1000, 1e-6), (int(torch.randint(1, 40, (1,), generator=g)), 0.0)][trial % 2]
        want, _, _ = _pot(cost, reg, tau, reg_type, max_iter, tol)
        assert torch.equal(blocked_sinkhorn(cost, reg, tau, reg_type, max_iter, tol), want), trial
        assert torch.equal(unbalanced_sinkhorn(cost, reg, tau, reg_type, max_iter, tol), want), trial


@pytest.mark.parametrize("reg_type", ["entropy", "kl"])
def test_convergence_anywhere_in_a_block(reg_type):
    cost = torch.rand(140, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for tol in (1e-3, 1e-6, 1e-9):
        want, iters, failed = _pot(cost, 0.1, 0.5, reg_type, 1000, tol)
        assert failed is None and 1 < iters < 1000
        for block in _blocks(iters - 1):
            assert torch.equal(blocked_sinkhorn(cost, 0.1, 0.5, reg_type, 1000, tol, block=block), want), (tol, block)


@pytest.mark.parametrize("max_iter", [1, 15, 16, 17, 33])
def test_the_iteration_cap(max_iter):
    cost = torch.rand(30, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    want, iters, failed = _pot(cost, 0.1, 0.5, "entropy", max_iter, 0.0)
    assert failed is None and iters == max_iter
    for block in _blocks(max_iter - 1):
        assert torch.equal(blocked_sinkhorn(cost, 0.1, 0.5, "entropy", max_iter, 0.0, block=block), want), block


def test_numerical_failure_mid_run_returns_the_iterate_before_it():
    # u grows geometrically until it overflows (a few hundred iterations in): POT warns and keeps the
    # previous iterate; returning the failed one would make the plan inf/NaN
    cost = torch.linspace(0, 1, 6, dtype=torch.float64).reshape(2, 3)
    want, _, failed = _pot(cost, 1e-3, 50.0, "entropy", 1000, 0.0)
    assert failed is not None and failed > 0 and torch.isfinite(want).all()
    for block in _blocks(failed):
        assert torch.equal(blocked_sinkhorn(cost, 1e-3, 50.0, "entropy", 1000, 0.0, block=block), want), block


def test_numerical_failure_at_the_first_iteration_returns_the_initial_iterate():
    cost = torch.rand(10, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cost[3] = 1.0  # exp(-1/1e-3) underflows: K^T u has a zero at once
    want, _, failed = _pot(cost, 1e-3, 0.5, "entropy", 1000, 1e-6)
    assert failed == 0
    assert torch.equal(blocked_sinkhorn(cost, 1e-3, 0.5), want)


def test_motcat_uses_it_unless_explicit():
    assert OTCoAttention().sinkhorn is blocked_sinkhorn
    with explicit_computation():
        assert OTCoAttention().sinkhorn is unbalanced_sinkhorn
