"""GPDBN: genomic-pathology deep bilinear network with inter- and intra-modal bilinear encodings (multimodal)."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.fusion import AttentionPool, kronecker
from methods.layers import init_xavier, snn_block


@register(MethodInfo(
    name="gpdbn",
    title="GPDBN",
    modality="multimodal",
    paper=("Wang et al., GPDBN: deep bilinear network integrating both genomic data and pathological images for "
           "breast cancer prognosis prediction, Bioinformatics 2021"),
    official_code="https://github.com/isfj/GPDBN (not read)",
    reported=table1_row("GPDBN"),
    selection="best-val",
    tie="latest",
    genomics="all",
    reimplementation=True,
    notes=(
        "[inferred] Re-implemented from the GPDBN paper (no public code read; spec §12.5), adapted to WSI bags and "
        "the discrete-time head. GPDBN's inputs are two low-dimensional vectors (32 pre-selected gene features, 32 "
        "hand-crafted image features); here they are learned: pathology = Linear(1024->256)->ReLU->Dropout(0.25), "
        "gated-attention pooling (256, dropout 0.25; padding masked) -> Linear(256->32)->ReLU; genomics = SNN "
        "blocks (ELU, AlphaDropout 0.25) over every standardised genomic column -> 256 -> 32. Bilinear feature "
        "encoding modules: inter-modal g (x) p and intra-modal g (x) g, p (x) p (plain outer products, 32x32 = "
        "1024, no appended 1), each Linear(1024->20)->ReLU. Concatenation [g, p, inter, intra_g, intra_p] (124) "
        "-> MLP with hidden widths 500, 256, 128, 32 (ReLU, Dropout 0.1; the spec's '500->256->128->32' read as "
        "hidden widths; --set mlp=[...] changes them) -> Linear(32->4) hazard logits (GPDBN's Cox risk head, a "
        "sigmoid scaled to [-3, 3], is "
        "replaced by survbench's discrete-time head; Cox loss -> NLL). Xavier-normal init. Trained with the CCL "
        "protocol (SGD 1e-3, 30 epochs, batch 1), best validation epoch (ties: latest). Parameters 1.569 M at the "
        "spec's BLCA size (3392 columns; the genomic SNN's first layer takes 0.87 M), 1.259 M on the bundled mutsig "
        "BLCA table; the spec only says 'small' (it counts the original 32+32 inputs). UCEC synthetic store "
        "(fold 0, one thread, train + validation): ~3.7 s per epoch."
    ),
    order=130,
))
class GPDBN(SurvivalModel):
    def __init__(self, dims: InputDims, hidden: int = 256, attn_hidden: int = 256, dim: int = 32,
                 bilinear_out: int = 20, mlp: tuple[int, ...] = (500, 256, 128, 32), dropout: float = 0.25,
                 mlp_dropout: float = 0.1) -> None:
        super().__init__()
        assert dims.path_dim is not None
        self.fc = nn.Sequential(nn.Linear(dims.path_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.pool = AttentionPool(hidden, attn_hidden, dropout)
        self.path_out = nn.Sequential(nn.Linear(hidden, dim), nn.ReLU())
        self.omic = nn.Sequential(snn_block(dims.omic_dim, hidden, "elu", dropout),
                                  snn_block(hidden, dim, "elu", dropout))
        self.inter = nn.Sequential(nn.Linear(dim * dim, bilinear_out), nn.ReLU())
        self.intra_g = nn.Sequential(nn.Linear(dim * dim, bilinear_out), nn.ReLU())
        self.intra_p = nn.Sequential(nn.Linear(dim * dim, bilinear_out), nn.ReLU())
        widths = [2 * dim + 3 * bilinear_out] + [int(w) for w in mlp]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(mlp_dropout)]
        self.mlp = nn.Sequential(*layers)
        self.classifier = nn.Linear(widths[-1], dims.n_bins)
        init_xavier(self)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The two 32-d modality vectors (genomic, pathology)."""
        pooled, _ = self.pool(self.fc(batch.x), batch.mask)
        return self.omic(batch.omic), self.path_out(pooled)

    def forward(self, batch: Batch) -> ModelOutput:
        g, p = self.encode(batch)
        fused = torch.cat([g, p, self.inter(kronecker(g, p)), self.intra_g(kronecker(g, g)),
                           self.intra_p(kronecker(p, p))], dim=1)
        return ModelOutput(self.classifier(self.mlp(fused)))
