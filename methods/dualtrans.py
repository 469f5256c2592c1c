"""DualTrans: SNN genomics + TransMIL pathology + a Transformer for fusion (the CCL paper's baseline)."""

from __future__ import annotations

import torch
from torch import nn

from bench.api import Batch, BenchError, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.layers import GroupGenomicEncoder, TokenTransformer, TransMILPathology


@register(MethodInfo(
    name="dualtrans",
    title="DualTrans",
    modality="multimodal",
    paper="Baseline built by the CCL paper (Zhou et al., IEEE TMI 2024): 'SNN and TransMIL for genomic profile and "
          "pathological images, respectively, while a Transformer is employed for multimodal fusion'",
    official_code=None,
    reported=table1_row("DualTrans"),
    selection="best-val",
    tie="latest",
    genomics="groups",
    reimplementation=True,
    notes=(
        "No code exists (spec §11); reconstructed from CCL's own blocks so that it is exactly CCL with "
        "cca=false, mkd=false, cgm=false (Table III's baseline row): F_g = CCL's genomic branch (per-group SNN "
        "block SELU/AlphaDropout 0.15, shared SNN block, 6->1 Conv1d+InstanceNorm+ReLU); F_p = class token of a "
        "TransMIL body at width 256 over all patches (Linear 1024->256 + ReLU, square wrap-padding, Nyström "
        "TransLayer, PPEG, TransLayer, LayerNorm); fusion = CCL's Transformer over [U, F_g, F_p]; Linear(256->4). "
        "NLL only; CCL training protocol (SGD 1e-3, momentum 0, 30 epochs, batch 1); best-val selection."
    ),
    order=100,
))
class DualTrans(SurvivalModel):
    def __init__(self, dims: InputDims, dim: int = 256, dropout: float = 0.15) -> None:
        super().__init__()
        if dims.path_dim is None:
            raise BenchError("DualTrans needs pathology features")
        self.genomic = GroupGenomicEncoder(dims.group_sizes, dim, dropout)
        self.pathology = TransMILPathology(dims.path_dim, dim)
        self.fusion = TokenTransformer(dim)
        self.classifier = nn.Linear(dim, dims.n_bins)

    def forward(self, batch: Batch) -> ModelOutput:
        f_g, _ = self.genomic(batch.groups)
        f_p = self.pathology(batch.x, batch.mask)
        return ModelOutput(self.classifier(self.fusion(torch.stack([f_g, f_p], dim=1))))
