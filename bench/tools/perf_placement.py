"""``bench perf --placement disk,host``: the data path's throughput per feature placement on one store.

Builds a synthetic cohort in a temporary folder (under the project's ``perf/``, removed afterwards) whose
feature store is larger than a memory limit the benchmark sets for itself (``--memory-limit-mb``), so that
``auto`` under that limit chooses ``disk``. Then, for each placement, it builds the bags and runs two passes
over every patient in a seeded shuffled order through :meth:`Batches.iterate` (the engine's path: the
read-ahead, the fp16 -> fp32 cast, the copy to the device), and reports bags/s, MiB/s of stored features and
the growth of the process's resident memory (sampled after every bag) against the limit.

Before each placement the store's pages are dropped from the operating system's page cache
(``posix_fadvise(DONTNEED)``), so pass 1 reads the disk (cold) and pass 2 what the page cache kept (warm).
The limit is the benchmark's own, measured, not one the operating system enforces: the machine may have
the memory a resident placement needs, which is what lets the two be compared on the same store.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._core.errors import BenchError
from bench.data.batches import Batches, FoldTensors, load_bags, resolve_placement
from bench.data.cohort import load_cohort
from bench.data.features import choose_store
from bench.data.toy import make_toy_project
from bench.train.runner import resolve_device

#: Patients of the synthetic cohort (one in five has two slides, as in every toy cohort) and feature size.
PATIENTS, DIM = 100, 1024
PLACEMENT_CHOICES = ("disk", "host", "device")


@dataclass
class PlacementPerf:
    """One placement's measurements (the passes are over every patient, batch size 1)."""

    placement: str
    load_s: float
    cold_bags_per_s: float
    cold_mib_per_s: float
    warm_bags_per_s: float
    warm_mib_per_s: float
    peak_rss_growth_mb: float
    within_limit: bool


def parse_placements(text: str) -> list[str]:
    """``"disk,host"`` -> ``["disk", "host"]``; an unknown name is an error listing the valid ones."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in PLACEMENT_CHOICES]
    if bad or not names:
        raise BenchError(f"bad --placement '{text}': a comma-separated list of {', '.join(PLACEMENT_CHOICES)} "
                         "(e.g. --placement disk,host)")
    return list(dict.fromkeys(names))


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_placement_perf(settings: Any, placements: list[str], memory_limit_mb: int, store_mb: int, device: str,
                       log=print) -> tuple[list[PlacementPerf], dict[str, Any]]:
    """Time ``placements`` on a synthetic store of about ``store_mb`` MiB, larger than ``memory_limit_mb``.

    Args:
        settings: the project's settings (the temporary cohort goes under its ``perf/`` folder).
        placements: names from :data:`PLACEMENT_CHOICES`, timed in this order.
        memory_limit_mb: the benchmark's own memory limit; the store must exceed it.
        store_mb: the store's target size (the synthetic patch counts are random: within a few percent).
        device: ``auto``, ``cpu`` or ``cuda``.
        log: where progress lines go.
    """
    if memory_limit_mb < 1 or store_mb <= memory_limit_mb:
        raise BenchError(f"bad --store-mb {store_mb} / --memory-limit-mb {memory_limit_mb}: the store must be larger "
                         "than the limit (e.g. --memory-limit-mb 64 --store-mb 128)")
    dev = resolve_device(device)
    parent = settings.root / "perf"
    parent.mkdir(parents=True, exist_ok=True)
    limit = memory_limit_mb * 2**20
    with tempfile.TemporaryDirectory(prefix="placement-", dir=parent) as tmp:
        n_slides = PATIENTS + -(-PATIENTS // 5)
        patches = max(1, round(store_mb * 2**20 / (n_slides * DIM * 2)))
        t0 = time.perf_counter()
        project = make_toy_project(Path(tmp), n_patients=PATIENTS, patches=patches, dim=DIM, signal=1.0)
        cohort = load_cohort(project.settings, "toy")
        info = choose_store(project.settings, cohort).info
        auto = resolve_placement("auto", info.nbytes, dev, memory_share=1.0, available=limit)
        log(f"store {info.nbytes / 2**20:.0f} MiB ({cohort.n_patients} patients, {info.n_patches:,} patches of "
            f"{info.dim}-d {info.dtype}) built in {time.perf_counter() - t0:.1f}s; memory limit {memory_limit_mb} MiB: "
            f"auto chooses {auto}")
        if info.nbytes <= limit:
            raise BenchError(f"the synthetic store came out at {info.nbytes / 2**20:.0f} MiB, not above the "
                             f"{memory_limit_mb} MiB limit; pass a larger --store-mb")
        fold = cohort.fold(0)
        order = np.random.default_rng(0).permutation(cohort.n_patients)
        out = [_time_placement(p, info, cohort, fold, order, dev, limit) for p in placements]
        for r in out:
            log(format_placement(r, memory_limit_mb))
        machine = {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                   "torch": torch.__version__, "threads": torch.get_num_threads(), "store_mb": info.nbytes / 2**20,
                   "patches": info.n_patches, "patients": cohort.n_patients, "memory_limit_mb": memory_limit_mb,
                   "auto_choice": auto}
    return out, machine


def _time_placement(placement: str, info: Any, cohort: Any, fold: Any, order: np.ndarray, dev: torch.device,
                    limit: int) -> PlacementPerf:
    gc.collect()
    _drop_page_cache(info.path)
    base = _rss()
    peak = base
    t0 = time.perf_counter()
    bags = load_bags(info, cohort, dev, placement)
    _sync(dev)
    load_s = time.perf_counter() - t0
    peak = max(peak, _rss())
    tensors = FoldTensors.build(cohort, fold, dev, bags.available)
    batches = Batches(cohort, tensors, bags)
    idx = order[bags.available[order]]
    nbytes = int(bags.lengths[idx].sum()) * info.dim * np.dtype(info.dtype).itemsize
    rates = []
    for _ in range(2):
        _sync(dev)
        t0 = time.perf_counter()
        for batch in batches.iterate(idx, 1, train=False):
            batch.x.sum()  # the bag is used, as a model would
            peak = max(peak, _rss())
        _sync(dev)
        s = time.perf_counter() - t0
        rates.append((len(idx) / s, nbytes / 2**20 / s))
    if hasattr(bags, "close"):
        bags.close()
    del bags, batches, tensors
    gc.collect()
    growth = peak - base
    return PlacementPerf(placement, load_s, *rates[0], *rates[1], growth / 2**20, growth <= limit)


def format_placement(r: PlacementPerf, limit_mb: int) -> str:
    """One printed line per placement."""
    verdict = "within" if r.within_limit else "over"
    return (f"{r.placement}: load {r.load_s:.2f}s; pass 1 (cold page cache) {r.cold_bags_per_s:.0f} bags/s, "
            f"{r.cold_mib_per_s:.0f} MiB/s; pass 2 (warm) {r.warm_bags_per_s:.0f} bags/s, "
            f"{r.warm_mib_per_s:.0f} MiB/s; "
            f"peak RSS growth {r.peak_rss_growth_mb:.0f} MiB ({verdict} the {limit_mb} MiB limit)")


def write_placement_json(path: Path, results: list[PlacementPerf], machine: dict[str, Any]) -> None:
    """The results as JSON (atomically)."""
    from bench._core.files import write_json

    write_json(path, {"machine": machine, "placements": [asdict(r) for r in results]})


__all__ = ["PLACEMENT_CHOICES", "PlacementPerf", "parse_placements", "run_placement_perf"]
