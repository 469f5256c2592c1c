"""MaxMIL and MeanMIL: a shared instance projector, then max or mean pooling (pathology only)."""

from __future__ import annotations

from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.layers import masked_max, masked_mean

_NOTES = (
    "No code exists (CCL-built baseline, spec §6); reconstructed as Linear(1024->256)->ReLU->Dropout(0.25) on each "
    "patch, element-wise {op} over the bag's patches (padding masked), Linear(256->4). The alternative of pooling "
    "instance logits is not implemented. Trained with the CCL protocol (SGD 1e-3, 30 epochs, batch 1)."
)


class _PoolMIL(SurvivalModel):
    pool = staticmethod(masked_mean)

    def __init__(self, dims: InputDims, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        assert dims.path_dim is not None
        self.fc = nn.Sequential(nn.Linear(dims.path_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden, dims.n_bins)

    def forward(self, batch: Batch) -> ModelOutput:
        return ModelOutput(self.classifier(self.pool(self.fc(batch.x), batch.mask)))


@register(MethodInfo(
    name="maxmil",
    title="MaxMIL",
    modality="pathology",
    paper="Baseline built by the CCL paper (Zhou et al., IEEE TMI 2024): max aggregation of instances",
    reported=table1_row("MaxMIL"),
    selection="best-val",
    tie="latest",
    reimplementation=True,
    notes=_NOTES.format(op="max"),
    order=30,
))
class MaxMIL(_PoolMIL):
    pool = staticmethod(masked_max)


@register(MethodInfo(
    name="meanmil",
    title="MeanMIL",
    modality="pathology",
    paper="Baseline built by the CCL paper (Zhou et al., IEEE TMI 2024): mean aggregation of instances",
    reported=table1_row("MeanMIL"),
    selection="best-val",
    tie="latest",
    reimplementation=True,
    notes=_NOTES.format(op="mean"),
    order=40,
))
class MeanMIL(_PoolMIL):
    pool = staticmethod(masked_mean)
