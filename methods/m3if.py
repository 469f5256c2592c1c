"""M3IF: a multi-modal multi-instance Transformer over patch tokens and genomic 'field' tokens (multimodal)."""

from __future__ import annotations

import torch
from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, nll_loss, register, table1_row
from methods.fusion import EncoderLayer, merge_outputs, split_batch


def _head(d_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


@register(MethodInfo(
    name="m3if",
    title="M3IF",
    modality="multimodal",
    paper=("Li et al., Multi-modal Multi-instance Learning using Weakly Correlated Histopathological Images and "
           "Tabular Clinical Information, MICCAI 2021 (M3IF)"),
    official_code="https://github.com/yfzon/Multi-modal-Multi-instance-Learning (not read)",
    reported=table1_row("M3IF"),
    selection="best-val",
    tie="latest",
    genomics="groups",
    reimplementation=True,
    notes=(
        "[inferred] Re-implemented from the M3IF paper and the shape of the unused leftover class in the CCL "
        "repository (spec §12.4); the official code was not read. Width 200. Tabular stream = genomics: how CCL "
        "fed genomics into M3IF's tabular stream is undocumented; here each of the six signature groups is one "
        "'field' token, Linear(g_i->200)->ReLU (as the leftover class embeds a field group), plus a learned field "
        "embedding per group (standing in for M3IF's pre-computed word vectors of the field names, which are not "
        "available) and a learned modality-type embedding. Pathology stream: every patch -> Linear(1024->256)->ReLU"
        "->Linear(256->200)->ReLU + the pathology type embedding. Two learned class tokens (genomic, pathology; "
        "with their type embeddings). Sequence [cls_g, 6 field tokens, cls_p, N patch tokens] through a 2-layer "
        "post-norm Transformer encoder (8 heads, FFN 256, ReLU, dropout 0.1) with full attention over all tokens "
        "(memory O(N^2) per head on large bags: use --set patch_cap=... if needed). Heads: multimodal "
        "Linear(400->64)->ReLU->Linear(64->4) on [cls_g; cls_p] = the model's logits; genomic and pathology "
        "heads Linear(200->64)->ReLU->Linear(64->4) on their class tokens, trained with NLL (alpha 0) as auxiliary "
        "losses 'genomic' and 'pathology' (aux_weight 1 each; M3IF's multi-task loss). Embeddings N(0, 0.02), "
        "Linear layers PyTorch default init. Each patient is processed on its own (no padding enters attention). "
        "Trained with the CCL protocol (SGD 1e-3, 30 epochs, batch 1), best validation epoch (ties: latest). "
        "Parameters: 1.576 M at the spec's BLCA sizes (3392 grouped columns; the genomic field projections take "
        "0.68 M), 1.305 M on the bundled mutsig BLCA table; the spec gives no estimate. UCEC synthetic store "
        "(fold 0, one thread, train + validation): ~7.1 s per epoch."
    ),
    order=120,
))
class M3IF(SurvivalModel):
    def __init__(self, dims: InputDims, dim: int = 200, heads: int = 8, ffn: int = 256, layers: int = 2,
                 dropout: float = 0.1, patch_hidden: int = 256, head_hidden: int = 64, aux_weight: float = 1.0) -> None:
        super().__init__()
        assert dims.path_dim is not None
        self.aux_weight = aux_weight
        n_fields = len(dims.group_sizes)
        self.fields = nn.ModuleList(nn.Sequential(nn.Linear(n, dim), nn.ReLU()) for n in dims.group_sizes)
        self.patches = nn.Sequential(nn.Linear(dims.path_dim, patch_hidden), nn.ReLU(),
                                     nn.Linear(patch_hidden, dim), nn.ReLU())
        self.field_embedding = nn.Parameter(torch.randn(n_fields, dim) * 0.02)
        self.type_embedding = nn.Parameter(torch.randn(2, dim) * 0.02)  # 0 genomic, 1 pathology
        self.cls = nn.Parameter(torch.randn(2, dim) * 0.02)
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, ffn, dropout) for _ in range(layers))
        self.head_mm = _head(2 * dim, head_hidden, dims.n_bins)
        self.head_genomic = _head(dim, head_hidden, dims.n_bins)
        self.head_pathology = _head(dim, head_hidden, dims.n_bins)

    def forward(self, batch: Batch) -> ModelOutput:
        return merge_outputs([self._forward_one(b) for b in split_batch(batch)])

    def tokens(self, batch: Batch) -> torch.Tensor:
        """The input sequence ``[1, 2 + 6 + N, dim]``: cls_g, field tokens, cls_p, patch tokens."""
        fields = torch.stack([f(g) for f, g in zip(self.fields, batch.groups, strict=True)], dim=1)
        fields = fields + self.field_embedding + self.type_embedding[0]
        patches = self.patches(batch.x) + self.type_embedding[1]
        cls = (self.cls + self.type_embedding)[:, None].expand(-1, fields.shape[0], -1)  # [2, 1, dim]
        return torch.cat([cls[0][:, None], fields, cls[1][:, None], patches], dim=1)

    def _forward_one(self, batch: Batch) -> ModelOutput:
        x = self.tokens(batch)
        for layer in self.encoder:
            x = layer(x)
        n_fields = len(self.fields)
        cls_g, cls_p = x[:, 0], x[:, 1 + n_fields]
        logits = self.head_mm(torch.cat([cls_g, cls_p], dim=1))
        aux = {}
        if self.training and self.aux_weight > 0:
            for name, head, cls in (("genomic", self.head_genomic, cls_g), ("pathology", self.head_pathology, cls_p)):
                aux[name] = self.aux_weight * nll_loss(torch.sigmoid(head(cls)), batch.bins, batch.censorship)
        return ModelOutput(logits, aux=aux)
