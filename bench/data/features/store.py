"""The feature store: one contiguous HDF5 file of patch features per cohort.

Layout (format version 1)::

    /features            [total_patches, dim]  float16 (default) or float32, contiguous
    /coords              [total_patches, 2]    int32 (only when every source slide had coords)
    /slides/slide_id     [n_slides]            utf-8 strings
    /slides/offset       [n_slides]            int64  first row of the slide in /features
    /slides/length       [n_slides]            int64  number of patches of the slide
    attrs: format, cohort, dim, dtype, synthetic, source, encoder, created, fingerprint,
           params (JSON), dropped_patients (JSON), survbench version

Slides are written grouped by patient in the cohort's order, so a patient's bag is one
contiguous row range. Files are written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from bench._core.errors import BenchError
from bench._core.files import atomic_path
from bench._core.version import __version__

FORMAT_VERSION = 1


@dataclass
class SlideFeatures:
    """One slide's features (and coords, if known) on their way into a store."""

    slide_id: str
    features: np.ndarray  # [n, dim]
    coords: np.ndarray | None = None  # [n, 2]


@dataclass
class StoreInfo:
    """A store's metadata and slide index (read without loading the features)."""

    path: Path
    cohort: str
    dim: int
    dtype: str
    synthetic: bool
    source: str
    encoder: str
    fingerprint: str
    created: str
    slide_ids: list[str]
    offsets: np.ndarray
    lengths: np.ndarray
    has_coords: bool
    params: dict[str, Any] = field(default_factory=dict)
    dropped_patients: list[str] = field(default_factory=list)

    @property
    def n_patches(self) -> int:
        return int(self.lengths.sum())

    @property
    def n_slides(self) -> int:
        return len(self.slide_ids)

    @property
    def nbytes(self) -> int:
        return self.n_patches * self.dim * np.dtype(self.dtype).itemsize

    @property
    def kind(self) -> str:
        return "synthetic" if self.synthetic else "real"

    def slide_index(self) -> dict[str, tuple[int, int]]:
        """slide_id -> (offset, length)."""
        return {s: (int(o), int(n)) for s, o, n in zip(self.slide_ids, self.offsets, self.lengths, strict=True)}

    def describe(self) -> dict[str, Any]:
        """What manifests record about the store."""
        return {
            "file": f"{self.path.parent.name}/{self.path.name}",  # under [paths] features: no machine paths
            "kind": self.kind,
            "synthetic": self.synthetic,
            "encoder": self.encoder,
            "source": self.source,
            "dim": self.dim,
            "dtype": self.dtype,
            "n_slides": self.n_slides,
            "n_patches": self.n_patches,
            "fingerprint": self.fingerprint,
            "params": self.params,
            "dropped_patients": self.dropped_patients,
        }


def write_store(
    dest: Path,
    cohort: str,
    slides: Iterable[SlideFeatures],
    total_patches: int,
    dim: int,
    *,
    synthetic: bool,
    source: str,
    encoder: str,
    params: dict[str, Any] | None = None,
    dropped_patients: list[str] | None = None,
    dtype: str = "float16",
    with_coords: bool = False,
) -> StoreInfo:
    """Write slides into a new store at ``dest`` (atomically) and return its info.

    ``total_patches`` must equal the sum of the slides' patch counts: the features dataset is
    allocated once, contiguous. The fingerprint is a sha256 over the stored bytes and the index.
    """
    np_dtype = np.dtype(dtype)
    digest = hashlib.sha256()
    ids: list[str] = []
    offsets: list[int] = []
    lengths: list[int] = []
    with atomic_path(dest, suffix=".h5") as tmp, _DiskFile(tmp) as disk, h5py.File(disk, "w") as f:
        feats = f.create_dataset("features", shape=(total_patches, dim), dtype=np_dtype)
        coords = f.create_dataset("coords", shape=(total_patches, 2), dtype=np.int32) if with_coords else None
        pos = 0
        for s in slides:
            x = np.asarray(s.features)
            if x.ndim != 2 or x.shape[1] != dim:
                raise BenchError(f"slide {s.slide_id}: features of shape {tuple(x.shape)}, expected [n, {dim}]")
            n = x.shape[0]
            if pos + n > total_patches:
                raise BenchError(f"slide {s.slide_id}: more patches than announced ({total_patches})")
            block = x.astype(np_dtype, copy=False)
            feats[pos:pos + n] = block
            if coords is not None:
                if s.coords is None:
                    raise BenchError(f"slide {s.slide_id}: no coords while other slides have them")
                coords[pos:pos + n] = np.asarray(s.coords, dtype=np.int32).reshape(n, 2)
            digest.update(s.slide_id.encode())
            digest.update(np.ascontiguousarray(block).tobytes())
            ids.append(s.slide_id)
            offsets.append(pos)
            lengths.append(n)
            pos += n
        if pos != total_patches:
            raise BenchError(f"store {dest}: wrote {pos} patches, announced {total_patches}")
        g = f.create_group("slides")
        g.create_dataset("slide_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
        g.create_dataset("offset", data=np.array(offsets, dtype=np.int64))
        g.create_dataset("length", data=np.array(lengths, dtype=np.int64))
        attrs = {
            "format": FORMAT_VERSION,
            "cohort": cohort,
            "dim": dim,
            "dtype": np_dtype.name,
            "synthetic": bool(synthetic),
            "source": source,
            "encoder": encoder,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "fingerprint": digest.hexdigest()[:16],
            "params": json.dumps(params or {}, sort_keys=True),
            "dropped_patients": json.dumps(dropped_patients or []),
            "survbench": __version__,
        }
        f.attrs.update(attrs)
    return read_info(dest)


class _DiskFile:
    """The file object HDF5 writes a store through: a failed write (full disk, quota) is remembered, not
    passed to HDF5, and raised as that ``OSError`` when the file is closed.

    HDF5 cannot close a file after one of its writes failed: h5py raises from ``close`` and the process
    then segfaults. Through this object HDF5 never sees the failure, closes cleanly, and the caller
    (``atomic_path``) removes the temporary file and reports the error.
    """

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "w+b", buffering=0)  # noqa: SIM115 (closed in __exit__)
        self.error: OSError | None = None

    def __enter__(self) -> _DiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._raw.close()
        except OSError as err:
            self.error = self.error or err
        if self.error is not None:
            raise self.error

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += self._raw.write(view[done:])
            except OSError as err:
                self.error = err
        return len(view)

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def readinto(self, buf: Any) -> int:
        return self._raw.readinto(buf)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._raw.seek(pos, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._raw.truncate(size)
            except OSError as err:
                self.error = err
        return self._raw.tell() if size is None else size

    def flush(self) -> None:
        pass  # unbuffered: every write went to the operating system (atomic_path fsyncs the file)


def read_info(path: Path) -> StoreInfo:
    """Open a store and read its metadata and index; a missing or corrupt store is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"feature store {path} does not exist; "
                         "create it with 'bench data import' or 'bench data synth'")
    try:
        with h5py.File(path, "r") as f:
            a = dict(f.attrs)
            missing = [k for k in ("format", "cohort", "dim", "synthetic", "fingerprint") if k not in a]
            if missing or "features" not in f or "slides" not in f:
                what = ", ".join(missing) or "datasets"
                raise BenchError(f"{path} is not a survbench feature store (missing {what}); "
                                 "rebuild it with 'bench data import' or 'bench data synth'")
            if int(a["format"]) != FORMAT_VERSION:
                raise BenchError(f"{path} has store format {a['format']}, this survbench reads {FORMAT_VERSION}; "
                                 "rebuild it")
            ids = [s.decode() if isinstance(s, bytes) else str(s) for s in f["slides/slide_id"][...]]
            offsets = f["slides/offset"][...].astype(np.int64)
            lengths = f["slides/length"][...].astype(np.int64)
            shape = f["features"].shape
            dtype = f["features"].dtype.name
            has_coords = "coords" in f
    except BenchError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise BenchError(f"feature store {path} is unreadable ({exc}); delete it and rebuild it with "
                         "'bench data import' or 'bench data synth'") from exc
    dim = int(a["dim"])
    if len(shape) != 2 or shape[1] != dim:
        raise BenchError(f"feature store {path}: features have shape {shape} but the store says dim {dim}; rebuild it")
    if len(ids) and (offsets.min() < 0 or (offsets + lengths).max() > shape[0]):
        raise BenchError(f"feature store {path}: slide index points outside the features; rebuild it")
    return StoreInfo(
        path=path,
        cohort=str(a["cohort"]),
        dim=dim,
        dtype=dtype,
        synthetic=bool(a["synthetic"]),
        source=str(a.get("source", "")),
        encoder=str(a.get("encoder", "")),
        fingerprint=str(a["fingerprint"]),
        created=str(a.get("created", "")),
        slide_ids=ids,
        offsets=offsets,
        lengths=lengths,
        has_coords=has_coords,
        params=json.loads(a.get("params", "{}")),
        dropped_patients=json.loads(a.get("dropped_patients", "[]")),
    )


def read_features(info: StoreInfo, pin_memory: bool = False) -> np.ndarray:
    """All features of the store in one read, as stored (``[total, dim]``, fp16 by default).

    With ``pin_memory`` the array lives in page-locked memory (for fast asynchronous copies to a GPU),
    read directly into it, so the host holds one copy of the store.
    """
    try:
        with h5py.File(info.path, "r") as f:
            ds = f["features"]
            if pin_memory:
                import torch

                out = torch.empty(ds.shape, dtype=getattr(torch, ds.dtype.name), pin_memory=True).numpy()
            else:
                out = np.empty(ds.shape, dtype=ds.dtype)
            if out.size:
                ds.read_direct(out)
            return out
    except OSError as exc:
        raise BenchError(f"feature store {info.path} is unreadable ({exc}); delete it and rebuild it") from exc


def read_slide(info: StoreInfo, slide_id: str) -> np.ndarray:
    """One slide's features (used by tests and the naive data path of ``bench perf``)."""
    index = info.slide_index()
    if slide_id not in index:
        raise BenchError(f"slide {slide_id} is not in feature store {info.path}")
    off, n = index[slide_id]
    with h5py.File(info.path, "r") as f:
        return f["features"][off:off + n]
