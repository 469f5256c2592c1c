"""CMTA: pathology and genomics encoder-decoders with cross-modal translation and alignment (multimodal)."""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.coattn import FUSIONS, CoAttention, SignatureNets, TokenEncoder, make_fusion
from methods.layers import TransMILBody, init_xavier

#: Widths of the official model sizes: pathology projector and per-group genomic SNN stack.
SIZES = {
    "small": {"path": (256, 256), "omic": (1024, 256)},
    "large": {"path": (512, 256), "omic": (1024, 1024, 1024, 256)},
}
ALIGN_LOSSES = ("l1", "mse", "cos", "kl")


def alignment_loss(target: torch.Tensor, pred: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Distance between an encoder's class token ``target`` (detached) and its decoder's ``pred`` (``[B, d]``).

    ``l1`` / ``mse``: mean absolute / squared error over all entries (``nn.L1Loss`` / ``nn.MSELoss``);
    ``cos``: ``1 - cos(target, pred)`` averaged over the batch; ``kl``: ``KL(softmax(target) || softmax(pred))``
    summed over features, averaged over the batch. These are the similarity options of the official
    loss factory (``nll_surv_l1`` is the one run.sh uses).
    """
    target = target.detach()
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "cos":
        return (1 - F.cosine_similarity(target, pred, dim=-1)).mean()
    if kind == "kl":
        kl = F.kl_div(torch.log_softmax(pred, dim=-1), torch.softmax(target, dim=-1), reduction="none")
        return kl.sum(dim=-1).mean()
    raise ValueError(f"unknown alignment loss '{kind}'; choose one of {', '.join(ALIGN_LOSSES)}")


@register(MethodInfo(
    name="cmta",
    title="CMTA",
    modality="multimodal",
    paper="Zhou & Chen, Cross-Modal Translation and Alignment for Survival Analysis, ICCV 2023",
    official_code="https://github.com/FT-ZHOU-ZZZ/CMTA (models/cmta/network.py, engine.py, utils/loss.py, run.sh)",
    reported=table1_row("CMTA"),
    selection="best-val",
    tie="earliest",
    train={"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-5, "epochs": 30, "batch_size": 1,
           "grad_accum": 1, "sampler": "balanced"},
    data={"patch_cap_eval": True},
    hparam_choices={"model_size": tuple(SIZES), "fusion": FUSIONS, "align_loss": ALIGN_LOSSES},
    cohort_defaults={"tcga_blca": {"align_weight": 1.0}, "tcga_brca": {"align_weight": 100.0},
                     "tcga_gbmlgg": {"align_weight": 1.0}, "tcga_luad": {"align_weight": 1e-4},
                     "tcga_ucec": {"align_weight": 1.0}},
    genomics="groups",
    notes=(
        "Official CMTA (spec §10), model_size 'small': patches "
        "Linear(1024->256)->ReLU->Dropout(0.25)->Linear(256->256)->ReLU->Dropout; per signature group SNN blocks 1024"
        " -> 256 (ELU, AlphaDropout 0.25) -> 6 genomic tokens. Pathology encoder and decoder = TransMIL bodies at "
        "width 256 (square wrap-padding, class token N(0, 1e-6^2), TransLayer, PPEG, TransLayer, LayerNorm; Nyström 8"
        " heads x 32, 128 landmarks); genomic encoder and decoder = class token + 2 TransLayers + LayerNorm. "
        "Translation: single-head attention P->G (queries = all encoded patch tokens, including the wrap-padding "
        "duplicates, keys/values = the 6 encoded genomic tokens) and G->P (queries = genomic tokens, keys/values = "
        "padded patch tokens); decoders on the translated tokens; fusion concat of (p_cls + p_hat)/2 and (g_cls + "
        "g_hat)/2 -> Linear(512->256)->ReLU->Linear->ReLU -> Linear(256->4). Init: xavier-normal Linear weights "
        "(attention out-projections included; the packed in-projections keep xavier-uniform), zero biases, LayerNorm "
        "(1, 0). Auxiliary loss 'align' = align_weight * [d(p_cls, p_hat) + d(g_cls, g_hat)] with the encoders' class"
        " tokens detached (stop-gradient targets) and d = L1 (mean absolute error; official loss nll_surv_l1); "
        "align_weight per cohort from run.sh (--alpha): BLCA 1, BRCA 100, GBMLGG 1, LUAD 1e-4, UCEC 1. align_loss = "
        "mse | cos | kl and fusion = bilinear and model_size = large are the other options of the official code. "
        "Training: SGD momentum 0.9, lr 1e-3, wd 1e-5, no scheduler, 30 epochs, batch 1, class-balanced sampler; fold"
        " score = best validation epoch (strict >). The official --OOM M option (random subset of M patches at every "
        "load, train and validation; off by default) is data.patch_cap=M with data.patch_cap_eval=true (set here). "
        "The spec lists no paper-vs-code difference for CMTA; the official code is followed throughout. Not "
        "reproduced: the official seed is set once per program, not per fold. Batches > 1 run each patient separately"
        " (grid, Nyström padding and pseudo-inverse scaling depend on the bag). Official genomic input: the signature"
        " groups of MCAT's full dataset_csv (survbench build mcat_full, bundled for UCEC only: --set "
        "genomics=mcat_full); by default runs use the project's default build (mutsig)."
    ),
    order=180,
))
class CMTA(SurvivalModel):
    def __init__(self, dims: InputDims, model_size: str = "small", fusion: str = "concat", align_weight: float = 1.0,
                 align_loss: str = "l1", dropout: float = 0.25) -> None:
        super().__init__()
        assert dims.path_dim is not None
        if align_loss not in ALIGN_LOSSES:
            raise ValueError(f"unknown alignment loss '{align_loss}'")
        self.align_weight, self.align_loss = align_weight, align_loss
        widths = SIZES[model_size]
        path_dims = [dims.path_dim, *widths["path"]]
        layers: list[nn.Module] = []
        for a, b in pairwise(path_dims):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        self.pathomics_fc = nn.Sequential(*layers)
        self.genomics_fc = SignatureNets(dims.group_sizes, widths["omic"], dropout)
        dim = widths["path"][-1]
        self.pathomics_encoder = TransMILBody(dim, heads=8, cls_std=1e-6)
        self.pathomics_decoder = TransMILBody(dim, heads=8, cls_std=1e-6)
        self.genomics_encoder = TokenEncoder(dim, heads=8, cls_std=1e-6)
        self.genomics_decoder = TokenEncoder(dim, heads=8, cls_std=1e-6)
        self.p_in_g = CoAttention(dim, heads=1)
        self.g_in_p = CoAttention(dim, heads=1)
        self.mm = make_fusion(fusion, dim, dropout)
        self.classifier = nn.Linear(dim, dims.n_bins)
        init_xavier(self)

    def _one(self, p_tok: torch.Tensor, g_tok: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One patient: ``p_tok [1, N, d]``, ``g_tok [1, 6, d]`` -> fused vector and the four class tokens."""
        p_enc = self.pathomics_encoder(p_tok)  # [1, 1 + side^2, d]
        g_enc = self.genomics_encoder(g_tok)  # [1, 1 + 6, d]
        p_cls, p_patches = p_enc[:, 0], p_enc[:, 1:]
        g_cls, g_patches = g_enc[:, 0], g_enc[:, 1:]
        p_in_g, _ = self.p_in_g(p_patches, g_patches, g_patches)  # pathology expressed with genomic values
        g_in_p, _ = self.g_in_p(g_patches, p_patches, p_patches)  # genomics expressed with pathology values
        p_hat = self.pathomics_decoder(p_in_g)[:, 0]
        g_hat = self.genomics_decoder(g_in_p)[:, 0]
        fused = self.mm((p_cls + p_hat) / 2, (g_cls + g_hat) / 2)
        return fused, p_cls, p_hat, g_cls, g_hat

    def forward(self, batch: Batch) -> ModelOutput:
        assert batch.x is not None
        p_tok = self.pathomics_fc(batch.x)  # [B, N, d]
        g_tok = self.genomics_fc(batch.groups)  # [B, 6, d]
        lengths = batch.mask.sum(dim=1).tolist() if batch.mask is not None else [batch.x.shape[1]] * batch.size
        parts = [self._one(p_tok[i:i + 1, :int(n)], g_tok[i:i + 1]) for i, n in enumerate(lengths)]
        fused, p_cls, p_hat, g_cls, g_hat = (torch.cat(t, dim=0) for t in zip(*parts, strict=True))
        align = alignment_loss(p_cls, p_hat, self.align_loss) + alignment_loss(g_cls, g_hat, self.align_loss)
        return ModelOutput(self.classifier(fused), aux={"align": self.align_weight * align},
                           extras={"p_cls": p_cls, "p_hat": p_hat, "g_cls": g_cls, "g_hat": g_hat})
