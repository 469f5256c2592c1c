"""The discrete-time survival likelihood shared by every method (Zadeh & Schmid; MCAT's ``nll_loss``)."""

from __future__ import annotations

import torch


def survival_from_hazards(hazards: torch.Tensor) -> torch.Tensor:
    """``S_k = prod_{j<=k} (1 - h_j)`` for hazards ``[B, K]``."""
    return torch.cumprod(1 - hazards, dim=1)


def risk_from_survival(surv: torch.Tensor) -> torch.Tensor:
    """Risk score for ranking: ``-sum_k S_k`` (higher means worse)."""
    return -surv.sum(dim=1)


def nll_loss(
    hazards: torch.Tensor,
    bins: torch.Tensor,
    censorship: torch.Tensor,
    alpha: float = 0.0,
    eps: float = 1e-7,
    reduction: str = "mean",
) -> torch.Tensor:
    """Negative log-likelihood of discrete-time survival.

    With ``S~ = [1, S_0, ..., S_{K-1}]`` and label bin ``y``:
    uncensored ``-(1-c) [log S~_y + log h_y]``, censored ``-c log S~_{y+1}``;
    loss ``(1 - alpha) (unc + cen) + alpha * unc``, averaged (or summed) over the batch.
    Probabilities are clamped at ``eps`` before the log, as in the published code.
    """
    y = bins.view(-1, 1).long()
    c = censorship.view(-1, 1).to(hazards.dtype)
    surv = survival_from_hazards(hazards)
    s_pad = torch.cat([torch.ones_like(c), surv], dim=1)
    log_s_before = torch.log(s_pad.gather(1, y).clamp(min=eps))
    log_h = torch.log(hazards.gather(1, y).clamp(min=eps))
    log_s_after = torch.log(s_pad.gather(1, y + 1).clamp(min=eps))
    uncensored = -(1 - c) * (log_s_before + log_h)
    censored = -c * log_s_after
    loss = (1 - alpha) * (uncensored + censored) + alpha * uncensored
    return loss.sum() if reduction == "sum" else loss.mean()
