"""Inputs for the methods' known-answer tests: tiny InputDims and hand-made Batches (no data read).

Two families, kept as the tests were written: ``_dims``/``_batch``/``_build`` (six groups of 3-7 columns,
16-d patches, models built with their registered defaults) and ``dims``/``make_batch`` (15 columns in
groups of 2-4, 8-d patches).
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench._core.config import load_settings
from bench.api import GROUP_NAMES, Batch, InputDims, get_method
from bench.data.cohort import load_cohort

ROOT = Path(__file__).resolve().parents[2]
UCEC_GROUPS = (3, 24, 21, 22, 65, 15)
TINY_GROUPS = (3, 4, 5, 6, 7, 5)


def _dims(groups=TINY_GROUPS, path_dim=16, cohort="tcga_toy") -> InputDims:
    return InputDims(path_dim=path_dim, omic_dim=sum(groups), group_sizes=groups, n_bins=4, cohort=cohort)


def _batch(lengths, groups=TINY_GROUPS, path_dim=16, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b, n = len(lengths), max(lengths)
    x = torch.randn(b, n, path_dim, generator=g)
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    x = x * mask[..., None]
    return Batch(x=x, mask=mask, omic=torch.randn(b, sum(groups), generator=g),
                 groups=[torch.randn(b, s, generator=g) for s in groups],
                 bins=torch.arange(b) % 4, censorship=(torch.arange(b) % 2).float(), time=torch.ones(b),
                 index=torch.arange(b) + 7, case_ids=[f"p{i}" for i in range(b)])


def _build(name: str, dims: InputDims, seed: int = 0, **hp):
    info = get_method(name)
    torch.manual_seed(seed)
    return info.build(dims, {**info.hparams, **hp})
GROUPS = (3, 2, 2, 2, 4, 2)
DimsWithColumns = InputDims  # InputDims carries omic_columns / group_columns


def dims(path_dim: int = 8, omic_dim: int = 15, n_bins: int = 4) -> InputDims:
    return InputDims(path_dim=path_dim, omic_dim=omic_dim, group_sizes=GROUPS, n_bins=n_bins, cohort="tcga_toy")


def make_batch(lengths=(5,), dim: int = 8, omic_dim: int = 15, bins=None, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b, n = len(lengths), max(lengths)
    x = torch.zeros(b, n, dim)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, m in enumerate(lengths):
        x[i, :m] = torch.randn(m, dim, generator=g)
        mask[i, :m] = True
    omic = torch.randn(b, omic_dim, generator=g)
    offsets = torch.tensor((0, *GROUPS)).cumsum(0)
    groups = [omic[:, int(offsets[i]):int(offsets[i + 1])] for i in range(len(GROUPS))]
    return Batch(x=x, mask=mask, omic=omic, groups=groups,
                 bins=torch.tensor(bins if bins is not None else [1] * b), censorship=torch.zeros(b),
                 time=torch.ones(b), index=torch.arange(b), case_ids=[f"p{i}" for i in range(b)])


def _ucec_dims(build: str = "mutsig") -> DimsWithColumns:
    co = load_cohort(load_settings(ROOT), "UCEC", build)
    return DimsWithColumns(path_dim=8, omic_dim=len(co.genomic_columns), group_sizes=co.group_sizes, n_bins=4,
                           cohort=co.name, omic_columns=tuple(co.genomic_columns),
                           group_columns=tuple(tuple(co.groups[g].tolist()) for g in GROUP_NAMES))


def assert_close_relative(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-10) -> None:
    """Equal to ``tol`` relative to the tensor's scale (elements near 0 carry the rounding of the large ones)."""
    assert got.shape == want.shape
    err = float((got - want).detach().abs().max() / want.detach().abs().max())
    assert err <= tol, err
