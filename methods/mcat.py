"""MCAT: genomic-guided co-attention over the bag's patches, two Transformer branches, late fusion (multimodal)."""

from __future__ import annotations

from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register, table1_row
from methods.coattn import FUSIONS, CoAttention, SignatureNets, TwoBranchHead


@register(MethodInfo(
    name="mcat",
    title="MCAT",
    modality="multimodal",
    paper="Chen et al., Multimodal Co-Attention Transformer for Survival Prediction in Gigapixel Whole Slide "
          "Images, ICCV 2021",
    official_code="https://github.com/mahmoodlab/MCAT (models/model_coattn.py, MCAT_Surv)",
    reported=table1_row("MCAT"),
    selection="last",
    train={"optimizer": "adam", "lr": 2e-4, "weight_decay": 1e-5, "epochs": 20, "grad_accum": 32,
           "sampler": "balanced"},
    hparam_choices={"fusion": FUSIONS},
    genomics="groups",
    notes=(
        "Official MCAT_Surv (spec §8): patches Linear(1024->256)->ReLU->Dropout(0.25); per signature group two SNN "
        "blocks (ELU, AlphaDropout 0.25) -> 6 genomic tokens; co-attention = single-head attention (xavier-uniform "
        "in-projection, zero biases, no attention dropout) with the 6 genomic tokens as queries and the patches as "
        "keys/values -> 6 genomics-guided WSI tokens (the pre-softmax 6xN map is in extras['coattn']); each modality:"
        " 2-layer post-norm Transformer encoder (8 heads, FFN 512, dropout 0.25, ReLU) -> gated attention pooling "
        "over the 6 tokens -> rho Linear->ReLU->Dropout; concat fusion Linear(512->256)->ReLU->Linear->ReLU "
        "(fusion=bilinear: the gated Kronecker option of the code); Linear(256->4). Default PyTorch init. Official "
        "training: Adam 2e-4, wd 1e-5, batch 1 with 32-step gradient accumulation, 20 epochs, class-balanced sampler "
        "over (bin, censorship), NLL alpha 0, fold score = last epoch (the CCL paper's MCAT row looks best-epoch "
        "selected, spec §1.9: compare with the best-val protocol too). Padded batches use a key mask, so padding "
        "never changes a patient's output. Official genomic input: the signature groups of MCAT's full dataset_csv "
        "(survbench build mcat_full, bundled for UCEC only: --set genomics=mcat_full); by default runs use the "
        "project's default build (mutsig). The spec records no paper-vs-code difference for MCAT's model; the "
        "official code is followed."
    ),
    order=110,
))
class MCAT(SurvivalModel):
    def __init__(self, dims: InputDims, dim: int = 256, dropout: float = 0.25, fusion: str = "concat") -> None:
        super().__init__()
        assert dims.path_dim is not None
        self.wsi_net = nn.Sequential(nn.Linear(dims.path_dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.sig_networks = SignatureNets(dims.group_sizes, (dim, dim), dropout)
        self.coattn = CoAttention(dim, heads=1)
        self.head = TwoBranchHead(dim, dims.n_bins, dropout, fusion)

    def forward(self, batch: Batch) -> ModelOutput:
        h_path = self.wsi_net(batch.x)  # [B, N, d]
        h_omic = self.sig_networks(batch.groups)  # [B, 6, d]
        mask = None if batch.mask is None or bool(batch.mask.all()) else batch.mask
        h_coattn, scores = self.coattn(h_omic, h_path, h_path, key_padding_mask=mask)  # queries = genomic tokens
        logits, a_path, a_omic = self.head(h_coattn, h_omic)
        return ModelOutput(logits, extras={"coattn": scores, "path_attention": a_path, "omic_attention": a_omic})
