"""SNN: self-normalising network on the genomic profile (genomics only)."""

from __future__ import annotations

import itertools

from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.layers import init_snn_weights, snn_block


@register(MethodInfo(
    name="snn",
    title="SNN",
    modality="genomics",
    paper="Klambauer et al., Self-Normalizing Neural Networks, NeurIPS 2017; survival head as in MCAT (ICCV 2021)",
    official_code="https://github.com/mahmoodlab/MCAT (models/model_genomic.py)",
    reported=table1_row("SNN"),
    selection="last",
    train={"optimizer": "adam", "lr": 2e-4, "weight_decay": 1e-5, "epochs": 20, "grad_accum": 32,
           "sampler": "balanced", "l1": 1e-4},
    hparam_choices={"activation": ("elu", "selu")},
    variants={"ccl-protocol": {"activation": "selu", "dropout": 0.15, "optimizer": "sgd", "lr": 1e-3,
                               "momentum": 0.0, "epochs": 30, "grad_accum": 1, "sampler": "uniform", "l1": 0.0}},
    genomics="all",
    notes=(
        "MCAT's 'small' SNN: 4 blocks Linear->ELU->AlphaDropout(0.25) of width 256 over every standardised genomic "
        "column, N(0, 1/fan_in) init, Linear(256->4). Official MCAT run: Adam 2e-4, wd 1e-5, L1 1e-4 on all "
        "weights, batch 1 with 32-step gradient accumulation, 20 epochs, class-balanced sampler, last-epoch score. "
        "CCL's own SNN configuration is not released; variant ccl-protocol uses CCL's SNN block (SELU, "
        "AlphaDropout 0.15) and CCL's training protocol (SGD 1e-3, momentum 0, 30 epochs, batch 1, uniform shuffle)."
    ),
    order=10,
))
class SNN(SurvivalModel):
    """``blocks`` SNN blocks over all genomic columns, then a linear hazard head."""

    def __init__(self, dims: InputDims, hidden: int = 256, blocks: int = 4, dropout: float = 0.25,
                 activation: str = "elu") -> None:
        super().__init__()
        widths = [dims.omic_dim] + [hidden] * blocks
        self.fc = nn.Sequential(*(snn_block(a, b, activation, dropout) for a, b in itertools.pairwise(widths)))
        self.classifier = nn.Linear(hidden, dims.n_bins)
        init_snn_weights(self)

    def forward(self, batch: Batch) -> ModelOutput:
        return ModelOutput(self.classifier(self.fc(batch.omic)))
