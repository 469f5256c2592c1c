"""CCL: Cohort-Individual Cooperative Learning (Zhou, Zhou & Chen, IEEE TMI 2024), faithful to the official code.

Pathology: K-means on the whole bag at every forward pass (train and eval), initialised at the
patches nearest a running anchor, Hungarian cluster-centre alignment (CCA) to the anchor, anchor
EMA after each training patient. Genomics: CCL's six-group SNN branch. Multimodal knowledge
decomposition (MKD) into [C, S, G*, P*], cohort guidance (CGM) with knowledge-level cosine
constraints and a patient-level cohort bank, a Nyström fusion Transformer and sigmoid hazards.
The anchor and the cohort bank are buffers, so they are saved with the model (the official code
loses them). See ``MethodInfo.notes`` for every place we follow the code rather than the paper.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from bench.api import (
    Batch,
    BenchError,
    InputDims,
    MethodInfo,
    ModelOutput,
    SurvivalModel,
    assign_bins,
    fit_time_bins,
    register,
    table1_row,
)
from methods.layers import GroupGenomicEncoder, TokenAggregation, TokenTransformer, TransMILPathology, snn_block

# --------------------------------------------------------------------------------------------------
# K-means and cluster-centre alignment


def sq_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``||c_j||^2 - 2 x_i . c_j`` for every patch ``i`` and centre ``j`` (``[N, k]``, one GEMM).

    ``||x_i||^2`` is the same for every centre, so this orders the centres of each patch as the
    squared Euclidean distance does (the official code forms the ``N x k x D`` difference tensor).
    """
    return torch.addmm((centres * centres).sum(1)[None], x, centres.T, alpha=-2)


def later_duplicates(centres: torch.Tensor) -> torch.Tensor:
    """``[k]`` bool: centre ``j`` equals (in every coordinate) some centre ``i < j``."""
    same = (centres[:, None, :] == centres[None, :, :]).all(-1)
    return torch.triu(same, diagonal=1).any(0)


def nearest_patches(x: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """For each anchor row, the patch of ``x`` closest to it (squared Euclidean): ``[k, D]``.

    Two anchor rows may pick the same patch; :func:`kmeans` then treats the two identical
    centres as the official code does.
    """
    d = (x * x).sum(1, keepdim=True) - 2 * x @ anchor.T + (anchor * anchor).sum(1)[None]
    return x[d.argmin(dim=0)]


def kmeans(x: torch.Tensor, init: torch.Tensor, tol: float = 1e-4, max_iter: int = 0) -> tuple[torch.Tensor, int]:
    """Lloyd's K-means from ``init`` centres, vectorised (no loop over clusters or patches).

    Squared-Euclidean assignment; a centre is the mean of its members and an empty cluster's
    centre becomes the zero vector (the official vendored ``kmeans_pytorch``); stops when
    ``(sum_j ||c_j' - c_j||)^2 < tol`` or after ``max_iter`` iterations (0 = no cap).
    Returns the centres and the number of iterations run.

    Identical centres (two anchor rows nearest the same patch, or two empty clusters) get
    exactly equal per-pair distances in the official code, so argmin gives every tied patch to
    the first of them and the others stay empty. The GEMM form can break that tie by rounding
    (it depends on the BLAS kernel), so a centre equal to an earlier one never wins the argmin.
    """
    slots = torch.arange(init.shape[0], device=x.device)
    centres = init
    it = 0
    while True:
        it += 1
        d = sq_distances(x, centres).masked_fill(later_duplicates(centres)[None], float("inf"))
        labels = d.argmin(dim=1)
        members = (labels[:, None] == slots[None]).to(x.dtype)  # [N, k] one-hot: sums are one GEMM
        new = (members.T @ x) / members.sum(0).clamp(min=1)[:, None]  # empty cluster: zero sum -> zero centre
        shift = torch.linalg.vector_norm(new - centres, dim=1).sum() ** 2
        centres = new
        if float(shift) < tol or (max_iter and it >= max_iter):
            return centres, it


def align_to_anchor(centres: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Permute ``centres`` onto the anchor's slots by minimum total L1 distance (Hungarian).

    Row ``j`` of the result is the centre assigned to anchor slot ``j``.
    """
    cost = torch.cdist(centres, anchor, p=1).cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    order = np.empty_like(cols)
    order[cols] = rows
    return centres[torch.as_tensor(order, device=centres.device)]


# --------------------------------------------------------------------------------------------------
# Multimodal knowledge decomposition


def mlp_block(dim: int) -> nn.Sequential:
    """CCL's MLP block: Linear -> LayerNorm -> ReLU."""
    return nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU())


class InteractionEncoder(nn.Module):
    """Co-attention gate of CCL's common / synergy encoders.

    ``A = g_hat p_hat^T`` (outer product); genomic gate ``sigmoid(fc_g(A))`` along the pathology axis,
    pathology gate ``sigmoid(fc_p(A^T))``; output ``p_hat * a_p + g_hat * a_g`` with
    ``g_hat = MLP_g(g)``, ``p_hat = MLP_p(p)``.
    """

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.mlp_g, self.mlp_p = mlp_block(dim), mlp_block(dim)
        self.fc_g, self.fc_p = nn.Linear(dim, 1), nn.Linear(dim, 1)

    def forward(self, g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        g_hat, p_hat = self.mlp_g(g), self.mlp_p(p)
        attn = g_hat.unsqueeze(2) * p_hat.unsqueeze(1)  # [B, dim_g, dim_p]
        a_g = torch.sigmoid(self.fc_g(attn)).squeeze(-1)
        a_p = torch.sigmoid(self.fc_p(attn.transpose(1, 2))).squeeze(-1)
        return p_hat * a_p + g_hat * a_g


class Decomposition(nn.Module):
    """MKD: components [C, S, G*, P*] from F_g and F_p.

    Official code (``swap_specific=True``): the specificity encoders receive the other modality,
    G* = Phi_g(F_p), P* = Phi_p(F_g); the paper: G = Phi_g(F_g), P = Phi_p(F_p).
    """

    def __init__(self, dim: int = 256, swap_specific: bool = True) -> None:
        super().__init__()
        self.specific_g, self.specific_p = mlp_block(dim), mlp_block(dim)
        self.common, self.synergy = InteractionEncoder(dim), InteractionEncoder(dim)
        self.swap = swap_specific

    def forward(self, f_g: torch.Tensor, f_p: torch.Tensor) -> torch.Tensor:
        g_in, p_in = (f_p, f_g) if self.swap else (f_g, f_p)
        parts = [self.common(f_g, f_p), self.synergy(f_g, f_p), self.specific_g(g_in), self.specific_p(p_in)]
        return torch.stack(parts, dim=1)  # [B, 4, dim]


# --------------------------------------------------------------------------------------------------
# Cohort guidance

#: Which components are pulled towards (1) or pushed orthogonal to (0) F_g and F_p: rows C, S, G*, P*.
KNOWLEDGE_MASK = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


def knowledge_loss(components: torch.Tensor, f_g: torch.Tensor, f_p: torch.Tensor,
                   reduction: str = "mean+1") -> torch.Tensor:
    """l_k: -cos for pairs that should agree, |cos| for pairs that should be orthogonal (targets detached).

    ``mean+1`` (official) averages the 8 terms and adds 1; ``sum`` (paper Eq. 4) sums them.
    """
    targets = torch.stack([f_g.detach(), f_p.detach()], dim=1)  # [B, 2, d]
    cos = F.cosine_similarity(components.unsqueeze(2), targets.unsqueeze(1), dim=-1)  # [B, 4, 2]
    mask = KNOWLEDGE_MASK.to(cos)
    terms = -cos * mask + cos.abs() * (1 - mask)
    per_patient = terms.flatten(1).mean(1) + 1 if reduction == "mean+1" else terms.flatten(1).sum(1)
    return per_patient.mean()


def set_similarity(z: torch.Tensor, entries: torch.Tensor, temperature: float, reduction: str) -> torch.Tensor:
    """d(X): element-wise slot-matched ``exp(z * x / T)`` averaged over slots and features, then the
    mean (official) or sum (paper Eq. 5) over the entries of the set. ``z`` [m, d], ``entries`` [n, m, d]."""
    per_entry = torch.exp(z.unsqueeze(0) * entries / temperature).flatten(1).mean(1)
    return per_entry.mean() if reduction == "mean" else per_entry.sum()


class CohortBank(nn.Module):
    """``r`` FIFO queues of length ``b`` of detached component stacks, stored as buffers (saved with the model)."""

    def __init__(self, r: int, b: int, slots: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("entries", torch.zeros(r, b, slots, dim))
        self.register_buffer("sizes", torch.zeros(r, dtype=torch.long))

    def push(self, group: int, z: torch.Tensor) -> None:
        """Append ``z`` to queue ``group``, dropping the oldest entry when the queue is full."""
        n = int(self.sizes[group])
        b = self.entries.shape[1]
        if n < b:
            self.entries[group, n] = z.detach()
            self.sizes[group] += 1
        else:
            self.entries[group] = torch.cat([self.entries[group, 1:], z.detach().unsqueeze(0)])

    def queue(self, group: int) -> torch.Tensor:
        """Entries of one queue, oldest first: ``[n, slots, dim]``."""
        return self.entries[group, : int(self.sizes[group])]

    def patient_loss(self, z: torch.Tensor, group: int, censored: bool, temperature: float,
                     reduction: str) -> torch.Tensor:
        """l_p of the patient just pushed to queue ``group`` (official positive/negative sets).

        Uncensored: positives = its queue without its own (last) entry, negatives = all other queues.
        Censored: positives = queues >= group (itself included), negatives = queues < group;
        none for a censored patient of group 0. Empty positives or negatives give 0.
        """
        r = self.entries.shape[0]
        if censored:
            if group == 0:
                return z.new_zeros(())
            pos = [self.queue(j) for j in range(group, r)]
            neg = [self.queue(j) for j in range(group)]
        else:
            pos = [self.queue(group)[:-1]]
            neg = [self.queue(j) for j in range(r) if j != group]
        pos_t, neg_t = torch.cat(pos), torch.cat(neg)
        if len(pos_t) == 0 or len(neg_t) == 0:
            return z.new_zeros(())
        d_pos = set_similarity(z, pos_t, temperature, reduction)
        d_neg = set_similarity(z, neg_t, temperature, reduction)
        return -torch.log(d_pos / (d_pos + d_neg + 1e-10))


# --------------------------------------------------------------------------------------------------
# The model

_NOTES = """\
Follows the official code (moothes/CCL-survival) where it differs from the paper; each difference has a switch:
(1) the specificity encoders receive the other modality, G* = Phi_g(F_p), P* = Phi_p(F_g) (swap_specific=true;
false = paper); (2) l_k = mean of the 8 cosine terms + 1 (lk_reduction=mean+1; sum = paper Eq. 4); (3) l_p averages
the element-wise similarity exp(z*x/T), T=2, over the entries of each set (lp_reduction=mean; sum = paper Eq. 5);
(4) the r patient groups are the 4 discrete survival bins (r = n_bins; other r = r groups by quantiles of the
training fold's uncensored survival times, as the paper describes); (5) the current patient is enqueued before
its loss: excluded from its own positives if uncensored, included if censored; censored patients of group 0 get
no l_p; (6) cohort-loss weight 1 (the code's alpha=10 is dead; cohort_weight); (7) Hungarian matching minimises
the L1 distance to the anchor (paper: maximise similarity); (8) K-means reruns on every forward pass, train and
eval, from the anchor-nearest patches, tol (sum of centre shifts)^2 < 1e-4, no iteration cap (kmeans_max_iter,
0 = none; a cap is a recorded setting), empty clusters -> zero vector; (9) fusion = class token + [C, S, G*, P*]
(code order; paper writes U, G, P, S, C) through two Nystrom attention layers without FFN over a sequence
zero-padded to 128 positions; (10) SGD lr 1e-3, momentum 0, wd 1e-5, batch 1, 30 epochs, uniform shuffle, seed
per fold; (11) best-val epoch selection with ties to the latest epoch. Improvements that do not change the
maths: the anchor and the cohort bank are buffers saved with the model (the official checkpoint loses them, so
a reloaded official model re-randomises its anchor); K-means uses ||x||^2 - 2x.c + ||c||^2 instead of an
N x k x D difference tensor. Not reproduced: the never-called PPEG inside the fusion Transformer (22 k unused
parameters in the official count). Ablations (Table III): cca=false replaces the K-means+CCA pathology branch by
DualTrans's TransMIL branch (the paper's baseline is DualTrans); mkd=false fuses [F_g, F_p] directly; cgm=false
drops both CGM losses (with mkd=false and cgm=true only l_p acts, on the [F_g, F_p] slots). align=false keeps
K-means but skips the Hungarian alignment (centres in K-means order)."""


@register(MethodInfo(
    name="ccl",
    title="CCL",
    modality="multimodal",
    paper="Zhou, Zhou & Chen, Cohort-Individual Cooperative Learning for Multimodal Cancer Survival Analysis, "
          "IEEE TMI 2024",
    official_code="https://github.com/moothes/CCL-survival",
    reported=table1_row("CCL"),
    selection="best-val",
    tie="latest",
    train={"optimizer": "sgd", "lr": 1e-3, "momentum": 0.0, "weight_decay": 1e-5, "epochs": 30, "batch_size": 1,
           "grad_accum": 1, "sampler": "uniform"},
    hparam_choices={"lk_reduction": ("mean+1", "sum"), "lp_reduction": ("mean", "sum")},
    variants={
        "dualtrans": {"cca": False, "mkd": False, "cgm": False},
        "cca": {"mkd": False, "cgm": False},
        "cca+mkd": {"cgm": False},
        "paper": {"swap_specific": False, "lk_reduction": "sum", "lp_reduction": "sum"},
    },
    genomics="groups",
    notes=_NOTES,
    order=190,
))
class CCL(SurvivalModel):
    """CCL (see module docstring); batch size 1 only, as the anchor and bank logic index one patient."""

    def __init__(self, dims: InputDims, k: int = 6, tau: float = 0.1, b: int = 10, r: int = 4, cca: bool = True,
                 mkd: bool = True, cgm: bool = True, align: bool = True, swap_specific: bool = True,
                 lk_reduction: str = "mean+1", lp_reduction: str = "mean", temperature: float = 2.0,
                 cohort_weight: float = 1.0, kmeans_tol: float = 1e-4, kmeans_max_iter: int = 0, dim: int = 256,
                 dropout: float = 0.15) -> None:
        super().__init__()
        if dims.path_dim is None:
            raise BenchError("CCL needs pathology features")
        for name, value, low in (("k", k, 1), ("b", b, 1), ("r", r, 2)):
            if value < low:
                raise BenchError(f"bad value {value} for 'model.{name}': must be >= {low}")
        if not 0 < tau <= 1:
            raise BenchError(f"bad value {tau} for 'model.tau': must be in (0, 1]")
        self.k, self.tau, self.r = k, tau, r
        self.cca, self.mkd, self.cgm, self.align = cca, mkd, cgm, align
        self.lk_reduction, self.lp_reduction, self.temperature = lk_reduction, lp_reduction, temperature
        self.cohort_weight, self.kmeans_tol, self.kmeans_max_iter = cohort_weight, kmeans_tol, kmeans_max_iter
        self.genomic = GroupGenomicEncoder(dims.group_sizes, dim, dropout)
        if cca:
            self.register_buffer("anchor", torch.randn(k, dims.path_dim))
            # bags K-means ran on, and those whose anchor-nearest initial centres had duplicates
            self.register_buffer("kmeans_bags", torch.zeros((), dtype=torch.long))
            self.register_buffer("kmeans_duplicate_inits", torch.zeros((), dtype=torch.long))
            self.path_snn = snn_block(dims.path_dim, dim, "selu", dropout)
            self.path_aggregate = TokenAggregation(k)
        else:
            self.pathology = TransMILPathology(dims.path_dim, dim)
        if mkd:
            self.decompose = Decomposition(dim, swap_specific)
        self.fusion = TokenTransformer(dim)
        self.classifier = nn.Linear(dim, dims.n_bins)
        self.slots = 4 if mkd else 2
        if cgm:
            self.bank = CohortBank(r, b, self.slots, dim)
            self.group_by_bins = r == dims.n_bins
            if not self.group_by_bins:
                if dims.train_time is None:
                    raise BenchError(f"CCL with r={r} != n_bins needs the training fold's survival times")
                edges = fit_time_bins(np.asarray(dims.train_time), np.asarray(dims.train_censorship), r)
                self.register_buffer("group_edges", torch.as_tensor(edges, dtype=torch.float64))
        self.last_kmeans_iters = 0

    @staticmethod
    def check_config(config: dict) -> None:
        if config["train"]["batch_size"] != 1:
            raise BenchError("CCL needs train.batch_size = 1 (its anchor and cohort bank index a single patient)")

    def run_stats(self) -> dict[str, int]:
        """K-means bags and duplicate initialisations over the run (train and eval passes)."""
        if not self.cca:
            return {}
        return {"kmeans_bags": int(self.kmeans_bags), "kmeans_duplicate_inits": int(self.kmeans_duplicate_inits)}

    # -- pathology ---------------------------------------------------------------------------------
    def aligned_centres(self, bag: torch.Tensor) -> torch.Tensor:
        """K-means centres of one bag ``[N, D]``, aligned to the anchor ``[k, D]`` (no gradient)."""
        with torch.no_grad():
            init = nearest_patches(bag, self.anchor)
            self.kmeans_bags += 1
            self.kmeans_duplicate_inits += later_duplicates(init).any()
            centres, self.last_kmeans_iters = kmeans(bag, init, self.kmeans_tol, self.kmeans_max_iter)
            return align_to_anchor(centres, self.anchor) if self.align else centres

    def pathology_feature(self, batch: Batch) -> torch.Tensor:
        if not self.cca:
            return self.pathology(batch.x, batch.mask)
        z = self.aligned_centres(batch.x[0])
        if self.training:
            self.anchor.mul_(1 - self.tau).add_(self.tau * z)
        return self.path_aggregate(self.path_snn(z.unsqueeze(0)))

    # -- cohort ------------------------------------------------------------------------------------
    def patient_group(self, batch: Batch) -> int:
        if self.group_by_bins:
            return int(batch.bins[0])
        t = batch.time[:1].double().cpu().numpy()
        return int(assign_bins(t, self.group_edges.cpu().numpy())[0])

    def forward(self, batch: Batch) -> ModelOutput:
        f_g, _ = self.genomic(batch.groups)
        f_p = self.pathology_feature(batch)
        parts = self.decompose(f_g, f_p) if self.mkd else torch.stack([f_g, f_p], dim=1)
        logits = self.classifier(self.fusion(parts))
        aux: dict[str, torch.Tensor] = {}
        if self.cgm and self.training:
            group = self.patient_group(batch)
            self.bank.push(group, parts[0])
            l_p = self.bank.patient_loss(parts[0], group, bool(batch.censorship[0] > 0.5), self.temperature,
                                         self.lp_reduction)
            aux["cohort_patient"] = self.cohort_weight * l_p
            if self.mkd:
                aux["cohort_knowledge"] = self.cohort_weight * knowledge_loss(parts, f_g, f_p, self.lk_reduction)
        return ModelOutput(logits, aux)
