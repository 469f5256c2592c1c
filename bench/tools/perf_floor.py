"""The compute floor of a fold-epoch: its matrix-product FLOPs at this CPU's best measured GEMM rate.

``bench perf --cohort C --floor`` counts, in one untimed pass over the same patients it times, the
floating-point operations of every matrix product and convolution the epoch runs (forward and
backward; torch's own per-operator formulas, :data:`torch.utils.flop_counter.flop_registry`), split
by dtype, and the share of them in ``nn.Linear`` layers. Divided by the fastest rate a large square
GEMM reaches on one thread of this machine (measured in the same process), they give a lower bound on
the epoch's thread-seconds: every counted product runs at most at that rate, and everything not
counted (eigendecompositions, softmax, normalisation, the optimiser, Python) only adds time.

* ``floor_s``: all counted products of the computation as it runs now.
* ``linalg_s``: the seconds the epoch spends inside matrix decompositions (``torch.linalg``'s
  eigendecomposition and the like: LAPACK, not counted as products), timed in the same pass; added to
  ``floor_s`` it is a lower bound for the algorithm as it runs.
* ``linear_floor_s``: the ``nn.Linear`` layers alone (forward, weight gradient, and input gradient
  where the input needs one) — the products an exact implementation of the same model cannot drop
  short of computing fewer token rows.

A speed target below ``linear_floor_s`` is out of reach on this CPU without changing the maths.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import conv_flop_count, flop_registry


def conv_backward_flops(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, *args: object) -> int:
    """FLOPs of ``aten.convolution_backward``: each requested gradient (input, weight) costs the forward's.

    torch's own formula counts the weight gradient of a grouped convolution as if it were dense (512x too
    much for a depth-wise 512-channel one); the forward count, which reads ``C_in / groups`` from the
    weight's shape, is right for any grouping.
    """
    transposed, mask = bool(args[4]), args[7]
    forward = conv_flop_count(list(x.shape), list(weight.shape), list(grad_out.shape), transposed)
    return forward * (int(bool(mask[0])) + int(bool(mask[1])))  # type: ignore[index]


class ProductFlops(TorchDispatchMode):
    """Counts the FLOPs of matrix products and convolutions run inside it, by dtype (``flops[dtype]``), and
    times its matrix decompositions (``linalg_s``: the seconds spent inside ``aten`` ``linalg`` operators
    such as the eigendecomposition of the spectral pseudo-inverse).

    Uses torch's per-operator formulas (``2 m k n`` for ``m x k @ k x n``; convolutions by output
    positions x kernel x channels per group), except for convolution backward
    (:func:`conv_backward_flops`); operators without a formula count nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops: dict[torch.dtype, int] = defaultdict(int)
        self.linalg_s = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if "linalg_" in packet.__name__:
            t0 = time.perf_counter()
            out = func(*args, **kwargs)
            self.linalg_s += time.perf_counter() - t0
            return out
        out = func(*args, **kwargs)
        formula = flop_registry.get(packet)
        if packet is torch.ops.aten.convolution_backward:
            self.flops[args[0].dtype] += conv_backward_flops(*args)
        elif formula is not None:
            first = next(a for a in args if isinstance(a, torch.Tensor))
            self.flops[first.dtype] += int(formula(*args, **kwargs, out_val=out))
        return out


@contextmanager
def linear_flops(model: nn.Module) -> Iterator[list[int]]:
    """Within the block, ``total[0]`` accumulates the FLOPs of ``model``'s ``nn.Linear`` layers.

    Per call: ``2 x rows x in x out`` forward; under autograd the same again for the weight gradient
    (a trained weight) and for the input gradient (an input that needs one: not the first layer on
    fixed features).
    """
    total = [0]

    def hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inputs[0]
        fwd = 2 * (x.numel() // module.in_features) * module.in_features * module.out_features
        backward = int(module.weight.requires_grad) + int(x.requires_grad) if torch.is_grad_enabled() else 0
        total[0] += fwd * (1 + backward)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        yield total
    finally:
        for h in handles:
            h.remove()


def gemm_rate(dtype: torch.dtype, sizes: tuple[int, ...] = (512, 1024), repeats: int = 5,
              device: torch.device | str = "cpu") -> float:
    """The fastest FLOP/s a square ``n x n @ n x n`` product reaches in this process (current thread count).

    Args:
        dtype: ``torch.float32`` or ``torch.float64``.
        sizes: the ``n`` tried; the best over sizes and repeats is returned.
        repeats: timed products per size (after one untimed warm-up).
        device: where the product runs (a GPU is synchronised around each timed product).
    """
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = 0.0
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        a = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
        b = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
        out = torch.empty(n, n, dtype=dtype, device=device)
        torch.mm(a, b, out=out)
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            sync()
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    return best


@dataclass
class FloorCount:
    """One method's counted FLOPs per fold-epoch (training pass + validation pass, scaled to the fold)."""

    method: str
    explicit: bool = False  # counted with the exact speed-ups off
    flops: dict[str, float] = field(default_factory=dict)  # dtype name -> FLOPs of all counted products
    linear_flops: float = 0.0
    linalg_s: float = 0.0  # measured seconds inside matrix decompositions (eigh, ...)

    def floor_s(self, rates: dict[str, float]) -> float:
        """Thread-seconds of all counted products at ``rates`` (FLOP/s per dtype name; float32's for others)."""
        return sum(f / rates.get(d, rates["float32"]) for d, f in self.flops.items())

    def linear_floor_s(self, rates: dict[str, float]) -> float:
        """Thread-seconds of the ``nn.Linear`` products alone (float32) at ``rates``."""
        return self.linear_flops / rates["float32"]
