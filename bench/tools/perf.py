"""``bench perf``: measured speed of the shared data path and engine against the published data path.

For each method it times training and evaluation iterations on a synthetic cohort of a chosen
profile, twice:

* **fast** — survbench's path: the feature store resident once (host, or GPU in fp16), bags as views,
  batch size 1, CCL's K-means vectorised on the device.
* **naive** — the published path, reproduced inside the benchmark: every iteration reads the
  patient's slides from per-slide ``.pt`` files and moves them to the device, and CCL's K-means uses
  the vendored library's formulation (an ``N x k x D`` difference tensor per step, a Python loop per
  cluster to recompute the centres).

Both compute the same model; the ratio is a same-machine speed-up. Full 5-fold wall times are
extrapolated from the measured per-patient times (and labelled so). Peak host memory (RSS) and peak
GPU memory are reported beside the feature store's size.
"""

from __future__ import annotations

import contextlib
import platform
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from bench._core.errors import BenchError
from bench.api.losses import nll_loss
from bench.api.registry import get_method
from bench.data.batches import Batch, Batches, FoldTensors, ResidentBags, input_dims
from bench.data.cohort import load_cohort
from bench.data.features import choose_store
from bench.data.toy import make_toy_project
from bench.train.engine import make_optimizer
from bench.train.runner import plan_run, resolve_device

PROFILES = {
    # name: (patients, mean patches per slide (uniform in [p/2, 3p/2]), dim, timed iterations)
    "small": (48, 1024, 1024, 12),
    "realistic": (373, 15000, 1024, 40),
}


@dataclass
class ModeResult:
    mode: str
    train_s_per_patient: float
    eval_s_per_patient: float
    kmeans_share: float | None = None
    kmeans_iters: float | None = None
    extrapolated_5fold_s: float = 0.0
    peak_gpu_mb: float | None = None


@dataclass
class MethodPerf:
    method: str
    epochs: int
    n_train: int
    n_val: int
    load_s: float
    fast: ModeResult
    naive: ModeResult | None = None
    kmeans_vs_bandwidth: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        if self.naive is None:
            return None
        return self.naive.extrapolated_5fold_s / self.fast.extrapolated_5fold_s


def profile_root(settings_root: Path, profile: str) -> Path:
    return settings_root / "perf" / profile


def build_profile(root: Path, profile: str) -> Any:
    """The synthetic cohort of a profile (built once, then reused)."""
    n, patches, dim, _ = PROFILES[profile]
    if (root / "bench.toml").exists():
        from bench._core.config import load_settings
        from bench.data.toy import ToyProject

        return ToyProject(root=root, settings=load_settings(root))
    return make_toy_project(root, n_patients=n, patches=patches, dim=dim, signal=1.0)


def write_slide_files(info: Any, folder: Path, slide_ids: list[str]) -> None:
    """Per-slide float32 ``.pt`` files, as CLAM writes them, for the naive data path (written once).

    Only the slides of the patients the benchmark times are written (the realistic profile's full
    cohort would take ~27 GB as float32 files).
    """
    from bench.data.features.store import read_slide

    folder.mkdir(parents=True, exist_ok=True)
    for sid in slide_ids:
        f = folder / f"{sid}.pt"
        if not f.exists():
            torch.save(torch.from_numpy(np.asarray(read_slide(info, sid), dtype=np.float32)), f)


class NaiveBatches(Batches):
    """The published data path: read every slide file of the patient at every iteration.

    Built without resident bags (``bags=None``), so only the genomics and labels come from memory.
    """

    def __init__(self, *args: Any, folder: Path, slides: list[list[str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.folder, self.slides = folder, slides

    def make(self, idx, train: bool = True) -> Batch:
        batch = super().make(idx, train)  # bags is None: no features touched here
        bags = [torch.cat([torch.load(self.folder / f"{s}.pt") for s in self.slides[int(i)]]) for i in idx]
        batch.x = bags[0].unsqueeze(0).to(self.device)
        batch.mask = torch.ones(1, batch.x.shape[1], dtype=torch.bool, device=self.device)
        return batch


def naive_nearest_patches(x: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Anchor-nearest patches via the N x k x D difference tensor (vendored kmeans_pytorch style)."""
    dist = ((x.unsqueeze(1) - anchor.unsqueeze(0)) ** 2).sum(-1)
    return x[dist.argmin(dim=0)]


def naive_kmeans(x: torch.Tensor, init: torch.Tensor, tol: float = 1e-4, max_iter: int = 0) -> tuple[torch.Tensor, int]:
    """Lloyd's K-means as the vendored library computes it: same result, N x k x D tensor, loop per cluster."""
    centres = init.clone()
    it = 0
    while True:
        it += 1
        dist = ((x.unsqueeze(1) - centres.unsqueeze(0)) ** 2).sum(-1)
        labels = dist.argmin(dim=1)
        old = centres.clone()
        for j in range(centres.shape[0]):
            members = x[torch.nonzero(labels == j).squeeze(1)]
            centres[j] = members.mean(0) if len(members) else torch.zeros_like(centres[j])
        shift = torch.sqrt(((centres - old) ** 2).sum(1)).sum()
        if float(shift) ** 2 < tol or (max_iter and it >= max_iter):
            return centres, it


def ccl_module() -> ModuleType:
    """The module that defines the registered CCL model (found through the registry, like any method)."""
    return sys.modules[get_method("ccl").model.__module__]


@contextlib.contextmanager
def naive_kmeans_patch() -> Iterator[None]:
    ccl = ccl_module()
    saved = ccl.kmeans, ccl.nearest_patches
    ccl.kmeans, ccl.nearest_patches = naive_kmeans, naive_nearest_patches
    try:
        yield
    finally:
        ccl.kmeans, ccl.nearest_patches = saved


class KMeansTimer:
    """Accumulates time spent in CCL's K-means + alignment (synchronising the device)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self.iters, self.calls = device, 0.0, 0, 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        ccl = ccl_module()
        original = ccl.CCL.aligned_centres
        timer = self

        def timed(model, bag):
            _sync(timer.device)
            t = time.perf_counter()
            out = original(model, bag)
            _sync(timer.device)
            timer.seconds += time.perf_counter() - t
            timer.iters += model.last_kmeans_iters
            timer.calls += 1
            return out

        ccl.CCL.aligned_centres = timed
        try:
            yield
        finally:
            ccl.CCL.aligned_centres = original


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_mode(plan: Any, batches: Batches, dims: Any, iters: int, warmup: int, timer: KMeansTimer | None,
               mode: str) -> ModeResult:
    cfg = plan.config
    torch.manual_seed(0)
    model = plan.info.build(dims, cfg["model"]).to(plan.device)
    opt = make_optimizer(model.parameters(), cfg["train"])
    order = batches.t.train[: warmup + iters]
    if plan.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(plan.device)

    def train_step(i: int) -> None:
        batch = batches.make([int(i)], train=True)
        out = model(batch)
        loss = nll_loss(torch.sigmoid(out.logits), batch.bins, batch.censorship) + sum(out.aux.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    for i in order[:warmup]:
        train_step(i)
    if timer:
        timer.seconds, timer.iters, timer.calls = 0.0, 0, 0
    _sync(plan.device)
    t0 = time.perf_counter()
    for i in order[warmup:]:
        train_step(i)
    _sync(plan.device)
    train_s = (time.perf_counter() - t0) / max(1, len(order) - warmup)
    share = timer.seconds / (train_s * max(1, len(order) - warmup)) if timer else None
    km_iters = timer.iters / max(1, timer.calls) if timer else None
    model.eval()
    val = batches.t.val[:iters]
    with torch.no_grad():
        _sync(plan.device)
        t0 = time.perf_counter()
        for i in val:
            model(batches.make([int(i)], train=False))
        _sync(plan.device)
    eval_s = (time.perf_counter() - t0) / max(1, len(val))
    n_train, n_val, epochs = len(batches.t.train), len(batches.t.val), cfg["train"]["epochs"]
    per_fold = epochs * (n_train * train_s + n_val * eval_s) + n_train * eval_s
    gpu = torch.cuda.max_memory_allocated(plan.device) / 2**20 if plan.device.type == "cuda" else None
    return ModeResult(mode, train_s, eval_s, share, km_iters, 5 * per_fold, gpu)


def bandwidth_ratio(bags: ResidentBags, timer_s_per_call: float, iters: float, device: torch.device) -> float:
    """K-means time over the time to read the (fp32) bag once per Lloyd iteration (plus the init pass)."""
    n = int(np.median(bags.lengths[bags.available]))
    bag = bags.features[:n].float()
    for _ in range(3):
        bag.sum()
    _sync(device)
    t0 = time.perf_counter()
    reps = 20
    for _ in range(reps):
        bag.sum()
    _sync(device)
    read = (time.perf_counter() - t0) / reps
    return timer_s_per_call / ((iters + 1) * read)


def run_perf(settings: Any, methods: list[str], profile: str, device: str, naive: bool = True,
             iters: int | None = None, log=print) -> tuple[list[MethodPerf], dict[str, Any]]:
    """Benchmark ``methods`` on the profile's cohort; returns the results and the machine description."""
    if profile not in PROFILES:
        raise BenchError(f"unknown profile '{profile}'; choose {', '.join(PROFILES)}")
    if iters is not None and iters < 1:
        raise BenchError(f"bad --iters {iters}: must be >= 1 (timed training iterations per mode; "
                         f"leave it out for the profile's {PROFILES[profile][3]})")
    dev = resolve_device(device)
    root = profile_root(settings.root, profile)
    t0 = time.perf_counter()
    project = build_profile(root, profile)
    log(f"profile {profile}: cohort at {root} ready in {time.perf_counter() - t0:.1f}s")
    cohort = load_cohort(project.settings, "toy")
    store = choose_store(project.settings, cohort).info
    n_iters = iters or PROFILES[profile][3]
    t0 = time.perf_counter()
    bags = ResidentBags(store, cohort, dev)
    _sync(dev)
    load_s = time.perf_counter() - t0
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if naive:
        split = cohort.split(0)
        timed = np.concatenate([split.train[: n_iters + 2], split.val[:n_iters]])
        write_slide_files(store, root / "pt_files", [s for i in timed for s in cohort.slides[int(i)]])
    out: list[MethodPerf] = []
    for name in methods:
        plan = plan_run(project.settings, name, "toy", device=str(dev.type), load_store=False)
        plan.store = None
        fold = cohort.fold(0)
        tensors = FoldTensors.build(cohort, fold, dev, bags.available)
        dims = input_dims(cohort, plan.config["data"]["n_bins"], bags.dim if plan.info.uses_pathology else None,
                          tensors.train)
        use_bags = bags if plan.info.uses_pathology else None
        fast_batches = Batches(cohort, tensors, use_bags, generator=torch.Generator().manual_seed(0))
        timer = KMeansTimer(dev) if name == "ccl" else None
        with timer.installed() if timer else contextlib.nullcontext():
            fast = _time_mode(plan, fast_batches, dims, n_iters, 2, timer, "fast")
            ratio = (bandwidth_ratio(bags, timer.seconds / max(1, timer.calls), fast.kmeans_iters or 1, dev)
                     if timer and timer.calls else None)
            slow = None
            if naive:
                nb = NaiveBatches(cohort, tensors, None, generator=torch.Generator().manual_seed(0),
                                  folder=root / "pt_files", slides=cohort.slides) if use_bags else fast_batches
                with naive_kmeans_patch() if name == "ccl" else contextlib.nullcontext():
                    slow = _time_mode(plan, nb, dims, max(2, n_iters // 2), 1, timer, "naive")
        res = MethodPerf(name, plan.config["train"]["epochs"], len(tensors.train), len(tensors.val), load_s, fast,
                         slow, ratio)
        out.append(res)
        log(format_row(res))
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "profile": profile,
        "patients": cohort.n_patients,
        "patches": int(store.n_patches),
        "store_mb": store.nbytes / 2**20,
        "peak_host_rss_mb_after_load": rss_after_load,
        "peak_host_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    return out, machine


def format_row(r: MethodPerf) -> str:
    f = r.fast
    parts = [f"{r.method}: train {1 / f.train_s_per_patient:.1f} patients/s ({f.train_s_per_patient * 1e3:.1f} ms), "
             f"eval {1 / f.eval_s_per_patient:.1f}/s, 5 folds x {r.epochs} epochs ≈ "
             f"{f.extrapolated_5fold_s / 60:.1f} min (extrapolated)"]
    if f.kmeans_share is not None:
        parts.append(f"K-means {100 * f.kmeans_share:.0f}% of a training step ({f.kmeans_iters:.1f} Lloyd iterations)")
    if r.kmeans_vs_bandwidth is not None:
        parts.append(f"K-means = {r.kmeans_vs_bandwidth:.1f}x one bag read per iteration")
    if r.naive is not None:
        parts.append(f"naive {r.naive.train_s_per_patient * 1e3:.1f} ms/patient -> speed-up x{r.speedup:.1f}")
    return "; ".join(parts)


def write_json(path: Path, results: list[MethodPerf], machine: dict[str, Any]) -> None:
    from bench._core.files import write_json as atomic_json

    atomic_json(path, {"machine": machine, "methods": [asdict(r) | {"speedup": r.speedup} for r in results]})


__all__ = ["PROFILES", "run_perf"]
