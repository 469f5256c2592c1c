"""CLAM-SB and CLAM-MB: attention MIL with instance-level clustering (pathology only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import Batch, BenchError, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.layers import GatedAttention, init_xavier, masked_softmax

_PAPER = ("Lu et al., Data-efficient and weakly supervised computational pathology on whole-slide images, "
          "Nature Biomedical Engineering 2021 (CLAM)")
_CODE = "https://github.com/Innse/MOTCat (models/model_clam.py: CLAM_SB / CLAM_MB with survival heads)"

_NOTES = (
    "Model from the survival-head copy of CLAM in MOTCat (spec §12.1; not wired into any trainer): "
    "Linear(1024->256)->ReLU->Dropout(0.25) projector, gated attention (256, dropout 0.25) with {branches}, softmax "
    "over the bag's patches (padding masked), pooled M = A^T H; {head}; xavier-normal init, zero biases. "
    "Instance clustering loss (CLAM): for the bag's class, taken to be its time bin y (censored patients "
    "included, as CLAM knows no censoring), the k_sample = 8 highest-attention patches{branch_of_y} are positives "
    "and the 8 lowest negatives of that bin's instance classifier Linear(256->2), cross-entropy; other bins' "
    "instance classifiers are skipped (CLAM's non-subtyping mode). Bags with fewer than 8 patches use k = N "
    "(positives and negatives then overlap; CLAM itself would fail). CLAM weighs bag and instance losses "
    "0.7/0.3; the engine adds the NLL with weight 1, so the instance loss enters as aux = (0.3/0.7) x CE, i.e. "
    "CLAM's total loss scaled by 1/0.7 (same direction; for plain SGD a 1/0.7 larger step; "
    "--set bag_weight=1 switches the instance loss off). No survival trainer for CLAM is public: trained with "
    "the CCL protocol (SGD 1e-3, momentum 0, wd 1e-5, 30 epochs, batch 1), best validation epoch (ties: latest). "
    "Parameters 0.397 M (SB) / 0.398 M (MB) at 1024-d input, matching the spec's 0.40 M (4 instance classifiers "
    "included). UCEC synthetic store (fold 0, one thread, train + validation): ~{speed} s per epoch."
)


class _CLAM(SurvivalModel):
    multi_branch = False

    def __init__(self, dims: InputDims, hidden: int = 256, attn_hidden: int = 256, dropout: float = 0.25,
                 k_sample: int = 8, bag_weight: float = 0.7) -> None:
        super().__init__()
        assert dims.path_dim is not None
        if not 0 < bag_weight <= 1:
            raise BenchError(f"bag_weight must be in (0, 1], got {bag_weight}")
        self.n_bins, self.k_sample, self.bag_weight = dims.n_bins, k_sample, bag_weight
        branches = dims.n_bins if self.multi_branch else 1
        self.fc = nn.Sequential(nn.Linear(dims.path_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention = GatedAttention(hidden, attn_hidden, dropout, n_out=branches)
        if self.multi_branch:
            self.classifiers = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(dims.n_bins))
        else:
            self.classifier = nn.Linear(hidden, dims.n_bins)
        self.instance_classifiers = nn.ModuleList(nn.Linear(hidden, 2) for _ in range(dims.n_bins))
        init_xavier(self)

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.fc(batch.x)  # [B, N, hidden]
        a = masked_softmax(self.attention(h), batch.mask)  # [B, N, branches]
        pooled = torch.einsum("bnk,bnh->bkh", a, h)
        if self.multi_branch:
            logits = torch.cat([clf(pooled[:, c]) for c, clf in enumerate(self.classifiers)], dim=1)
        else:
            logits = self.classifier(pooled[:, 0])
        aux = {}
        if self.training and self.bag_weight < 1:
            inst = self.instance_loss(h, a, batch.mask, batch.bins)
            aux["instance"] = (1 - self.bag_weight) / self.bag_weight * inst
        return ModelOutput(logits, aux=aux, extras={"attention": a})

    def select_instances(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the ``k`` highest- and ``k`` lowest-scoring instances of one bag (``k = min(k_sample, N)``)."""
        k = min(self.k_sample, scores.shape[0])
        return torch.topk(scores, k).indices, torch.topk(-scores, k).indices

    def instance_loss(self, h: torch.Tensor, a: torch.Tensor, mask: torch.Tensor | None,
                      bins: torch.Tensor) -> torch.Tensor:
        """CLAM's in-class instance clustering loss, averaged over the batch's bags."""
        losses = []
        for i in range(h.shape[0]):
            n = int(mask[i].sum()) if mask is not None else h.shape[1]
            y = int(bins[i])
            scores = a[i, :n, y if self.multi_branch else 0]
            top, bottom = self.select_instances(scores)
            inst = torch.cat([h[i, top], h[i, bottom]], dim=0)
            targets = torch.cat([torch.ones(len(top)), torch.zeros(len(bottom))]).long().to(h.device)
            losses.append(F.cross_entropy(self.instance_classifiers[y](inst), targets))
        return torch.stack(losses).mean()


_COMMON = dict(
    modality="pathology",
    paper=_PAPER,
    official_code=_CODE,
    selection="best-val",
    tie="latest",
)


@register(MethodInfo(
    name="clam_sb",
    title="CLAM-SB",
    reported=table1_row("CLAM-SB"),
    notes=_NOTES.format(branches="one attention branch", branch_of_y="",
                        head="head Linear(256->4) on the pooled vector", speed="2.8"),
    order=60,
    **_COMMON,
))
class CLAMSB(_CLAM):
    multi_branch = False


@register(MethodInfo(
    name="clam_mb",
    title="CLAM-MB",
    reported=table1_row("CLAM-MB"),
    notes=_NOTES.format(branches="one attention branch per time bin (4)", branch_of_y=" of bin y's branch",
                        head="bin c's logit = its own Linear(256->1) on its own pooled vector M_c", speed="2.4"),
    order=70,
    **_COMMON,
))
class CLAMMB(_CLAM):
    multi_branch = True
