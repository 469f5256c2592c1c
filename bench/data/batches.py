"""The shared data path: a cohort's features resident once, and the batches every method receives.

:class:`ResidentBags` reads the whole feature store in one read and keeps it in host memory or
on the GPU (as stored, fp16 by default). A patient's bag is a view of one contiguous row range,
so building a batch copies nothing but the fp16 -> fp32 cast. :class:`FoldTensors` holds one
fold's labels and standardised genomics on the same device, and :class:`Batches` turns patient
indices into :class:`Batch` objects (padded ``[B, Nmax, D]`` bags with a mask). No method reads
files or builds its own loader.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from bench._core.errors import BenchError
from bench.api.model import Batch, InputDims
from bench.data.cohort import GROUP_NAMES, Cohort, Fold
from bench.data.features.layouts import wanted_slides
from bench.data.features.store import StoreInfo, read_features


def input_dims(cohort: Cohort, n_bins: int, path_dim: int | None, train: np.ndarray | None = None) -> InputDims:
    """What a model is told when it is built: input sizes, column names and the training fold's labels."""
    return InputDims(
        path_dim=path_dim,
        omic_dim=cohort.genomics.shape[1],
        group_sizes=cohort.group_sizes,
        n_bins=n_bins,
        cohort=cohort.name,
        train_time=cohort.time[train] if train is not None else None,
        train_censorship=cohort.censorship[train] if train is not None else None,
        omic_columns=tuple(cohort.genomic_columns),
        group_columns=tuple(tuple(int(i) for i in cohort.groups[g]) for g in GROUP_NAMES),
    )


class ResidentBags:
    """A cohort's whole feature store, loaded once; bags are row ranges by patient.

    ``placement``: ``device`` keeps the store on the compute device (fp16 on a GPU); ``host`` keeps
    it in pinned host memory and copies one bag per iteration (for a cohort larger than the GPU's
    memory); ``auto`` picks ``device`` unless the store would take more than 70% of the free GPU
    memory.
    """

    def __init__(self, info: StoreInfo, cohort: Cohort, device: torch.device | str = "cpu",
                 features: torch.Tensor | None = None, placement: str = "auto") -> None:
        self.info = info
        self.device = torch.device(device)
        self.placement = resolve_placement(placement, info.nbytes, self.device)
        if features is None:
            pin = self.placement == "host" and self.device.type == "cuda"
            host = torch.from_numpy(read_features(info, pin_memory=pin))
            _check_finite(host, info, cohort)
            features = host.to(self.device) if self.placement == "device" else host
        self.features = features
        index = info.slide_index()
        dropped = set(info.dropped_patients)
        self.starts = np.full(cohort.n_patients, -1, dtype=np.int64)
        self.lengths = np.zeros(cohort.n_patients, dtype=np.int64)
        self._gather: dict[int, torch.Tensor] = {}
        # a store imported with --slides dx holds the diagnostic slides only: a bag is those
        kept = wanted_slides(cohort, info.params.get("slides", "all"))
        for i, (case_id, slide_ids) in enumerate(zip(cohort.case_ids, kept, strict=True)):
            if case_id in dropped:
                continue
            lacking = [s for s in slide_ids if s not in index]
            if lacking:
                raise BenchError(f"feature store {info.path} has no features for slide {lacking[0]} of patient "
                                 f"{case_id}; re-import the cohort (bench data import) or rebuild the synthetic store")
            ranges = [index[s] for s in slide_ids]
            contiguous = all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(ranges))
            self.starts[i] = ranges[0][0]
            self.lengths[i] = sum(n for _, n in ranges)
            if not contiguous:
                rows = np.concatenate([np.arange(o, o + n) for o, n in ranges])
                self._gather[i] = torch.from_numpy(rows).to(self.device)
        self.available = self.starts >= 0

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def bag(self, i: int) -> torch.Tensor:
        """Patient ``i``'s bag ``[n, D]`` on the compute device, in the stored dtype.

        A view of the resident store when its slides are contiguous (no copy); with ``host``
        placement, one asynchronous host-to-device copy of the bag.
        """
        if i in self._gather:
            rows = self.features.index_select(0, self._gather[i].to(self.features.device))
        else:
            s = int(self.starts[i])
            if s < 0:
                raise BenchError(f"patient index {i} has no features in {self.info.path} (dropped at import)")
            rows = self.features[s:s + int(self.lengths[i])]
        return rows if rows.device == self.device else rows.to(self.device, non_blocking=True)


def resolve_placement(placement: str, nbytes: int, device: torch.device) -> str:
    """``device`` or ``host`` for a store of ``nbytes`` on ``device`` (see :class:`ResidentBags`)."""
    if placement not in ("auto", "device", "host"):
        raise BenchError(f"bad placement '{placement}': auto, device or host")
    if placement != "auto":
        return placement
    if device.type != "cuda":
        return "device"
    free, _ = torch.cuda.mem_get_info(device)
    return "device" if nbytes <= 0.7 * free else "host"


def _check_finite(features: torch.Tensor, info: StoreInfo, cohort: Cohort, chunk: int = 1 << 18) -> None:
    for start in range(0, features.shape[0], chunk):
        block = features[start:start + chunk]
        ok = torch.isfinite(block).all(dim=1)
        if not bool(ok.all()):
            row = start + int(torch.nonzero(~ok)[0, 0])
            slide = next(s for s, o, n in zip(info.slide_ids, info.offsets, info.lengths, strict=True)
                         if o <= row < o + n)
            patient = next((c for c, sl in zip(cohort.case_ids, cohort.slides, strict=True) if slide in sl), "?")
            raise BenchError(f"feature store {info.path}: slide {slide} of patient {patient} has NaN/inf features "
                             f"(row {row}); re-import the slide or rebuild the store")


@dataclass
class FoldTensors:
    """One fold's per-patient tensors on the compute device, and its usable train/val indices."""

    omic: torch.Tensor
    groups: list[torch.Tensor]
    bins: torch.Tensor
    censorship: torch.Tensor
    time: torch.Tensor
    train: np.ndarray
    val: np.ndarray
    excluded: list[str]
    inner: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # selection=inner only

    @classmethod
    def build(cls, cohort: Cohort, fold: Fold, device: torch.device,
              available: np.ndarray | None = None) -> FoldTensors:
        """Move a fold's preprocessing results to ``device``; patients without features are excluded."""
        omic = torch.from_numpy(fold.genomics).to(device)
        groups = [omic[:, torch.from_numpy(cohort.groups[g]).to(device)].contiguous() for g in GROUP_NAMES]
        keep = available if available is not None else np.ones(cohort.n_patients, dtype=bool)
        excluded = [cohort.case_ids[i] for i in np.concatenate([fold.train, fold.inner, fold.val]) if not keep[i]]
        return cls(
            omic=omic,
            groups=groups,
            bins=torch.from_numpy(fold.bins).to(device),
            censorship=torch.from_numpy(cohort.censorship.astype(np.float32)).to(device),
            time=torch.from_numpy(cohort.time.astype(np.float32)).to(device),
            train=fold.train[keep[fold.train]],
            val=fold.val[keep[fold.val]],
            excluded=excluded,
            inner=fold.inner[keep[fold.inner]],
        )


class Batches:
    """Builds batches from patient indices over resident tensors; the only loader methods see."""

    def __init__(
        self,
        cohort: Cohort,
        tensors: FoldTensors,
        bags: ResidentBags | None,
        *,
        patch_cap: int = 0,
        patch_cap_eval: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.case_ids = cohort.case_ids
        self.t = tensors
        self.bags = bags
        self.patch_cap = patch_cap
        self.patch_cap_eval = patch_cap_eval
        self.generator = generator
        self.device = tensors.omic.device

    def make(self, idx: Sequence[int], train: bool = True) -> Batch:
        """The batch of patients ``idx`` (bags padded to the longest, with a mask)."""
        index = torch.as_tensor(list(idx), dtype=torch.long, device=self.device)
        x = mask = None
        if self.bags is not None:
            cap = self.patch_cap if (train or self.patch_cap_eval) else 0
            bags = [self._capped(self.bags.bag(int(i)), cap) for i in idx]
            if len(bags) == 1:
                x = bags[0].float().unsqueeze(0)
                mask = torch.ones(1, x.shape[1], dtype=torch.bool, device=x.device)
            else:
                lengths = torch.tensor([b.shape[0] for b in bags], device=bags[0].device)
                x = pad_sequence([b.float() for b in bags], batch_first=True)
                mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        return Batch(
            x=x,
            mask=mask,
            omic=self.t.omic.index_select(0, index),
            groups=[g.index_select(0, index) for g in self.t.groups],
            bins=self.t.bins.index_select(0, index),
            censorship=self.t.censorship.index_select(0, index),
            time=self.t.time.index_select(0, index),
            index=index,
            case_ids=[self.case_ids[int(i)] for i in idx],
        )

    def _capped(self, bag: torch.Tensor, cap: int) -> torch.Tensor:
        if cap <= 0 or bag.shape[0] <= cap:
            return bag
        keep = torch.randperm(bag.shape[0], generator=self.generator)[:cap].to(bag.device)
        return bag.index_select(0, keep)

    def iterate(self, indices: np.ndarray, batch_size: int, train: bool) -> Iterator[Batch]:
        """Batches over ``indices`` in the given order."""
        for start in range(0, len(indices), batch_size):
            yield self.make(indices[start:start + batch_size].tolist(), train=train)


def epoch_order(train: np.ndarray, bins: np.ndarray, censorship: np.ndarray, sampler: str,
                generator: torch.Generator) -> np.ndarray:
    """Training order for one epoch: a uniform shuffle, or class-balanced sampling with replacement.

    ``balanced`` reproduces the MCAT family's weighted sampler: each patient's weight is inversely
    proportional to the size of its (bin, censorship) class in the training fold.
    """
    if sampler == "uniform":
        return train[torch.randperm(len(train), generator=generator).numpy()]
    classes = 2 * bins[train] + censorship[train].astype(np.int64)
    counts = np.bincount(classes)
    weights = torch.from_numpy(len(train) / counts[classes]).double()
    picks = torch.multinomial(weights, len(train), replacement=True, generator=generator).numpy()
    return train[picks]
