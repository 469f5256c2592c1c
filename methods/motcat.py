"""MOTCat: MCAT with optimal-transport co-attention between patches and genomic tokens (multimodal)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bench.api import (
    Batch,
    BenchError,
    InputDims,
    MethodInfo,
    ModelOutput,
    SurvivalModel,
    nll_loss,
    register,
    table1_row,
)
from methods.coattn import (
    FUSIONS,
    OT_REG_TYPES,
    OTCoAttention,
    SignatureNets,
    TwoBranchHead,
    random_chunks,
    survival_mixture_logits,
)


@register(MethodInfo(
    name="motcat",
    title="MOTCat",
    modality="multimodal",
    paper="Xu & Chen, Multimodal Optimal Transport-based Co-Attention Transformer with Global Structure Consistency "
          "for Survival Prediction, ICCV 2023",
    official_code="https://github.com/Innse/MOTCat (models/model_motcat.py, trainer/, scripts/command.md)",
    reported=table1_row("MOTCat"),
    selection="best-val",
    tie="earliest",
    train={"optimizer": "adam", "lr": 2e-4, "weight_decay": 1e-5, "epochs": 20, "grad_accum": 32,
           "sampler": "balanced"},
    hparam_choices={"fusion": FUSIONS, "ot_reg_type": OT_REG_TYPES},
    cohort_defaults={"tcga_blca": {"ot_reg": 0.05}, "tcga_luad": {"ot_reg": 0.05}},
    variants={"micro256": {"micro_batch": 256}, "pot-kl": {"ot_reg_type": "kl"}},
    genomics="groups",
    notes=(
        "Official MOTCat (spec §9) = MCAT (same patch projector, signature SNNs, two 2-layer Transformer branches, "
        "gated pooling, concat fusion, head) with the co-attention replaced by unbalanced entropic OT: patch tokens "
        "H_p (Nx256) and the 6 genomic tokens are shifted per row to be non-negative, cost = squared Euclidean "
        "distance / its max (detached), plan = POT ot.unbalanced.sinkhorn_knopp_unbalanced in float64 (uniform "
        "marginals, entropic reg ot_reg = 0.05 for BLCA/LUAD and 0.1 otherwise as in scripts/command.md, marginal KL "
        "relaxation ot_tau = 0.5, <= 1000 iterations, stop 1e-6), run by POT's torch backend on the features' device;"
        " co-attended tokens = plan^T H_p with the unshifted H_p (transport mass, not renormalised; no gradient "
        "through the plan). The OT distance sum(C*plan) is computed but, as officially, not in the loss (extras). POT"
        " version: the official code ran POT <= 0.9.4, whose sinkhorn_knopp_unbalanced regularised with the plan's "
        "negative entropy (kernel exp(-C/eps)); POT >= 0.9.5 changed the default to KL(plan | a b^T), which changes "
        "the plan's mass and therefore the tokens. ot_reg_type='entropy' (default) reproduces the official plan on "
        "any POT; 'kl' (variant pot-kl) gives what the official code computes on a current POT. Micro-batching (the "
        "paper's approximation for large bags as we recall it - the MOTCat paper text is not bundled; official "
        "--use_micro_batch, off by default and not passed in scripts/command.md, which sets --bs_micro 256): "
        "micro_batch=B>0 (variant micro256) randomly partitions the bag into N//B+1 near-equal chunks, runs each "
        "chunk with the full genomics (its own SNN dropout draw) and averages the chunks' survival curves (so the "
        "risk -sum S is the mean of the chunk risks, as officially) and, in training, the chunks' NLL losses: the "
        "returned logits encode the mean survival curve, and the auxiliary loss 'microbatch_jensen' = mean chunk NLL "
        "- NLL(mean curve) >= 0 makes the total loss equal the official chunk-averaged NLL (hence micro_batch > 0 "
        "requires train.alpha = 0, the official value). The official code reshuffles the chunks at validation too; we"
        " use a fixed per-patient permutation there so evaluation is deterministic. Official training: Adam 2e-4, wd "
        "1e-5, batch 1 + 32-step gradient accumulation, 20 epochs, class-balanced sampler, NLL alpha 0; fold score = "
        "best validation epoch (strict >). Padded batches run the OT per bag on its real patches only. Official "
        "genomic input: the signature groups of MCAT's full dataset_csv (survbench build mcat_full, bundled for UCEC "
        "only: --set genomics=mcat_full); by default runs use the project's default build (mutsig)."
    ),
    order=170,
))
class MOTCat(SurvivalModel):
    def __init__(self, dims: InputDims, dim: int = 256, dropout: float = 0.25, fusion: str = "concat",
                 ot_reg: float = 0.1, ot_tau: float = 0.5, ot_reg_type: str = "entropy", ot_max_iter: int = 1000,
                 ot_tol: float = 1e-6, micro_batch: int = 0) -> None:
        super().__init__()
        assert dims.path_dim is not None
        self.micro_batch = micro_batch
        self.wsi_net = nn.Sequential(nn.Linear(dims.path_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.sig_networks = SignatureNets(dims.group_sizes, (dim, dim), dropout)
        self.coattn = OTCoAttention(ot_reg, ot_tau, ot_reg_type, ot_max_iter, ot_tol)
        self.head = TwoBranchHead(dim, dims.n_bins, dropout, fusion)

    @staticmethod
    def check_config(config: Mapping[str, Any]) -> None:
        model, train = config["model"], config["train"]
        if model["micro_batch"] < 0:
            raise BenchError("motcat: micro_batch must be 0 (off) or a positive chunk size")
        if model["micro_batch"] > 0 and train["alpha"] != 0:
            raise BenchError("motcat: micro_batch > 0 averages the chunks' NLL with alpha = 0 (the official value); "
                             "set alpha=0 or micro_batch=0")
        if model["ot_reg"] <= 0 or model["ot_tau"] <= 0:
            raise BenchError("motcat: ot_reg and ot_tau must be > 0")

    def _lengths(self, batch: Batch) -> list[int]:
        assert batch.x is not None
        if batch.mask is None:
            return [batch.x.shape[1]] * batch.size
        return [int(n) for n in batch.mask.sum(dim=1).tolist()]

    def forward(self, batch: Batch) -> ModelOutput:
        if self.micro_batch > 0:
            return self._forward_micro(batch)
        h_path = self.wsi_net(batch.x)  # [B, N, d]
        h_omic = self.sig_networks(batch.groups)  # [B, 6, d]
        tokens, plans, dists = [], [], []
        for i, n in enumerate(self._lengths(batch)):
            t, plan, dist = self.coattn(h_path[i, :n], h_omic[i])
            tokens.append(t)
            plans.append(plan)
            dists.append(dist)
        logits, a_path, a_omic = self.head(torch.stack(tokens), h_omic)
        return ModelOutput(logits, extras={"ot_plan": plans, "ot_distance": torch.stack(dists),
                                           "path_attention": a_path, "omic_attention": a_omic})

    def _forward_micro(self, batch: Batch) -> ModelOutput:
        assert batch.x is not None
        out, jensen = [], []
        for i, n in enumerate(self._lengths(batch)):
            gen = None if self.training else torch.Generator().manual_seed(int(batch.index[i]))
            chunks = random_chunks(n, self.micro_batch, gen, batch.x.device)
            c = len(chunks)
            h_omic = self.sig_networks([g[i:i + 1].expand(c, -1) for g in batch.groups])  # [C, 6, d]
            h_bag = self.wsi_net(batch.x[i, :n])
            tokens = torch.stack([self.coattn(h_bag[idx], h_omic[k])[0] for k, idx in enumerate(chunks)])
            chunk_logits = self.head(tokens, h_omic)[0]  # [C, K]
            mixed = survival_mixture_logits(chunk_logits)
            out.append(mixed)
            if self.training:
                y, cens = batch.bins[i:i + 1], batch.censorship[i:i + 1]
                per_chunk = nll_loss(torch.sigmoid(chunk_logits), y.expand(c), cens.expand(c))
                jensen.append(per_chunk - nll_loss(torch.sigmoid(mixed)[None], y, cens))
        aux = {"microbatch_jensen": torch.stack(jensen).mean()} if jensen else {}
        return ModelOutput(torch.stack(out), aux=aux)
