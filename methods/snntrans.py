"""SNNTrans: per-group SNN layers followed by a Transformer over the six group tokens (genomics only)."""

from __future__ import annotations

import torch
from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.layers import TokenTransformer, snn_block


@register(MethodInfo(
    name="snntrans",
    title="SNNTrans",
    modality="genomics",
    paper="Baseline built by the CCL paper (Zhou et al., IEEE TMI 2024): 'two SNN layers followed with a transformer'",
    official_code=None,
    reported=table1_row("SNNTrans"),
    selection="best-val",
    tie="latest",
    genomics="groups",
    reimplementation=True,
    notes=(
        "No code exists; reconstructed in CCL's code style (spec §4): per-group SNN block (SELU, AlphaDropout "
        "0.15) -> shared SNN block -> 6 tokens -> CCL's fusion Transformer (class token, two Nyström TransLayers "
        "without FFN, LayerNorm) -> Linear(256->4). Trained with the CCL protocol (SGD 1e-3, 30 epochs)."
    ),
    order=20,
))
class SNNTrans(SurvivalModel):
    def __init__(self, dims: InputDims, dim: int = 256, dropout: float = 0.15) -> None:
        super().__init__()
        self.group_nets = nn.ModuleList(snn_block(n, dim, "selu", dropout) for n in dims.group_sizes)
        self.shared = snn_block(dim, dim, "selu", dropout)
        self.transformer = TokenTransformer(dim)
        self.classifier = nn.Linear(dim, dims.n_bins)

    def forward(self, batch: Batch) -> ModelOutput:
        tokens = torch.stack([net(g) for net, g in zip(self.group_nets, batch.groups, strict=True)], dim=1)
        return ModelOutput(self.classifier(self.transformer(self.shared(tokens))))
