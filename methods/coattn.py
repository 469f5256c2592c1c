"""Building blocks of the MCAT family (MCAT, MOTCat, CMTA), written from the method spec (§8–10, §12.3).

* :class:`CoAttention` — multi-head attention whose queries come from one token set and keys/values
  from another (MCAT's genomic-guided co-attention, CMTA's cross-modal translation). Same parameters
  and initialisation as ``torch.nn.MultiheadAttention`` (xavier-uniform packed in-projection, zero
  biases); also returns the pre-softmax scores, as the published models do for visualisation.
* :class:`SignatureNets` — one stack of SNN blocks per signature group -> one token per group.
* :class:`TokenBranch` — MCAT's per-modality branch: post-norm Transformer encoder over a few
  tokens, gated-attention pooling, ``rho`` projection.
* :class:`ConcatFusion` and :func:`make_fusion` (``concat`` or fusion.GatedBilinearFusion) — the two fusion options.
* :class:`TwoBranchHead` — MCAT/MOTCat after the co-attention: both branches, fusion, classifier.
* :class:`TokenEncoder` — CMTA's genomic encoder/decoder: class token + tokens through two
  Nyström TransLayers and a LayerNorm, returning every token.
* :func:`unbalanced_sinkhorn` and :class:`OTCoAttention` — MOTCat's optimal-transport co-attention
  (POT's unbalanced Sinkhorn–Knopp, run by POT's torch backend in float64); :func:`blocked_sinkhorn`,
  the same plan bit for bit with its stopping tests read once per 16 iterations (the default).
* :func:`survival_mixture_logits` — logits whose survival curve is the mean of several curves.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import pairwise

import ot
import torch
import torch.nn.functional as F
from torch import nn

from bench.api import explicit_requested
from methods.fusion import GatedBilinearFusion
from methods.layers import GatedAttention, TokenTransformer, masked_softmax, snn_block

# ----------------------------------------------------------------------------------------------
# Attention between two token sets


class CoAttention(nn.Module):
    """Scaled dot-product attention, queries from ``query``, keys and values from ``key``/``value``.

    Inputs are batch-first ``[B, L, dim]``. ``key_padding_mask`` is ``[B, Lk]`` with True for real
    keys (survbench's mask convention, the opposite of torch's). Returns ``(out [B, Lq, dim],
    scores [B, Lq, Lk])`` with ``scores`` the pre-softmax logits averaged over heads (padded keys
    are ``-inf``).
    """

    def __init__(self, dim: int = 256, heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, lq, d = query.shape
        lk = key.shape[1]
        h, dh = self.heads, d // self.heads
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        q = F.linear(query, wq, bq).reshape(b, lq, h, dh).transpose(1, 2) * dh ** -0.5
        k = F.linear(key, wk, bk).reshape(b, lk, h, dh).transpose(1, 2)
        v = F.linear(value, wv, bv).reshape(b, lk, h, dh).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)  # [B, h, Lq, Lk]
        if key_padding_mask is not None:
            scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
        attn = torch.softmax(scores, dim=-1)
        if self.dropout and self.training:
            attn = F.dropout(attn, self.dropout)
        out = (attn @ v).transpose(1, 2).reshape(b, lq, d)
        return self.out_proj(out), scores.mean(dim=1)


# ----------------------------------------------------------------------------------------------
# Genomic tokens, per-modality branches, fusion


class SignatureNets(nn.Module):
    """One SNN stack (``Linear -> ELU -> AlphaDropout`` blocks) per signature group.

    ``widths`` are the block output sizes (MCAT ``small``: (256, 256); CMTA ``small``: (1024, 256)).
    ``forward(groups)`` maps the six ``[B, g_i]`` vectors to tokens ``[B, n_groups, widths[-1]]``.
    """

    def __init__(self, group_sizes: Sequence[int], widths: Sequence[int] = (256, 256), dropout: float = 0.25) -> None:
        super().__init__()
        nets = []
        for size in group_sizes:
            dims = [size, *widths]
            nets.append(nn.Sequential(*(snn_block(a, b, "elu", dropout) for a, b in pairwise(dims))))
        self.nets = nn.ModuleList(nets)

    def forward(self, groups: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([net(g) for net, g in zip(self.nets, groups, strict=True)], dim=1)


class TokenBranch(nn.Module):
    """MCAT's modality branch over a few tokens ``[B, T, dim]`` -> pooled ``[B, dim]``.

    ``nn.TransformerEncoder`` (post-norm layers: ``heads`` heads, feed-forward ``ffn``, ReLU,
    ``dropout``), then gated attention pooling (softmax over the T tokens) and
    ``rho = Linear -> ReLU -> Dropout``. Also returns the pooling weights ``[B, T]``.
    """

    def __init__(self, dim: int = 256, heads: int = 8, ffn: int = 512, layers: int = 2, dropout: float = 0.25) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=dim, nhead=heads, dim_feedforward=ffn, dropout=dropout,
                                           activation="relu", batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.attention = GatedAttention(dim, dim, dropout)
        self.rho = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.transformer(tokens)
        a = masked_softmax(self.attention(h), None)  # [B, T, 1]
        return self.rho((a * h).sum(dim=1)), a.squeeze(-1)


class ConcatFusion(nn.Module):
    """``Linear(2d -> d) -> ReLU -> Linear(d -> d) -> ReLU`` on the concatenated modality vectors."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.mm = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.mm(torch.cat([a, b], dim=-1))


FUSIONS = ("concat", "bilinear")


def make_fusion(kind: str, dim: int = 256, dropout: float = 0.25) -> nn.Module:
    """``concat`` (the official default of MCAT, MOTCat and CMTA) or ``bilinear``."""
    if kind == "concat":
        return ConcatFusion(dim)
    if kind == "bilinear":
        return GatedBilinearFusion(dim, dim, 8, 8, dim, dropout=dropout)
    raise ValueError(f"unknown fusion '{kind}'; choose one of {', '.join(FUSIONS)}")


class TwoBranchHead(nn.Module):
    """MCAT/MOTCat after the co-attention: a :class:`TokenBranch` per modality, fusion, ``Linear -> n_bins``.

    ``forward(path_tokens [B, 6, d], omic_tokens [B, 6, d])`` returns
    ``(logits [B, n_bins], path pooling weights [B, 6], omic pooling weights [B, 6])``.
    """

    def __init__(self, dim: int = 256, n_bins: int = 4, dropout: float = 0.25, fusion: str = "concat") -> None:
        super().__init__()
        self.path_branch = TokenBranch(dim, dropout=dropout)
        self.omic_branch = TokenBranch(dim, dropout=dropout)
        self.mm = make_fusion(fusion, dim, dropout)
        self.classifier = nn.Linear(dim, n_bins)

    def forward(self, path_tokens: torch.Tensor, omic_tokens: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        path_vec, a_path = self.path_branch(path_tokens)
        omic_vec, a_omic = self.omic_branch(omic_tokens)
        return self.classifier(self.mm(path_vec, omic_vec)), a_path, a_omic


class TokenEncoder(TokenTransformer):
    """Class token + tokens -> two Nyström TransLayers -> LayerNorm, returning all ``[B, 1 + T, dim]``.

    CMTA's genomic encoder and decoder (``Transformer_G``): the same layers as
    :class:`methods.layers.TokenTransformer` (class token N(0, 1e-6²)), but every token is kept.
    """

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return self.norm(self.layer2(self.layer1(x)))


# ----------------------------------------------------------------------------------------------
# Optimal transport (MOTCat)

OT_REG_TYPES = ("entropy", "kl")


def _ot_inputs(cost: torch.Tensor, reg_type: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The float64 cost and the uniform marginals of MOTCat's plan (``reg_type`` checked)."""
    if reg_type not in OT_REG_TYPES:
        raise ValueError(f"unknown reg_type '{reg_type}'; choose one of {', '.join(OT_REG_TYPES)}")
    m = cost.detach().to(torch.float64)
    n_a, n_b = m.shape
    a = torch.full((n_a,), 1.0 / n_a, dtype=m.dtype, device=m.device)
    b = torch.full((n_b,), 1.0 / n_b, dtype=m.dtype, device=m.device)
    return m, a, b


def unbalanced_sinkhorn(cost: torch.Tensor, reg: float, tau: float, reg_type: str = "entropy",
                        max_iter: int = 1000, tol: float = 1e-6) -> torch.Tensor:
    """Entropic unbalanced OT plan between uniform marginals by POT's Sinkhorn–Knopp (torch backend).

    ``cost`` is ``[N, M]``; the marginals are ``1/N`` and ``1/M``; ``reg`` is the entropic weight ε,
    ``tau`` the KL relaxation of both marginals. The computation runs in float64 on ``cost``'s
    device and returns a float64 plan without gradient.

    ``reg_type="entropy"`` regularises with the negative entropy of the plan (kernel ``exp(-C/ε)``):
    what ``ot.unbalanced.sinkhorn_knopp_unbalanced`` computed up to POT 0.9.4, i.e. in the
    MOTCat release. ``"kl"`` is POT >= 0.9.5's default, ``KL(plan | a b^T)`` (kernel
    ``exp(-C/ε) a b^T``), which yields a plan of another total mass.
    """
    m, a, b = _ot_inputs(cost, reg_type)
    # reg_type="kl" with the all-ones reference measure is the "entropy" problem without POT's warning
    ref = torch.ones_like(m) if reg_type == "entropy" else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Numerical errors")
        return ot.unbalanced.sinkhorn_knopp_unbalanced(a, b, m, reg, tau, reg_type="kl", c=ref,
                                                       numItermax=max_iter, stopThr=tol)


#: Iterations run between two host reads of the stopping tests in :func:`blocked_sinkhorn`.
SINKHORN_BLOCK = 16


def blocked_sinkhorn(cost: torch.Tensor, reg: float, tau: float, reg_type: str = "entropy",
                     max_iter: int = 1000, tol: float = 1e-6, block: int = SINKHORN_BLOCK) -> torch.Tensor:
    """:func:`unbalanced_sinkhorn`'s plan, bit for bit, with the stopping tests read once per ``block`` iterations.

    POT's loop tests, after every iteration, whether ``K^T u`` has a zero or ``u``/``v`` a NaN or inf
    (then it returns the previous iterate) and whether the relative change ``err`` fell below ``tol``
    (then it returns this one): four or more host reads per iteration, which dominate on MOTCat's small
    plans (a bag of ~140 patches against 6 genomic tokens). Here the iterations themselves are POT's
    torch operations in POT's order; ``block`` of them run back to back, the tests are evaluated for all
    of them at once (maxima, comparisons and divisions are exact whichever way they are batched), and
    the iterate returned is the one POT would have stopped at. The extra iterations past that point are
    computed and thrown away, which never changes the result.
    """
    m, a, b = _ot_inputs(cost, reg_type)
    c = torch.ones_like(m) if reg_type == "entropy" else a[:, None] * b[None, :]
    k = torch.exp(-m / reg) * c
    kt = k.T
    fi = tau / (tau + reg) if tau != float("inf") else 1
    u, v = torch.ones_like(a), torch.ones_like(b)
    done = 0
    while done < max_iter:
        steps = min(block, max_iter - done)
        us, vs, ktus = [u], [v], []
        for _ in range(steps):
            u = (a / torch.matmul(k, vs[-1])) ** fi
            ktu = torch.matmul(kt, u)
            v = (b / ktu) ** fi
            us.append(u)
            vs.append(v)
            ktus.append(ktu)
        U, V = torch.stack(us), torch.stack(vs)  # row 0: the iterate before this block
        cur_u, cur_v, prev_u, prev_v = U[1:], V[1:], U[:-1], V[:-1]
        bad = (torch.stack(ktus) == 0.0).any(1) | cur_u.isnan().any(1) | cur_v.isnan().any(1) \
            | cur_u.isinf().any(1) | cur_v.isinf().any(1)
        one = torch.ones((), dtype=m.dtype, device=m.device)
        err_u = (cur_u - prev_u).abs().amax(1) / torch.maximum(torch.maximum(cur_u.abs().amax(1),
                                                                             prev_u.abs().amax(1)), one)
        err_v = (cur_v - prev_v).abs().amax(1) / torch.maximum(torch.maximum(cur_v.abs().amax(1),
                                                                             prev_v.abs().amax(1)), one)
        stop = bad | (0.5 * (err_u + err_v) < tol)
        hits = torch.nonzero(stop).flatten().tolist()  # the one host read of the block
        if hits:
            i = hits[0]
            # a numerical failure returns the iterate before it, convergence the iterate itself
            u, v = (prev_u[i], prev_v[i]) if bool(bad[i]) else (cur_u[i], cur_v[i])
            break
        done += steps
    return u[:, None] * k * v[None, :]


class OTCoAttention(nn.Module):
    """MOTCat's OT co-attention for one bag: ``tokens = plan^T H_p`` (spec §9).

    Both token sets are shifted per row to be non-negative (minus their own minimum over
    features); the squared Euclidean cost between them is divided by its maximum and detached;
    the unbalanced entropic plan (float64, :func:`unbalanced_sinkhorn`) is cast to the features'
    dtype and aggregates the *unshifted* patch tokens per genomic token (transport mass, not
    renormalised). Gradients reach ``h_path`` only through the product.
    """

    def __init__(self, reg: float = 0.1, tau: float = 0.5, reg_type: str = "entropy", max_iter: int = 1000,
                 tol: float = 1e-6) -> None:
        super().__init__()
        self.reg, self.tau, self.reg_type, self.max_iter, self.tol = reg, tau, reg_type, max_iter, tol
        # the same plan bit for bit; inside bench.api.explicit_computation() POT itself is called
        self.sinkhorn = unbalanced_sinkhorn if explicit_requested() else blocked_sinkhorn

    def cost(self, h_path: torch.Tensor, h_omic: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean cost ``[N, M]`` between the min-shifted token sets."""
        p = h_path - h_path.min(dim=-1, keepdim=True).values
        g = h_omic - h_omic.min(dim=-1, keepdim=True).values
        return torch.cdist(p, g) ** 2

    def forward(self, h_path: torch.Tensor, h_omic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``h_path [N, d]``, ``h_omic [M, d]`` -> ``(tokens [M, d], plan [N, M], distance)``."""
        with torch.no_grad():
            cost = self.cost(h_path, h_omic)
            top = cost.max()
            scaled = cost / top if top > 0 else cost
            plan = self.sinkhorn(scaled, self.reg, self.tau, self.reg_type, self.max_iter, self.tol)
            plan = plan.to(h_path.dtype)
            distance = (cost * plan).sum()
        return plan.transpose(0, 1) @ h_path, plan, distance


def survival_mixture_logits(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Logits ``[K]`` whose survival curve is the mean of the curves of ``logits [C, K]``.

    With ``S_c = cumprod(1 - sigmoid(logits_c))`` and ``S = mean_c S_c``, the returned hazards are
    ``h_k = 1 - S_k / S_{k-1}`` (``S_{-1} = 1``), so ``-sum_k S_k`` is the mean of the C risks.
    """
    surv = torch.cumprod(1 - torch.sigmoid(logits), dim=-1).mean(dim=0)
    prev = torch.cat([surv.new_ones(1), surv[:-1]])
    hazards = (1 - surv / prev.clamp(min=1e-30)).clamp(eps, 1 - eps)
    return torch.log(hazards) - torch.log1p(-hazards)


def random_chunks(n: int, size: int, generator: torch.Generator | None = None,
                  device: torch.device | None = None) -> list[torch.Tensor]:
    """MOTCat's micro-batches: a random permutation of ``n`` indices cut into ``n // size + 1`` near-equal chunks."""
    perm = torch.randperm(n, generator=generator).to(device) if generator is not None else \
        torch.randperm(n, device=device)
    k = n // size + 1
    # numpy.array_split sizes: the first n % k chunks get one extra element
    base, extra = divmod(n, k)
    sizes = [base + 1] * extra + [base] * (k - extra)
    return [c for c in torch.split(perm, sizes) if c.numel() > 0]


__all__ = [
    "FUSIONS",
    "OT_REG_TYPES",
    "CoAttention",
    "ConcatFusion",
    "OTCoAttention",
    "SignatureNets",
    "TokenBranch",
    "TokenEncoder",
    "TwoBranchHead",
    "blocked_sinkhorn",
    "make_fusion",
    "random_chunks",
    "survival_mixture_logits",
    "unbalanced_sinkhorn",
]
