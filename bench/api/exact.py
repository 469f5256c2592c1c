"""One switch for the methods' exact speed-ups (computations reorganised without changing the maths).

A method that computes something faster than its published code, with the same values and gradients up
to rounding (survbench's Nyström pseudo-inverse through one eigendecomposition, PPEG's convolutions as
one), reads :func:`explicit_requested` when its modules are built and, if it is set, keeps the
straightforward computation. ``bench perf --explicit`` and the equality tests build models inside
:func:`explicit_computation` to time and check both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_explicit = False


def explicit_requested() -> bool:
    """Whether models built now should skip their exact speed-ups."""
    return _explicit


@contextlib.contextmanager
def explicit_computation() -> Iterator[None]:
    """Models built inside run without their exact speed-ups (the setting is fixed at build time)."""
    global _explicit
    saved, _explicit = _explicit, True
    try:
        yield
    finally:
        _explicit = saved
