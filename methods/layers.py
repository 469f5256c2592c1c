"""Building blocks shared by several methods (written from the method spec, not copied).

* :func:`snn_block` — self-normalising block ``Linear -> ELU|SELU -> AlphaDropout``.
* :class:`GatedAttention` — Ilse et al.'s gated attention scores, with a padding mask.
* :class:`NystromAttention` — Nyström-approximated self-attention (Xiong et al. 2021) as used by
  TransMIL, CMTA and CCL: front zero-padding to a multiple of the landmark count, landmark means,
  iterative Moore–Penrose pseudo-inverse, depth-wise convolution residual on the values
  (computed without the padding tokens: :func:`short_sequence_nystrom`, :func:`padded_landmark_nystrom`).
* :func:`newton_schulz_spectral` — the same pseudo-inverse iterations, computed exactly through one
  symmetric eigendecomposition (values and gradients equal to the iterations' up to rounding).
* :class:`TransLayer` — ``x + NystromAttention(LayerNorm(x))`` (no feed-forward sub-layer).
* :class:`PPEG` — TransMIL's pyramid position encoding (depth-wise 7/5/3 convolutions on a grid,
  computed as one convolution with the summed kernel).
  Both read :func:`bench.api.explicit_requested` when built (``bench.api.explicit_computation()``
  switches them off for benchmarks and equality tests).
* :class:`TokenTransformer` — class token + two TransLayers + LayerNorm over a few tokens (CCL's
  fusion Transformer; also SNNTrans and DualTrans).
* :class:`TransMILBody` — square wrap-padding, class token, TransLayer, PPEG, TransLayer, LayerNorm.
* masked pooling helpers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import explicit_requested


def snn_block(d_in: int, d_out: int, activation: str = "elu", dropout: float = 0.25) -> nn.Sequential:
    """``Linear -> ELU (MCAT family) or SELU (CCL) -> AlphaDropout``."""
    act = nn.ELU() if activation == "elu" else nn.SELU()
    return nn.Sequential(nn.Linear(d_in, d_out), act, nn.AlphaDropout(p=dropout, inplace=False))


def init_snn_weights(module: nn.Module) -> None:
    """MCAT's SNN init: every Linear weight ~ N(0, 1/fan_in), bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.weight.size(1)))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_xavier(module: nn.Module) -> None:
    """Xavier-normal Linear weights, zero biases, LayerNorm (1, 0) (MCAT/CLAM/CMTA convention)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class GatedAttention(nn.Module):
    """Gated attention scores ``w^T (tanh(V h) * sigmoid(U h))`` per instance (``[B, N, n_out]``)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.25, n_out: int = 1) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.b = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.w = nn.Linear(hidden, n_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.w(self.a(h) * self.b(h))


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """Softmax over ``dim`` with padded positions (mask False) given zero weight.

    ``mask`` is ``[B, N]``; ``scores`` is ``[B, N, ...]`` (the instance axis is 1).
    """
    if mask is not None:
        m = mask.view(*mask.shape, *([1] * (scores.dim() - 2)))
        scores = scores.masked_fill(~m, float("-inf"))
    return torch.softmax(scores, dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over instances (axis 1) of ``[B, N, D]`` ignoring padding."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Element-wise max over instances (axis 1) of ``[B, N, D]`` ignoring padding."""
    if mask is not None:
        x = x.masked_fill(~mask.unsqueeze(-1), float("-inf"))
    return x.max(dim=1).values


def per_sample(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Apply ``fn`` to each bag of a padded batch separately (on its real patches only), stack results.

    Used by models whose computation depends on the bag length (Nyström padding, square grids), so
    that a patient's output is the same alone or in a padded batch. The loop is over patients, not
    patches.
    """
    if x.shape[0] == 1 and (mask is None or bool(mask.all())):
        return fn(x)
    outs = []
    for i in range(x.shape[0]):
        n = int(mask[i].sum()) if mask is not None else x.shape[1]
        outs.append(fn(x[i:i + 1, :n]))
    return torch.cat(outs, dim=0)


def moore_penrose_pinv(x: torch.Tensor, iters: int = 6, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Iterative pseudo-inverse (Razavi et al.): ``Z <- Z (13I - XZ(15I - XZ(7I - XZ))) / 4``.

    Initialised with ``X^T / (max_i sum_j |x_ij| * max_j sum_i |x_ij|)``, maxima over the whole batch
    (``scale``: that denominator, when it was computed from a larger matrix ``x`` stands for).
    """
    z = x.transpose(-1, -2) / (_pinv_scale(x) if scale is None else scale)
    eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
    for _ in range(iters):
        xz = x @ z
        z = 0.25 * z @ (13 * eye - xz @ (15 * eye - xz @ (7 * eye - xz)))
    return z


def _pinv_scale(x: torch.Tensor) -> torch.Tensor:
    """The iteration's start scale: max row sum of ``|x|`` times max column sum, over the whole batch."""
    abs_x = x.abs()
    return abs_x.sum(dim=-1).max() * abs_x.sum(dim=-2).max()


# The iterations are polynomials in M = X X^T / s: with G_k = X Z_k, G_0 = M and G_{k+1} = f(G_k) for
# f(x) = x (13 - x (15 - x (7 - x))) / 4, and Z_k = (X^T / s) R_k(M) with R_0 = 1, R_{k+1} = R_k q(G_k)
# for q(y) = (13 - y (15 - y (7 - y))) / 4. On the eigenvalues of M these are scalar recursions; the
# gradient is the Daleckii–Krein formula with divided differences computed without cancellation.
SPECTRAL_MIN_SIZE = 96  # measured crossover (one CPU thread): below it the iterations' matmuls are as cheap


def _ns_f(x: torch.Tensor) -> torch.Tensor:
    return 0.25 * x * (13 - x * (15 - x * (7 - x)))


def _ns_q(y: torch.Tensor) -> torch.Tensor:
    return 0.25 * (13 - y * (15 - y * (7 - y)))


def _ns_f_dd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Four times the divided difference ``f[a_i, b_j]`` (``4 f'(a)`` where ``a = b``) for eigenvalue vectors.

    ``4 f[a, b] = c0(a) + b (c1(a) + b (c2(a) - b))`` with ``c0 = 13 - 15a + 7a^2 - a^3``,
    ``c1 = -15 + 7a - a^2``, ``c2 = 7 - a``: a polynomial, no division by ``a - b``; five operations
    on the ``r x r`` matrix.
    """
    c2 = 7 - a
    c1 = -15 + a * c2
    c0 = 13 + a * c1
    col = lambda v: v.unsqueeze(-1)  # noqa: E731
    row = b.unsqueeze(-2)
    return torch.addcmul(col(c0), row, torch.addcmul(col(c1), row, col(c2) - row))


def _ns_q_dd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Four times the divided difference ``q[a_i, b_j]``: ``d0(a) + b (d1(a) - b)``, ``d0 = -15 + 7a - a^2``."""
    d1 = 7 - a
    d0 = -15 + a * d1
    row = b.unsqueeze(-2)
    return torch.addcmul(d0.unsqueeze(-1), row, d1.unsqueeze(-1) - row)


class _SpectralNewtonSchulz(torch.autograd.Function):
    """``G_iters(M)`` (``kind = "g"``) or ``R_iters(M)`` (``kind = "r"``) for symmetric ``M [..., r, r]``."""

    @staticmethod
    def forward(ctx, m: torch.Tensor, iters: int, kind: str) -> torch.Tensor:  # type: ignore[override]
        lam, u = torch.linalg.eigh(m)
        xs = [lam]
        for _ in range(iters):
            xs.append(_ns_f(xs[-1]))
        if kind == "g":
            values = xs[-1]
        else:
            values = torch.ones_like(lam)
            for x in xs[:-1]:
                values = values * _ns_q(x)
        ctx.kind = kind
        ctx.save_for_backward(u, *xs)
        return (u * values.unsqueeze(-2)) @ u.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        u, *xs = ctx.saved_tensors
        iters = len(xs) - 1
        x_dd = None  # divided differences of the k-th iterate, x_k[l_i, l_j] (x_0 = l: all ones)
        if ctx.kind == "g":
            for x in xs[:-1]:  # the 1/4 of each step once at the end
                step = _ns_f_dd(x, x)
                x_dd = step if x_dd is None else x_dd * step
            dd = (torch.ones_like(u) if x_dd is None else x_dd) * 0.25 ** iters
        else:  # R = prod_k q(x_k): (uv)[a, b] = u[a, b] v(b) + u(a) v[a, b], with q(x_k)[a, b] = q[x_k] x_k[a, b]
            prod_a = torch.ones_like(xs[0])  # prod_{j<k} q(x_j) at the row eigenvalue
            dd = torch.zeros_like(u)
            for x in xs[:-1]:
                qx = _ns_q(x)
                q_dd = _ns_q_dd(x, x) * 0.25
                if x_dd is not None:
                    q_dd = q_dd * x_dd
                dd = torch.addcmul(dd * qx.unsqueeze(-2), prod_a.unsqueeze(-1), q_dd)
                prod_a = prod_a * qx
                step = _ns_f_dd(x, x) * 0.25
                x_dd = step if x_dd is None else x_dd * step
        ut = u.transpose(-1, -2)
        return u @ (dd * (ut @ grad @ u)) @ ut, None, None


def newton_schulz_spectral(x: torch.Tensor, iters: int, kind: str, scale: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`moore_penrose_pinv`'s iterations on ``x [..., r, r]`` through one eigendecomposition of ``X X^T / s``.

    Args:
        x: the matrices (a batch); ``s`` is :func:`_pinv_scale` of the whole batch unless ``scale`` is given.
        iters: Newton–Schulz iterations.
        kind: ``"pinv"`` returns ``Z_iters`` (what :func:`moore_penrose_pinv` returns); ``"xzx"`` returns
            ``X Z_iters X``.

    The same function of ``x`` as the iterations, values and gradients (float64: equal to about 1e-14
    relative); computed in float64 and returned in ``x``'s dtype (float32 input: closer to the float64
    values than the float32 iterations are); on ``r`` of a hundred or more tokens about 2-3x cheaper
    forward and backward.
    """
    # in float64 whatever the input: the eigenvalues near 0, where the iterations' map is steepest
    # (slope 3.25^iters), then carry float64 rounding only (float32 would be ~10x less accurate
    # than the float32 iterations; float64 is more accurate than them at ~20% more eigh time)
    work = x.double()
    s = (_pinv_scale(x) if scale is None else scale).double()
    m = (work @ work.transpose(-1, -2)) / s
    if kind == "xzx":
        out = _SpectralNewtonSchulz.apply(m, iters, "g") @ work
    else:
        out = (work.transpose(-1, -2) / s) @ _SpectralNewtonSchulz.apply(m, iters, "r")
    return out.to(x.dtype)


class NystromAttention(nn.Module):
    """Nyström self-attention over ``[B, n, dim]``.

    The sequence is zero-padded at the front to a multiple of ``num_landmarks``; landmarks are the
    means of consecutive groups of ``ceil(n / num_landmarks)`` tokens; the output is
    ``softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V`` plus a depth-wise convolution of
    ``V`` along the sequence, merged over heads, projected, and cut back to the last ``n`` positions.
    As in the published models no mask is used: the padding zeros take part as keys with value 0.

    Sequences no longer than ``num_landmarks`` (CCL's 5-token fusion, padded to 128) are computed
    by :func:`short_sequence_nystrom`, which gives the same result on ``(n+1) x (n+1)`` matrices
    instead of the padded ``m x m`` ones (set ``exact_short = False`` to force the generic path).
    Longer sequences whose padding fills whole landmarks (a 145-token bag on 128 landmarks: 111
    zeros, 55 all-zero landmarks) are computed by :func:`padded_landmark_nystrom` on the content
    tokens and the ``m - z + 1`` distinct landmarks, with the padded computation's dropout mask
    (``exact_padded = False``, or ``explicit_computation()``: the padded computation).
    Pseudo-inverses of ``SPECTRAL_MIN_SIZE`` rows or more run through :func:`newton_schulz_spectral`
    (``spectral = False``, or a model built inside ``bench.api.explicit_computation()``: the explicit
    iterations; same values and gradients).
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, num_landmarks: int = 256,
                 pinv_iterations: int = 6, residual_kernel: int = 33, dropout: float = 0.1) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head, self.m, self.iters = heads, dim_head, num_landmarks, pinv_iterations
        self.scale = dim_head ** -0.5
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
        self.res_conv = nn.Conv2d(heads, heads, (residual_kernel, 1), padding=(residual_kernel // 2, 0),
                                  groups=heads, bias=False) if residual_kernel else None
        self.exact_short = True
        explicit = explicit_requested()
        self.spectral = not explicit
        self.exact_padded = not explicit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, m = self.heads, self.m
        if self.exact_short and n <= m:
            q, k, v = (t.reshape(b, n, h, self.dim_head).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
            out = short_sequence_nystrom(q * self.scale, k, v, m, self.iters, spectral=self.spectral)
            if self.res_conv is not None:  # zero padding equals the padded zero tokens
                out = out + banded_depthwise(self.res_conv.weight, v)
            return self.to_out(out.transpose(1, 2).reshape(b, n, h * self.dim_head))
        pad = (m - n % m) % m
        if self.exact_padded and n > m and pad // ((n + pad) // m):  # some landmarks are padding only
            q, k, v = (t.reshape(b, n, h, self.dim_head).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
            out = padded_landmark_nystrom(q * self.scale, k, v, m, self.iters, spectral=self.spectral)
            if self.res_conv is not None:  # the convolution's zero padding equals the padded zero values
                out = out + self.res_conv(v)
            y = self.to_out[0](out.transpose(1, 2).reshape(b, n, h * self.dim_head))
            drop = self.to_out[1]
            if drop.training and drop.p > 0:  # the mask of the padded computation: same shape, same random draws
                return drop(F.pad(y, (0, 0, pad, 0)))[:, pad:]
            return y
        if pad:
            x = F.pad(x, (0, 0, pad, 0))
        total = x.shape[1]
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, total, h, self.dim_head).transpose(1, 2) for t in (q, k, v))
        q = q * self.scale
        group = total // m
        q_land = q.reshape(b, h, m, group, self.dim_head).mean(dim=3)
        k_land = k.reshape(b, h, m, group, self.dim_head).mean(dim=3)
        attn1 = torch.softmax(q @ k_land.transpose(-1, -2), dim=-1)
        attn2 = torch.softmax(q_land @ k_land.transpose(-1, -2), dim=-1)
        attn3 = torch.softmax(q_land @ k.transpose(-1, -2), dim=-1)
        if self.spectral and m >= SPECTRAL_MIN_SIZE:
            pinv = newton_schulz_spectral(attn2, self.iters, "pinv")
        else:
            pinv = moore_penrose_pinv(attn2, self.iters)
        out = (attn1 @ pinv) @ (attn3 @ v)
        if self.res_conv is not None:
            out = out + self.res_conv(v)
        out = out.transpose(1, 2).reshape(b, total, h * self.dim_head)
        return self.to_out(out)[:, -n:]


def banded_depthwise(weight: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Conv2d(h, h, (K, 1), padding=(K // 2, 0), groups=h, bias=False)`` of ``v`` ``[B, h, n, d]`` as one matmul.

    Row ``i`` of the output is ``sum_j w[j - i + K // 2] v[j]`` over ``|j - i| <= K // 2``; on a few
    tokens one ``[h, n, n]`` banded matrix product is cheaper than a convolution call, forward and backward.
    """
    half = weight.shape[2] // 2
    pos = torch.arange(v.shape[-2], device=v.device)
    offset = pos[None, :] - pos[:, None] + half  # [n_out, n_in]
    inside = (offset >= 0) & (offset <= 2 * half)
    band = weight[:, 0, :, 0][:, offset.clamp(0, 2 * half)] * inside.to(weight.dtype)  # [h, n, n]
    return band @ v


def short_sequence_nystrom(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int, iters: int,
                           spectral: bool = True) -> torch.Tensor:
    """Nyström attention of ``n <= m`` tokens (``q`` already scaled; ``[B, H, n, d]``), without the residual.

    With ``m`` landmarks and the sequence front-padded to ``m`` zero tokens, every landmark is one
    token, so the three softmax kernels are one ``m x m`` matrix ``A`` and the output is
    ``A pinv_iters(A) (A V)`` on the content rows. The ``p = m - n`` padding tokens are identical,
    so ``A = Q A~ Q^T`` with ``Q`` the orthonormal map that merges them into one row/column of
    weight ``sqrt(p)``; the Moore–Penrose iteration started at ``A^T / s`` stays in that subspace,
    so it runs on the ``(n+1) x (n+1)`` matrix ``A~`` with the same scale ``s`` (max row sum times
    max column sum of the full ``A`` over the batch). Same values as the padded computation.
    From ``SPECTRAL_MIN_SIZE`` rows on (and ``spectral``) the iterations run through
    :func:`newton_schulz_spectral`.
    """
    n = q.shape[-2]
    p = m - n
    s = q @ k.transpose(-1, -2)  # content logits; every logit against a padding key is 0
    shift = s.amax(-1, keepdim=True).clamp(min=0)
    e = torch.exp(s - shift)
    pad_w = torch.exp(-shift)
    norm = e.sum(-1, keepdim=True) + p * pad_w
    d = e / norm  # content rows, content columns
    c = pad_w / norm  # content rows, each padding column
    root_p = float(p) ** 0.5
    top = torch.cat([torch.full_like(c[..., :1, :], p / m), torch.full_like(d[..., :1, :], root_p / m)], dim=-1)
    a_small = torch.cat([top, torch.cat([root_p * c, d], dim=-1)], dim=-2)  # [B, H, n+1, n+1]
    # scale of the iteration start: row sums of A are 1 up to rounding; column sums from the blocks
    row_max = torch.maximum((p * c + d.sum(-1, keepdim=True)).amax(), torch.tensor(p / m + n / m, dtype=d.dtype))
    col_content = p / m + d.sum(-2)
    col_max = col_content.amax() if p == 0 else torch.maximum(col_content.amax(), (p / m + c.sum(-2)).amax())
    lead = a_small.shape[:-2]
    a_flat = a_small.reshape(-1, n + 1, n + 1)
    if spectral and n + 1 >= SPECTRAL_MIN_SIZE:
        w = newton_schulz_spectral(a_flat, iters, "xzx", scale=row_max * col_max).reshape(*lead, n + 1, n + 1)
        return w[..., 1:, 1:] @ v
    z = a_flat.transpose(-1, -2) / (row_max * col_max)
    eye = torch.eye(n + 1, dtype=d.dtype, device=d.device)
    eye7, eye15, eye13q = 7 * eye, 15 * eye, 3.25 * eye
    for _ in range(iters):  # z <- z (13I - xz(15I - xz(7I - xz))) / 4, as fused multiply-adds
        xz = torch.bmm(a_flat, z)
        t = torch.baddbmm(eye15, xz, eye7 - xz, alpha=-1)
        z = torch.bmm(z, torch.baddbmm(eye13q, xz, t, alpha=-0.25))
    w = torch.bmm(torch.bmm(a_flat, z), a_flat).reshape(*lead, n + 1, n + 1)
    return w[..., 1:, 1:] @ v


def _padded_softmax(s: torch.Tensor, n_pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the rows of ``[s, 0, ..., 0]`` (``n_pad`` zero logits appended): the content columns
    and the value every zero column takes ``[..., 1]``."""
    shift = s.amax(-1, keepdim=True).clamp(min=0)
    e = torch.exp(s - shift)
    pad_w = torch.exp(-shift)
    norm = e.sum(-1, keepdim=True) + n_pad * pad_w
    return e / norm, pad_w / norm


def padded_landmark_nystrom(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int, iters: int,
                            spectral: bool = True) -> torch.Tensor:
    """Nyström attention of ``n > m`` tokens (``q`` already scaled; ``[B, H, n, d]``) without the padding tokens.

    The generic computation front-pads the sequence with ``p = (m - n % m) % m`` zero tokens and
    takes landmarks as means of ``g = (n + p) / m`` consecutive tokens, so the first ``z = p // g``
    landmarks are zero vectors (a 145-token bag on 128 landmarks: ``p = 111``, ``z = 55``). Every
    zero landmark gives a logit 0 against every key and every zero key a logit 0, so the ``m x m``
    kernel ``A = softmax(Q~ K~^T)`` has ``z`` identical rows (``1/m`` everywhere) and ``z`` identical
    columns: ``A = Q A~ Q^T`` with ``Q`` the orthonormal map merging them into one row and column of
    weight ``sqrt(z)``, and the Moore–Penrose iterations started at ``A^T / s`` stay in that subspace,
    so they run on ``A~`` (``(m - z + 1)`` rows) with the full matrix's scale ``s``. The left kernel
    is needed for the ``n`` content rows only (the output is cut to them) and the right kernel's zero
    landmark rows are all ``sum(V) / (n + p)``; zero keys enter the softmax normalisers only. The
    same function of ``q``, ``k``, ``v`` as the padded computation (values and gradients).

    Requires ``z >= 1``; returns the content rows' attention output ``[B, H, n, d]``.
    """
    n = q.shape[-2]
    p = (m - n % m) % m
    group = (n + p) // m
    z = p // group
    if z < 1:
        raise ValueError(f"padded_landmark_nystrom: no landmark is padding only (n={n}, m={m})")
    r = m - z
    mixed = p - z * group  # zeros inside the first content landmark

    def landmarks(t: torch.Tensor) -> torch.Tensor:  # the generic path's means of the last r groups
        if mixed:
            t = F.pad(t, (0, 0, mixed, 0))
        return t.reshape(*t.shape[:-2], r, group, t.shape[-1]).mean(dim=-2)

    q_land, k_land = landmarks(q), landmarks(k)
    d1, c1 = _padded_softmax(q @ k_land.transpose(-1, -2), z)  # content queries x landmarks
    d2, c2 = _padded_softmax(q_land @ k_land.transpose(-1, -2), z)  # content landmarks x landmarks
    d3, _ = _padded_softmax(q_land @ k.transpose(-1, -2), p)  # content landmarks x content keys
    root_z = float(z) ** 0.5
    top = torch.cat([torch.full_like(c2[..., :1, :], z / m), torch.full_like(d2[..., :1, :], root_z / m)], dim=-1)
    a_small = torch.cat([top, torch.cat([root_z * c2, d2], dim=-1)], dim=-2)  # [B, H, r+1, r+1]
    # the full kernel's max row sum and max column sum (zero rows: m entries 1/m)
    row_max = torch.maximum((z * c2 + d2.sum(-1, keepdim=True)).amax(), torch.tensor(z / m + r / m, dtype=d2.dtype))
    col_max = torch.maximum((z / m + d2.sum(-2)).amax(), (z / m + c2.sum(-2)).amax())
    lead = a_small.shape[:-2]
    a_flat = a_small.reshape(-1, r + 1, r + 1)
    if spectral and r + 1 >= SPECTRAL_MIN_SIZE:
        pinv = newton_schulz_spectral(a_flat, iters, "pinv", scale=row_max * col_max)
    else:
        pinv = moore_penrose_pinv(a_flat, iters, scale=row_max * col_max)
    pinv = pinv.reshape(*lead, r + 1, r + 1)
    left = torch.cat([root_z * c1, d1], dim=-1)  # [B, H, n, r+1]
    right = torch.cat([v.sum(-2, keepdim=True) * (root_z / (n + p)), d3 @ v], dim=-2)  # [B, H, r+1, d]
    return (left @ pinv) @ right


class TransLayer(nn.Module):
    """Pre-norm residual Nyström attention block without a feed-forward sub-layer."""

    def __init__(self, dim: int = 512, heads: int = 8, num_landmarks: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = NystromAttention(dim=dim, heads=heads, dim_head=dim // heads,
                                     num_landmarks=num_landmarks or dim // 2, pinv_iterations=6,
                                     residual_kernel=33, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


class PPEG(nn.Module):
    """Pyramid position encoding generator: ``x + DW7(x) + DW5(x) + DW3(x)`` on the token grid.

    The three depth-wise convolutions are computed as one 7 x 7 convolution whose kernel is their
    sum (the 5 x 5 and 3 x 3 kernels centred) and whose bias is the sum of the three biases: the
    same linear map, one convolution forward and backward instead of three (``merged = False``:
    the three convolutions).
    """

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        self.p7 = nn.Conv2d(dim, dim, 7, 1, 3, groups=dim)
        self.p5 = nn.Conv2d(dim, dim, 5, 1, 2, groups=dim)
        self.p3 = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.merged = not explicit_requested()

    def forward(self, x: torch.Tensor, side: int) -> torch.Tensor:
        cls, tokens = x[:, :1], x[:, 1:]
        b, _n, c = tokens.shape
        grid = tokens.transpose(1, 2).reshape(b, c, side, side)
        if self.merged:
            kernel = self.p7.weight + F.pad(self.p5.weight, (1, 1, 1, 1)) + F.pad(self.p3.weight, (2, 2, 2, 2))
            bias = self.p7.bias + self.p5.bias + self.p3.bias
            grid = grid + F.conv2d(grid, kernel, bias, padding=3, groups=c)
        else:
            grid = grid + self.p7(grid) + self.p5(grid) + self.p3(grid)
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)


class TokenTransformer(nn.Module):
    """Class token + tokens through two TransLayers (8 heads, no FFN), final LayerNorm; returns the class token.

    This is CCL's fusion Transformer (width 256, 128 landmarks: a short sequence is zero-padded at
    the front to 128 positions, as in the official code).
    """

    def __init__(self, dim: int = 256, heads: int = 8, num_landmarks: int | None = None,
                 cls_std: float = 1e-6) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * cls_std)
        self.layer1 = TransLayer(dim, heads, num_landmarks)
        self.layer2 = TransLayer(dim, heads, num_landmarks)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        x = self.layer2(self.layer1(x))
        return self.norm(x)[:, 0]


class TransMILBody(nn.Module):
    """TransMIL's sequence model on one bag ``[1, N, dim]``: returns all tokens ``[1, 1 + side^2, dim]``.

    Square padding repeats the first ``side^2 - N`` tokens at the end (wrap-around), a class token is
    prepended, then TransLayer -> PPEG -> TransLayer -> LayerNorm.
    """

    def __init__(self, dim: int = 512, heads: int = 8, num_landmarks: int | None = None,
                 cls_std: float | None = None) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * (cls_std if cls_std is not None else 1.0))
        self.layer1 = TransLayer(dim, heads, num_landmarks)
        self.ppeg = PPEG(dim)
        self.layer2 = TransLayer(dim, heads, num_landmarks)
        self.norm = nn.LayerNorm(dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = h.shape[1]
        side = math.ceil(math.sqrt(n))
        extra = side * side - n
        if extra:
            reps = -(-extra // n)
            h = torch.cat([h, h.repeat(1, reps, 1)[:, :extra]], dim=1)
        x = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
        x = self.layer1(x)
        x = self.ppeg(x, side)
        x = self.layer2(x)
        return self.norm(x)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


class TokenAggregation(nn.Module):
    """``n`` tokens -> 1: a 1x1 Conv1d over the tokens (as channels), InstanceNorm over features, ReLU.

    On ``[B, n, d]`` it returns ``[B, d]``: a learned weighted sum of the tokens standardised across
    the ``d`` features (CCL's 6->1 and k->1 aggregation).
    """

    def __init__(self, n_tokens: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_tokens, 1, kernel_size=1)
        self.norm = nn.InstanceNorm1d(1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(tokens))).squeeze(1)


class GroupGenomicEncoder(nn.Module):
    """CCL's genomic branch: per-group SNN block (SELU, AlphaDropout) -> shared SNN block -> 6->1 aggregation.

    Returns ``(F_g [B, dim], tokens [B, 6, dim])``.
    """

    def __init__(self, group_sizes: tuple[int, ...], dim: int = 256, dropout: float = 0.15) -> None:
        super().__init__()
        self.groups = nn.ModuleList(snn_block(n, dim, "selu", dropout) for n in group_sizes)
        self.shared = snn_block(dim, dim, "selu", dropout)
        self.aggregate = TokenAggregation(len(group_sizes))

    def forward(self, groups: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.shared(torch.stack([net(g) for net, g in zip(self.groups, groups, strict=True)], dim=1))
        return self.aggregate(tokens), tokens


class TransMILPathology(nn.Module):
    """DualTrans's pathology branch: Linear(D_in -> dim) + ReLU on every patch, TransMIL body, class token.

    Bags of a padded batch are processed one by one on their real patches (see :func:`per_sample`).
    """

    def __init__(self, in_dim: int, dim: int = 256) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU())
        self.body = TransMILBody(dim, heads=8, cls_std=1e-6)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return per_sample(lambda bag: self.body(self.fc(bag))[:, 0], x, mask)
