"""TransMIL: Nyström Transformer with pyramid position encoding over the bag's patches (pathology only)."""

from __future__ import annotations

from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.layers import TransMILBody, per_sample


@register(MethodInfo(
    name="transmil",
    title="TransMIL",
    modality="pathology",
    paper="Shao et al., TransMIL: Transformer based Correlated Multiple Instance Learning for Whole Slide Image "
          "Classification, NeurIPS 2021",
    official_code="https://github.com/szc19990412/TransMIL (classification only; no survival code)",
    reported=table1_row("TransMIL"),
    selection="best-val",
    tie="latest",
    reimplementation=True,
    notes=(
        "Structure as the original TransMIL (spec §7): Linear(1024->512)->ReLU; square padding by repeating the first "
        "ceil(sqrt(N))^2 - N patches at the end; class token; TransLayer (pre-LN Nyström attention, 8 heads x 64, 256 "
        "landmarks, 6 pinv iterations, value-residual conv 33, dropout 0.1, no FFN); PPEG (depth-wise 7/5/3 convs on "
        "the square grid); TransLayer; LayerNorm; class token -> Linear(512->4) -> sigmoid hazards. Default PyTorch "
        "init; class token N(0, 1) as in the original (cls_std=1e-6 gives the CMTA/CCL copies' init). "
        "[inferred] TransMIL has no official survival code: the survival head (4 independent sigmoid hazards, NLL) "
        "and the training protocol are CCL's (bench.toml [train]: SGD 1e-3, momentum 0, 30 epochs, batch 1, uniform "
        "shuffling) and the fold score is CCL's best validation epoch with ties to the latest (>=). "
        "Batches > 1 run each bag separately (the square grid and the Nyström padding depend on the bag length), so "
        "padding never changes a patient's output."
    ),
    order=80,
))
class TransMIL(SurvivalModel):
    def __init__(self, dims: InputDims, dim: int = 512, heads: int = 8, landmarks: int = 256,
                 cls_std: float = 1.0) -> None:
        super().__init__()
        assert dims.path_dim is not None
        self.fc = nn.Sequential(nn.Linear(dims.path_dim, dim), nn.ReLU())
        self.body = TransMILBody(dim, heads, landmarks, cls_std=cls_std)
        self.classifier = nn.Linear(dim, dims.n_bins)

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.fc(batch.x)  # [B, N, dim]
        logits = per_sample(lambda bag: self.classifier(self.body(bag)[:, 0]), h, batch.mask)
        return ModelOutput(logits)
