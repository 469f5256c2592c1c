"""Porpoise: AMIL pathology branch + SNN genomic branch, fused by a gated Kronecker product (multimodal)."""

from __future__ import annotations

import torch
from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.fusion import AttentionPool, GatedBilinearFusion
from methods.layers import init_xavier, snn_block


@register(MethodInfo(
    name="porpoise",
    title="Porpoise",
    modality="multimodal",
    paper=("Chen et al., Pan-cancer integrative histology-genomic analysis via multimodal deep learning, "
           "Cancer Cell 2022 (PORPOISE)"),
    official_code="https://github.com/mahmoodlab/MCAT (models/model_set_mil.py, MIL_Attention_FC_surv with fusion)",
    reported=table1_row("Porpoise"),
    selection="last",
    train={"optimizer": "adam", "lr": 2e-4, "weight_decay": 1e-5, "epochs": 20, "grad_accum": 32,
           "sampler": "balanced"},
    hparam_choices={"fusion": ("bilinear", "concat"), "init": ("default", "xavier")},
    genomics="all",
    notes=(
        "MCAT's AMIL with genomic fusion (spec §12.3; the PORPOISE repository itself was not read). Pathology: "
        "Linear(1024->512)->ReLU->Dropout(0.25), gated attention (256, dropout 0.25), softmax over the bag's patches "
        "(padding masked), rho Linear(512->256)->ReLU->Dropout. Genomics: 2 SNN blocks (ELU, AlphaDropout 0.25; 256, "
        "256) over every standardised genomic column. Fusion 'bilinear' (default, Porpoise's gated Kronecker fusion "
        "as in the code): per modality h = ReLU(Linear 256->32), gate sigmoid(Linear([path; omic] 512->32)), o = "
        "Dropout(ReLU(Linear 32->32)), append 1, outer product 33x33 = 1089 -> Dropout -> "
        "Linear(1089->256)->ReLU->Dropout -> Linear(256->256)->ReLU->Dropout; 'concat' (the CCL paper describes "
        "Porpoise as 'simply concatenated'): Linear(512->256)->ReLU->Linear(256->256)->ReLU. Head Linear(256->4). "
        "Init: PyTorch's default everywhere (init=default), as the official MIL_Attention_FC_surv and MCAT's "
        "BilinearFusion, which call no init helper; init=xavier gives xavier-normal weights and zero biases to every "
        "Linear over a fusion first drawn N(0, 1/fan_in), which reproduces survbench's runs before Dec 2026 exactly. "
        "Official MCAT training: Adam 2e-4, wd 1e-5, batch 1 with 32-step accumulation, 20 epochs, class-balanced "
        "sampler, NLL alpha 0, last-epoch score; MCAT's optional L1 penalty on the genomic branch ('pathomic' "
        "reg_type) is not applied (survbench's l1 covers all weights). Parameters 1.382 M + 256 x d_omic (spec: 1.38 "
        "M + 256 d_omic): 2.251 M at the spec's BLCA size (3392), 1.941 M on the bundled mutsig BLCA table (2181 "
        "columns). UCEC synthetic store (fold 0, one thread, train + validation): ~7.6 s per epoch."
    ),
    order=140,
))
class Porpoise(SurvivalModel):
    def __init__(self, dims: InputDims, fusion: str = "bilinear", hidden: int = 512, attn_hidden: int = 256,
                 dropout: float = 0.25, scale: int = 8, init: str = "default") -> None:
        super().__init__()
        assert dims.path_dim is not None
        out = attn_hidden
        self.fc = nn.Sequential(nn.Linear(dims.path_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.pool = AttentionPool(hidden, attn_hidden, dropout)
        self.rho = nn.Sequential(nn.Linear(hidden, out), nn.ReLU(), nn.Dropout(dropout))
        self.omic = nn.Sequential(snn_block(dims.omic_dim, out, "elu", dropout), snn_block(out, out, "elu", dropout))
        if fusion == "bilinear":
            # init=xavier is survbench's earlier initialisation, kept exactly (its random draws included):
            # the fusion drawn N(0, 1/fan_in) first, then every Linear re-drawn xavier-normal
            self.mm = GatedBilinearFusion(out, out, scale, scale, out=out, hidden=out, dropout=dropout,
                                          init="snn" if init == "xavier" else "default")
        else:
            self.mm = nn.Sequential(nn.Linear(2 * out, out), nn.ReLU(), nn.Linear(out, out), nn.ReLU())
        self.fusion = fusion
        self.classifier = nn.Linear(out, dims.n_bins)
        if init == "xavier":
            init_xavier(self)

    def forward(self, batch: Batch) -> ModelOutput:
        pooled, a = self.pool(self.fc(batch.x), batch.mask)
        h_path = self.rho(pooled)
        h_omic = self.omic(batch.omic)
        if self.fusion == "bilinear":
            h = self.mm(h_path, h_omic)
        else:
            h = self.mm(torch.cat([h_path, h_omic], dim=1))
        return ModelOutput(self.classifier(h), extras={"attention": a})
