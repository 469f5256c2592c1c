"""Building blocks for the multimodal-fusion and MIL baselines of the CCL paper's Table I.

Written from the method specification and the papers (no code copied):

* :func:`split_batch` / :func:`merge_outputs` — run a model one patient at a time on its real
  patches (for models whose computation is not a masked reduction: random pseudo-bags, top-k
  instance selection, a Transformer over the bag) and put the outputs back together.
* :func:`kronecker` — batched outer product of two vectors, optionally with a constant 1 appended
  to each (Pathomic Fusion / Porpoise), flattened.
* :class:`GatedBilinearFusion` — Porpoise's gated Kronecker fusion (MCAT's ``BilinearFusion``).
* :class:`MFB` — multi-modal factorised bilinear pooling (Yu et al., ICCV 2017): two low-rank
  projections multiplied element-wise, sum-pooled over the rank, signed square root, L2 norm.
* :class:`EncoderLayer` — a post-norm Transformer encoder layer (as ``nn.TransformerEncoderLayer``)
  whose attention runs through ``F.scaled_dot_product_attention`` (memory-efficient kernels on GPU).
* :class:`AttentionPool` — gated attention pooling of a padded bag (ABMIL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import Batch, ModelOutput
from methods.layers import GatedAttention, init_snn_weights, masked_softmax


def split_batch(batch: Batch) -> list[Batch]:
    """One single-patient batch per patient, each bag cut to its real patches (no padding).

    A batch of one unpadded bag is returned as is.
    """
    if batch.size == 1 and (batch.mask is None or bool(batch.mask.all())):
        return [batch]
    out = []
    for i in range(batch.size):
        x = mask = None
        if batch.x is not None:
            n = int(batch.mask[i].sum()) if batch.mask is not None else batch.x.shape[1]
            x = batch.x[i:i + 1, :n]
            mask = torch.ones(1, n, dtype=torch.bool, device=x.device)
        out.append(dataclasses.replace(
            batch, x=x, mask=mask, omic=batch.omic[i:i + 1], groups=[g[i:i + 1] for g in batch.groups],
            bins=batch.bins[i:i + 1], censorship=batch.censorship[i:i + 1], time=batch.time[i:i + 1],
            index=batch.index[i:i + 1], case_ids=batch.case_ids[i:i + 1]))
    return out


def merge_outputs(outputs: Sequence[ModelOutput]) -> ModelOutput:
    """Concatenate per-patient logits; average auxiliary losses over patients; list the extras."""
    if len(outputs) == 1:
        return outputs[0]
    logits = torch.cat([o.logits for o in outputs], dim=0)
    aux = {k: torch.stack([o.aux[k] for o in outputs]).mean() for k in outputs[0].aux}
    extras = {k: [o.extras.get(k) for o in outputs] for k in outputs[0].extras}
    return ModelOutput(logits, aux=aux, extras=extras)


def kronecker(a: torch.Tensor, b: torch.Tensor, append_one: bool = False) -> torch.Tensor:
    """Flattened outer products ``a_i b_j`` of ``[B, p]`` and ``[B, q]`` -> ``[B, p*q]``.

    With ``append_one`` a constant 1 is appended to both vectors first, so the result also holds
    ``a``, ``b`` and 1 (``[B, (p+1)(q+1)]``), keeping the unimodal terms next to the bimodal ones.
    """
    if append_one:
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
        b = torch.cat([b, b.new_ones(b.shape[0], 1)], dim=1)
    return torch.einsum("bi,bj->bij", a, b).flatten(start_dim=1)


class GatedBilinearFusion(nn.Module):
    """Porpoise / Pathomic Fusion gated Kronecker fusion of two vectors ``[B, d1]``, ``[B, d2]``.

    Per modality ``m``: ``h_m = ReLU(W_h v_m)`` (d_m -> d_m/scale), gate ``z_m = W_z [v_1; v_2]``,
    ``o_m = Dropout(ReLU(W_o (sigmoid(z_m) * h_m)))``; append 1 to each ``o_m``; outer product
    (``(d1/scale + 1) x (d2/scale + 1)``, 33 x 33 for 256-d inputs and scale 8) -> Dropout ->
    ``Linear -> ReLU -> Dropout`` (-> 256) -> ``Linear -> ReLU -> Dropout`` (-> ``out``). Used by
    Porpoise and by MCAT/MOTCat/CMTA with ``fusion=bilinear``. PyTorch's default init, as MCAT's
    ``BilinearFusion`` (Pathomic Fusion's original applies an N(0, 1/fan_in) init, ``init="snn"``; MCAT's
    copy does not).
    """

    def __init__(self, dim1: int = 256, dim2: int = 256, scale1: int = 8, scale2: int = 8, out: int = 256,
                 hidden: int = 256, dropout: float = 0.25, gate: bool = True, init: str = "default") -> None:
        super().__init__()
        s1, s2 = dim1 // scale1, dim2 // scale2
        self.gate = gate
        self.h1 = nn.Sequential(nn.Linear(dim1, s1), nn.ReLU())
        self.z1 = nn.Linear(dim1 + dim2, s1)
        self.o1 = nn.Sequential(nn.Linear(s1, s1), nn.ReLU(), nn.Dropout(dropout))
        self.h2 = nn.Sequential(nn.Linear(dim2, s2), nn.ReLU())
        self.z2 = nn.Linear(dim1 + dim2, s2)
        self.o2 = nn.Sequential(nn.Linear(s2, s2), nn.ReLU(), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)
        self.encoder1 = nn.Sequential(nn.Linear((s1 + 1) * (s2 + 1), hidden), nn.ReLU(), nn.Dropout(dropout))
        self.encoder2 = nn.Sequential(nn.Linear(hidden, out), nn.ReLU(), nn.Dropout(dropout))
        if init == "snn":  # Pathomic Fusion's original N(0, 1/fan_in) init
            init_snn_weights(self)

    def gated(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two gated, reduced modality vectors ``o_1``, ``o_2`` (before appending 1)."""
        h1, h2 = self.h1(v1), self.h2(v2)
        if self.gate:
            both = torch.cat([v1, v2], dim=1)
            h1 = torch.sigmoid(self.z1(both)) * h1
            h2 = torch.sigmoid(self.z2(both)) * h2
        return self.o1(h1), self.o2(h2)

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        o1, o2 = self.gated(v1, v2)
        fused = self.drop(kronecker(o1, o2, append_one=True))
        return self.encoder2(self.encoder1(fused))


def signed_sqrt(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``sign(z) sqrt(|z|)`` with a finite gradient at 0."""
    return torch.sign(z) * torch.sqrt(z.abs() + eps)


class MFB(nn.Module):
    """Multi-modal factorised bilinear pooling of ``x [B, d1]`` and ``y [B, d2]`` -> ``[B, out]``.

    ``z = SumPool_rank(Dropout(U x * V y))`` with ``U: d1 -> out*rank``, ``V: d2 -> out*rank``
    (consecutive groups of ``rank`` entries are summed), then the power normalisation
    ``sign(z) sqrt(|z|)`` and L2 normalisation. ``MFB(x, x)`` is the intra-modal (self) variant.
    """

    def __init__(self, dim1: int, dim2: int, out: int, rank: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.out, self.rank = out, rank
        self.u = nn.Linear(dim1, out * rank)
        self.v = nn.Linear(dim2, out * rank)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = self.drop(self.u(x) * self.v(y))
        z = z.view(z.shape[0], self.out, self.rank).sum(dim=-1)
        return F.normalize(signed_sqrt(z), dim=-1)


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer (self-attention + ReLU FFN), batch-first ``[B, n, dim]``.

    Same parameters and computation as ``nn.TransformerEncoderLayer(dim, heads, ffn, dropout,
    batch_first=True)``; attention is computed with ``F.scaled_dot_product_attention`` so that long
    bags use the memory-efficient kernels. ``key_padding_mask`` is True for real tokens.
    """

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = key_padding_mask[:, None, None, :] if key_padding_mask is not None else None
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        a = self.proj(a.transpose(1, 2).reshape(b, n, d))
        x = self.norm1(x + self.drop1(a))
        return self.norm2(x + self.drop2(self.ff(x)))


class AttentionPool(nn.Module):
    """Gated-attention pooling of a padded bag ``[B, N, dim]`` -> ``[B, dim]`` (softmax over real patches)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.25) -> None:
        super().__init__()
        self.attention = GatedAttention(dim, hidden, dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        a = masked_softmax(self.attention(h), mask)  # [B, N, 1]
        return (a * h).sum(dim=1), a.squeeze(-1)
