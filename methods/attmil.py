"""AttMIL (ABMIL): gated attention pooling over the bag's patches (pathology only)."""

from __future__ import annotations

from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.layers import GatedAttention, init_xavier, masked_softmax


@register(MethodInfo(
    name="attmil",
    title="AttMIL",
    modality="pathology",
    paper="Ilse et al., Attention-based Deep Multiple Instance Learning, ICML 2018",
    official_code="https://github.com/mahmoodlab/MCAT (models/model_set_mil.py, MIL_Attention_FC_surv)",
    reported=table1_row("AttMIL"),
    selection="last",
    train={"optimizer": "adam", "lr": 2e-4, "weight_decay": 1e-5, "epochs": 20, "grad_accum": 32,
           "sampler": "balanced"},
    hparam_choices={"init": ("default", "xavier")},
    notes=(
        "MCAT's survival ABMIL ('small': 1024->512->256): Linear->ReLU->Dropout(0.25) projector, gated attention "
        "(tanh x sigmoid, 256), softmax over the bag's patches (padding masked), rho Linear(512->256)->ReLU->"
        "Dropout, Linear(256->4). Init: PyTorch's default (init=default), as the official "
        "MIL_Attention_FC_surv, which never calls MCAT's initialize_weights helper; init=xavier gives xavier-normal "
        "weights and zero biases (about 2x the default weight scale; what survbench used before Dec 2026). "
        "Official MCAT training: Adam 2e-4, wd 1e-5, 32-step accumulation, 20 epochs, class-balanced sampler, "
        "last-epoch score."
    ),
    order=50,
))
class AttMIL(SurvivalModel):
    def __init__(self, dims: InputDims, hidden: int = 512, attn_hidden: int = 256, dropout: float = 0.25,
                 init: str = "default") -> None:
        super().__init__()
        assert dims.path_dim is not None
        self.fc = nn.Sequential(nn.Linear(dims.path_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention = GatedAttention(hidden, attn_hidden, dropout)
        self.rho = nn.Sequential(nn.Linear(hidden, attn_hidden), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = nn.Linear(attn_hidden, dims.n_bins)
        if init == "xavier":
            init_xavier(self)

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.fc(batch.x)  # [B, N, hidden]
        a = masked_softmax(self.attention(h), batch.mask)  # [B, N, 1]
        pooled = (a * h).sum(dim=1)
        return ModelOutput(self.classifier(self.rho(pooled)), extras={"attention": a.squeeze(-1)})
