"""The types a method is built with, receives and returns: InputDims, Batch, ModelOutput, SurvivalModel.

A method's model is built as ``Model(dims: InputDims, **hparams)`` and called as
``model(batch: Batch) -> ModelOutput``; the data layer fills these types, the engine consumes the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: Short names of the six signature families, in the order of signatures.csv (``InputDims.group_sizes``,
#: ``Batch.groups`` and ``InputDims.group_columns`` follow it).
GROUP_NAMES = ("tsg", "onco", "pk", "celldiff", "tf", "cyto")


@dataclass(frozen=True)
class InputDims:
    """What a model is told about its inputs when it is built."""

    path_dim: int | None  # patch feature dimension (None for genomics-only methods)
    omic_dim: int  # number of genomic columns (all of them)
    group_sizes: tuple[int, ...]  # sizes of the six signature groups
    n_bins: int  # number of discrete time bins (hazard outputs)
    cohort: str  # canonical cohort name, e.g. tcga_blca
    # Labels of the training fold, for methods that fit label-derived quantities (e.g. CCL's r
    # patient groups) on the training fold only. None outside a fold (inspection, parameter counts).
    train_time: Any = None
    train_censorship: Any = None
    # Names of the genomic columns (batch.omic's order) and each signature group's column indices,
    # for methods that build their own genomic tokens (e.g. SurvPath from pathways).
    omic_columns: tuple[str, ...] = ()
    group_columns: tuple[tuple[int, ...], ...] = ()


@dataclass
class Batch:
    """What a model receives.

    Attributes:
        x: patch features ``[B, Nmax, D]`` float32 (None for genomics-only methods).
        mask: ``[B, Nmax]`` bool, True for real patches (padding is False).
        omic: all standardised genomic columns ``[B, G]``.
        groups: the six signature groups, each ``[B, g_i]``.
        bins: discrete time-bin label ``[B]`` (long).
        censorship: ``[B]`` float, 1 = censored.
        time: survival months ``[B]``.
        index: patient indices into the cohort ``[B]``.
        case_ids: patient ids.
    """

    x: torch.Tensor | None
    mask: torch.Tensor | None
    omic: torch.Tensor
    groups: list[torch.Tensor]
    bins: torch.Tensor
    censorship: torch.Tensor
    time: torch.Tensor
    index: torch.Tensor
    case_ids: list[str]

    @property
    def size(self) -> int:
        return int(self.bins.shape[0])


@dataclass
class ModelOutput:
    """A model's output: hazard logits ``[B, n_bins]`` and optional auxiliary losses.

    ``aux`` losses are scalar tensors already weighted; the engine adds them to the NLL loss
    (times ``nll_weight``) in training and reports them. ``extras`` carries anything a method wants to expose
    (attention maps, ...); the engine ignores it.
    """

    logits: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    nll_weight: float = 1.0  # weight of the survival NLL in the training loss (CLAM's bag_weight)


class SurvivalModel(nn.Module):
    """Base class of every method's model: ``forward(batch) -> ModelOutput``.

    State a method must keep across iterations (CCL's anchor and cohort bank) belongs in
    registered buffers, so it is saved and restored with the model's ``state_dict``.
    """

    def forward(self, batch: Any) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_stats(self) -> dict[str, int | float]:
        """Counts a method reports about the whole run (recorded in the manifest as ``model_stats``)."""
        return {}
