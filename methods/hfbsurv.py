"""HFBSurv: hierarchical factorised bilinear fusion of genomics and pathology (multimodal)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.fusion import MFB, AttentionPool


def _encoder(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    """HFBSurv's modality encoder: two Linear -> Tanh layers."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.Tanh(), nn.Dropout(dropout), nn.Linear(d_out, d_out), nn.Tanh())


@register(MethodInfo(
    name="hfbsurv",
    title="HFBSurv",
    modality="multimodal",
    paper=("Li et al., HFBSurv: hierarchical multimodal fusion with factorized bilinear models for cancer survival "
           "prediction, Bioinformatics 2022"),
    official_code="https://github.com/Liruiqing-ustc/HFBSurv (not read)",
    reported=table1_row("HFBSurv"),
    selection="best-val",
    tie="latest",
    hparam_choices={"norm": ("layer", "none")},
    variants={"paper-optim": {"train.optimizer": "adam", "train.lr": 1.2e-4, "train.weight_decay": 1e-6}},
    genomics="all",
    reimplementation=True,
    notes=(
        "[inferred] Re-implemented from the HFBSurv paper (no public code read; spec §12.6) as a bimodal "
        "(genomics + WSI) adaptation with the discrete-time head (HFBSurv: gene expression + CNA + hand-crafted "
        "pathology features, Cox loss). Pathology: Linear(1024->256)->ReLU->Dropout(0.25), gated-attention pooling "
        "(256; padding masked). Modality encoders: two Linear->Tanh layers each (dropout 0.25 between), pooled "
        "pathology 256->64->64 and all standardised genomic columns G->64->64. Intra-modal level: MFB of each "
        "modality with itself (rank 4 factorised bilinear pooling to 32 dims: U x * V x, dropout 0.1, sum over the "
        "rank, signed square root, L2 normalisation), then a sigmoid attention gate u * sigmoid(Linear(32->32) u). "
        "Cross-modal level: MFB of every modality pair, weighted by a softmax over the pairs of the cosine "
        "similarity of the pair's gated unimodal features (with two modalities there is one pair and its weight is "
        "1). Unimodal and bimodal parts concatenated (96) -> LayerNorm (HFBSurv uses BatchNorm, which cannot train "
        "with survbench's batch size 1; --set norm=none drops it) -> Linear(96->64)->Tanh->Dropout -> Linear(64->4). "
        "PyTorch default init. Trained with the CCL protocol (SGD 1e-3, 30 epochs, batch 1), best validation epoch "
        "(ties: latest); HFBSurv's own optimiser (Adam 1.2e-4, wd 1e-6) is the variant 'paper-optim'. Parameters "
        "0.695 M at the spec's BLCA size (3392 columns), 0.617 M on the bundled mutsig BLCA table ('small' in the "
        "spec). UCEC synthetic store (fold 0, one thread, train + validation): ~3.2 s per epoch."
    ),
    order=150,
))
class HFBSurv(SurvivalModel):
    def __init__(self, dims: InputDims, hidden: int = 256, attn_hidden: int = 256, enc_dim: int = 64,
                 mfb_out: int = 32, mfb_rank: int = 4, mfb_dropout: float = 0.1, dropout: float = 0.25,
                 mlp_hidden: int = 64, norm: str = "layer") -> None:
        super().__init__()
        assert dims.path_dim is not None
        self.fc = nn.Sequential(nn.Linear(dims.path_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.pool = AttentionPool(hidden, attn_hidden, dropout)
        self.encoders = nn.ModuleList([_encoder(hidden, enc_dim, dropout), _encoder(dims.omic_dim, enc_dim, dropout)])
        n_mod = len(self.encoders)
        self.intra = nn.ModuleList(MFB(enc_dim, enc_dim, mfb_out, mfb_rank, mfb_dropout) for _ in range(n_mod))
        self.gates = nn.ModuleList(nn.Linear(mfb_out, mfb_out) for _ in range(n_mod))
        self.pairs = list(itertools.combinations(range(n_mod), 2))
        self.cross = nn.ModuleList(MFB(enc_dim, enc_dim, mfb_out, mfb_rank, mfb_dropout) for _ in self.pairs)
        width = mfb_out * (n_mod + 1)
        self.norm = nn.LayerNorm(width) if norm == "layer" else nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(width, mlp_hidden), nn.Tanh(), nn.Dropout(dropout))
        self.classifier = nn.Linear(mlp_hidden, dims.n_bins)

    def encode(self, batch: Batch) -> list[torch.Tensor]:
        """Encoded modality vectors ``[pathology, genomics]``, each ``[B, enc_dim]``."""
        pooled, _ = self.pool(self.fc(batch.x), batch.mask)
        return [enc(v) for enc, v in zip(self.encoders, (pooled, batch.omic), strict=True)]

    def forward(self, batch: Batch) -> ModelOutput:
        z = self.encode(batch)
        uni = []
        for mfb, gate, v in zip(self.intra, self.gates, z, strict=True):
            u = mfb(v, v)
            uni.append(u * torch.sigmoid(gate(u)))
        sims = torch.stack([F.cosine_similarity(uni[i], uni[j], dim=1) for i, j in self.pairs], dim=1)
        weights = torch.softmax(sims, dim=1)  # [B, n_pairs]
        bi = sum(weights[:, k:k + 1] * mfb(z[i], z[j]) for k, ((i, j), mfb) in enumerate(zip(self.pairs, self.cross,
                                                                                              strict=True)))
        h = self.norm(torch.cat([*uni, bi], dim=1))
        return ModelOutput(self.classifier(self.mlp(h)), extras={"pair_weights": weights})
