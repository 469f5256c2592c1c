"""The shared data path: a cohort's features resident once, and the batches every method receives.

:class:`ResidentBags` reads the whole feature store in one read and keeps it in host memory or
on the GPU (as stored, fp16 by default). A patient's bag is a view of one contiguous row range,
so building a batch copies nothing but the fp16 -> fp32 cast. :class:`DiskBags` (placement
``disk``, for stores larger than host memory) reads each bag from the HDF5 file instead, one
contiguous row range per slide, with a background thread reading the next bags ahead; it gives
the same tensors, so the same predictions. :func:`load_bags` builds the one the placement names
(``auto``: ``disk`` when the store exceeds ``run.memory_share`` of the available memory). :class:`FoldTensors` holds one
fold's labels and standardised genomics on the same device, and :class:`Batches` turns patient
indices into :class:`Batch` objects (padded ``[B, Nmax, D]`` bags with a mask). No method reads
files or builds its own loader.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from bench._core.errors import BenchError
from bench.api.model import Batch, InputDims
from bench.data.cohort import GROUP_NAMES, Cohort, Fold
from bench.data.features.layouts import wanted_slides
from bench.data.features.store import StoreInfo, read_features

#: The placements of a cohort's features (``run.placement``).
PLACEMENTS = ("auto", "device", "host", "disk")


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
    memory (and, through :func:`load_bags`, :class:`DiskBags` when it exceeds ``run.memory_share`` of
    the available host memory).
    """

    memory_share: float | None = None  # the auto threshold it was chosen with (load_bags), for the manifest

    def __init__(self, info: StoreInfo, cohort: Cohort, device: torch.device | str = "cpu",
                 features: torch.Tensor | None = None, placement: str = "auto") -> None:
        self.info = info
        self.device = torch.device(device)
        self.placement = resolve_placement(placement, info.nbytes, self.device)
        if self.placement == "disk":
            raise BenchError("placement 'disk' streams bags from the file: build DiskBags (or load_bags), "
                             "not ResidentBags")
        if features is None:
            pin = self.placement == "host" and self.device.type == "cuda"
            host = torch.from_numpy(read_features(info, pin_memory=pin))
            _check_finite(host, info, cohort)
            features = host.to(self.device) if self.placement == "device" else host
        self.features = features
        self.starts, self.lengths, split = patient_rows(info, cohort)
        self._gather: dict[int, torch.Tensor] = {
            i: torch.from_numpy(np.concatenate([np.arange(o, o + n) for o, n in ranges])).to(self.device)
            for i, ranges in split.items()}
        self.available = self.starts >= 0

    def prefetch(self, order: Sequence[int]) -> None:
        """Nothing to read ahead: the store is resident (the interface :class:`DiskBags` shares)."""

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


class DiskBags:
    """A cohort's feature store left on disk (placement ``disk``): each bag read from the HDF5 file.

    For stores larger than host memory. A patient's bag is read as one contiguous row range per slide
    straight into a buffer of the stored dtype (page-locked when the device is a GPU, then one
    asynchronous copy), so a bag equals :class:`ResidentBags`'s bit for bit and so do the predictions.
    :meth:`prefetch` (called by :meth:`Batches.iterate`) starts a thread that reads the next ``depth``
    bags of the iteration order ahead of the loop; an error in it is raised where the bag is asked for.
    The file is opened once per process (a worker process reopens it) and checked before every read:
    a store removed, replaced or truncated during a run is a clear error, never zeros. NaN/inf rows are
    reported (slide and patient named) when a patient's bag is first read, not when the bags are built.
    """

    placement = "disk"
    memory_share: float | None = None

    def __init__(self, info: StoreInfo, cohort: Cohort, device: torch.device | str = "cpu", depth: int = 8) -> None:
        self.info = info
        self.cohort = cohort
        self.device = torch.device(device)
        self.depth = depth
        self.starts, self.lengths, self._split = patient_rows(info, cohort)
        self.available = self.starts >= 0
        self._checked = np.zeros(cohort.n_patients, dtype=bool)  # NaN/inf checked once per patient
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()
        self._stream: _Prefetch | None = None
        self._open()

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def nbytes(self) -> int:
        """Bytes of the store on disk (what a resident placement would hold)."""
        return self.info.nbytes

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_fd=None, _pid=-1, _lock=None, _stream=None)  # reopened by the process that unpickles
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _open(self) -> None:
        import h5py

        path = self.info.path
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                with h5py.File(path, "r") as f:
                    ds = f["features"]
                    offset, dtype = ds.id.get_offset(), ds.dtype
                if offset is None or not dtype.isnative:
                    raise BenchError(f"feature store {path} is chunked or not in native byte order, so its bags are "
                                     "not contiguous on disk; rebuild it with 'bench data import' or 'bench data "
                                     "synth', or use placement 'host'")
                if os.fstat(fd).st_ino != os.stat(path).st_ino:
                    raise OSError("the file was replaced while it was being opened")
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            raise BenchError(f"feature store {path} cannot be opened ({exc}); restore it or rebuild it with "
                             "'bench data import' or 'bench data synth', then rerun") from exc
        self._fd, self._pid, self._offset = fd, os.getpid(), int(offset)
        self._inode = os.fstat(fd).st_ino
        self._dtype = getattr(torch, np.dtype(dtype).name)
        self._row_bytes = self.info.dim * np.dtype(dtype).itemsize

    def close(self) -> None:
        """Stop the prefetch thread and close the file (reopened by the next read)."""
        self._stop_stream()
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit
            self.close()

    def prefetch(self, order: Sequence[int]) -> None:
        """Read the bags of ``order`` ahead, in that order, in a background thread (replacing any earlier order)."""
        self._stop_stream()
        order = [int(i) for i in order]
        if order:
            self._stream = _Prefetch(order, self._read, self.depth)

    def _stop_stream(self) -> None:
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            stream.close()

    def bag(self, i: int) -> torch.Tensor:
        """Patient ``i``'s bag ``[n, D]`` on the compute device, in the stored dtype (the prefetched one when
        ``i`` is the next bag of the prefetch order, else read now)."""
        if self.starts[i] < 0:
            raise BenchError(f"patient index {i} has no features in {self.info.path} (dropped at import)")
        rows = None
        if self._stream is not None:
            rows = self._stream.take(i)
            if rows is None:  # asked out of order: the read-ahead is of no use any more
                self._stop_stream()
        if rows is None:
            rows = self._read(i)
        return rows if self.device.type == "cpu" else rows.to(self.device, non_blocking=True)

    def _read(self, i: int) -> torch.Tensor:
        """Patient ``i``'s rows from the file into a fresh (pinned on a GPU) host tensor; called by both threads."""
        ranges = self._split.get(i) or [(int(self.starts[i]), int(self.lengths[i]))]
        out = torch.empty((int(self.lengths[i]), self.info.dim), dtype=self._dtype,
                          pin_memory=self.device.type == "cuda")
        flat = out.numpy().reshape(-1).view(np.uint8)
        with self._lock:
            if self._fd is None or self._pid != os.getpid():
                self._open()
            fd = self._fd
        pos = 0
        for start, n in ranges:
            first = self._offset + start * self._row_bytes
            size = n * self._row_bytes
            self._check_file(first + size)
            done = 0
            while done < size:
                try:
                    got = os.preadv(fd, [flat[pos + done:pos + size]], first + done)
                except OSError as exc:
                    raise BenchError(f"feature store {self.info.path} became unreadable during the run ({exc}); "
                                     f"{_RERUN}") from exc
                if got == 0:
                    raise BenchError(f"feature store {self.info.path} was truncated during the run (patient "
                                     f"{self.cohort.case_ids[i]}'s rows end past the end of the file); {_RERUN}")
                done += got
            pos += size
        if not self._checked[i]:
            row_of = _row_map(ranges)
            _check_finite(out, self.info, self.cohort, rows=row_of)
            self._checked[i] = True
        return out

    def _check_file(self, end: int) -> None:
        path = self.info.path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise BenchError(f"feature store {path} was removed during the run; {_RERUN}") from None
        except OSError as exc:
            raise BenchError(f"feature store {path} became unreadable during the run ({exc}); {_RERUN}") from exc
        if st.st_ino != self._inode:
            raise BenchError(f"feature store {path} was replaced by another file during the run; {_RERUN}")
        if st.st_size < end:
            raise BenchError(f"feature store {path} was truncated during the run ({st.st_size} bytes, its rows "
                             f"reach byte {end}); {_RERUN}")


_RERUN = ("restore the file or rebuild it ('bench data import' or 'bench data synth') and rerun: stored folds are "
          "kept and an interrupted fold resumes from its last checkpoint")


def _row_map(ranges: list[tuple[int, int]]) -> Callable[[int], int]:
    """Row ``r`` of a bag read from ``ranges`` -> its row in the store."""
    ends = np.cumsum([n for _, n in ranges])

    def row(r: int) -> int:
        k = int(np.searchsorted(ends, r, side="right"))
        return ranges[k][0] + r - (int(ends[k - 1]) if k else 0)

    return row


class _Prefetch:
    """A thread reading bags in a fixed order into a bounded queue; ``take`` hands them out in that order."""

    def __init__(self, order: list[int], read: Callable[[int], torch.Tensor], depth: int) -> None:
        self.order, self.pos = order, 0
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(read,), name="survbench-prefetch", daemon=True)
        self.thread.start()

    def _run(self, read: Callable[[int], torch.Tensor]) -> None:
        for i in self.order:
            if self.stop.is_set():
                return
            try:
                item: tuple[torch.Tensor | None, BaseException | None] = (read(i), None)
            except BaseException as exc:  # handed to the consumer, raised there
                item = (None, exc)
            while not self.stop.is_set():
                try:
                    self.queue.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if item[1] is not None:
                return

    def take(self, i: int) -> torch.Tensor | None:
        """The next bag if it is patient ``i``'s (an error reading it is raised here); ``None`` if not next."""
        if self.pos >= len(self.order) or self.order[self.pos] != i:
            return None
        self.pos += 1
        rows, exc = self.queue.get()
        if exc is not None:
            self.pos = len(self.order)
            raise exc
        return rows

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.queue.get_nowait()
            self.thread.join(timeout=0.05)


def patient_rows(info: StoreInfo, cohort: Cohort) -> tuple[np.ndarray, np.ndarray, dict[int, list[tuple[int, int]]]]:
    """Each patient's rows in the store: first row and length (-1 and 0 when dropped at import), and the
    slide ranges ``(offset, length)`` of the patients whose slides are not adjacent in the store."""
    index = info.slide_index()
    dropped = set(info.dropped_patients)
    starts = np.full(cohort.n_patients, -1, dtype=np.int64)
    lengths = np.zeros(cohort.n_patients, dtype=np.int64)
    split: dict[int, list[tuple[int, int]]] = {}
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
        starts[i] = ranges[0][0]
        lengths[i] = sum(n for _, n in ranges)
        if not all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(ranges)):
            split[i] = ranges
    return starts, lengths, split


def available_memory() -> int:
    """Bytes of host memory available to a new allocation without swapping (psutil: MemAvailable on Linux)."""
    import psutil

    return int(psutil.virtual_memory().available)


def resolve_placement(placement: str, nbytes: int, device: torch.device, memory_share: float | None = None,
                      available: int | None = None) -> str:
    """``device``, ``host`` or ``disk`` for a store of ``nbytes`` on ``device``.

    ``auto``: ``disk`` when ``memory_share`` is given and the store exceeds that share of the available
    host memory (``available`` bytes, measured when not given); otherwise ``device`` unless the store
    would take more than 70% of the free GPU memory (then ``host``; see :class:`ResidentBags`).
    """
    if placement not in PLACEMENTS:
        raise BenchError(f"bad placement '{placement}': choose one of {', '.join(PLACEMENTS)}")
    if placement != "auto":
        return placement
    if memory_share is not None and nbytes > memory_share * (available_memory() if available is None else available):
        return "disk"
    if device.type != "cuda":
        return "device"
    free, _ = torch.cuda.mem_get_info(device)
    return "device" if nbytes <= 0.7 * free else "host"


def load_bags(info: StoreInfo, cohort: Cohort, device: torch.device | str = "cpu", placement: str = "auto",
              memory_share: float | None = None, available: int | None = None) -> ResidentBags | DiskBags:
    """The bags of ``cohort`` in the placement ``placement`` resolves to (see :func:`resolve_placement`).

    Args:
        info: the feature store.
        cohort: the patients, in the order bag indices refer to.
        device: the compute device.
        placement: ``auto``, ``device``, ``host`` or ``disk``.
        memory_share: with ``auto``, the share of available host memory above which the store stays on disk.
        available: available host memory in bytes (measured when ``None``; tests pass a value).
    """
    device = torch.device(device)
    resolved = resolve_placement(placement, info.nbytes, device, memory_share, available)
    bags: ResidentBags | DiskBags = (DiskBags(info, cohort, device) if resolved == "disk"
                                     else ResidentBags(info, cohort, device, placement=resolved))
    bags.memory_share = memory_share if placement == "auto" else None
    return bags


def _check_finite(features: torch.Tensor, info: StoreInfo, cohort: Cohort, chunk: int = 1 << 18,
                  rows: Callable[[int], int] | None = None) -> None:
    """A clear error naming the slide and patient of the first NaN/inf row; ``rows`` maps a row of
    ``features`` to its row in the store (the identity for the whole store)."""
    wide = torch.float64 if features.dtype in (torch.float32, torch.float64) else torch.float32
    for start in range(0, features.shape[0], chunk):
        block = features[start:start + chunk]
        # screen: a row holding NaN or inf has a non-finite sum; float16 rows summed in float32 (float32 rows
        # in float64) cannot overflow, so only rows that really hold one fail (~20x faster than isfinite
        # on float16); a float64 store's rows can overflow, so a failed screen is confirmed entry by entry
        if bool(torch.isfinite(block.sum(dim=1, dtype=wide)).all()):
            continue
        ok = torch.isfinite(block).all(dim=1)
        if not bool(ok.all()):
            row = start + int(torch.nonzero(~ok)[0, 0])
            row = rows(row) if rows is not None else row
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
        bags: ResidentBags | DiskBags | None,
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
        """Batches over ``indices`` in the given order (a disk placement reads their bags ahead)."""
        if self.bags is not None:
            self.bags.prefetch(indices)
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
