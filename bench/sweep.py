"""``bench sweep``: a grid of run keys on this machine (a worker pool) or on Slurm (submitit job arrays).

A grid is methods x override sets x cohorts x folds x seeds. It is expanded and every part is checked
(unknown method, cohort or key, fold out of range, bad value) before anything runs; keys already
complete in the store are skipped. Workers take keys grouped by cohort, so each worker loads a
cohort's features once for all its runs. A lock per run key keeps two sweeps from training the same
key at once; a killed run resumes from its last completed epoch checkpoint.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import signal
import time
import tomllib
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.cohort import available_cohorts, resolve_cohort, short_name
from bench.config import Settings, format_value, load_settings
from bench.errors import BenchError
from bench.locks import holder
from bench.predictions import CHECKPOINT

GRID_KEYS = {"methods", "cohorts", "folds", "seeds", "set", "sets", "epochs", "features", "device", "executor",
             "workers", "slurm"}
SLURM_KEYS = {"partition", "time", "gpus_per_node", "cpus_per_task", "mem_gb", "array_parallelism", "chunk_size",
              "account", "qos", "cluster", "folder"}


@dataclass(frozen=True)
class SweepKey:
    """One run key of a sweep, as plain data (picklable for workers and Slurm tasks)."""

    method: str
    cohort: str
    fold: int
    seed: int
    sets: tuple[tuple[str, Any], ...] = ()
    variant: str = "default"
    epochs: int | None = None
    features: str | None = None
    device: str | None = None

    def label(self) -> str:
        return f"{self.method}/{self.variant}/{self.cohort}/seed{self.seed}/fold{self.fold}"

    def command(self) -> str:
        parts = [f"bench run --method {self.method} --cohort {short_name(self.cohort)} --folds {self.fold}"]
        if self.sets:
            parts.append("--set " + ",".join(f"{k}={format_value(v)}" for k, v in self.sets))
        parts.append(f"--seed {self.seed}")
        if self.epochs is not None:
            parts.append(f"--epochs {self.epochs}")
        return " ".join(parts)


@dataclass
class SweepSpec:
    """A grid: what to run and how."""

    methods: list[str]
    cohorts: list[str]
    folds: list[int] | None = None  # None = all folds of each cohort
    seeds: list[int] = field(default_factory=lambda: [0])
    sets: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    epochs: int | None = None
    features: str | None = None
    device: str | None = None
    executor: str = "local"
    workers: int = 1
    slurm: dict[str, Any] = field(default_factory=dict)


def parse_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise BenchError(f"--{what} is empty")
    return items


def parse_ints(text: str | None, what: str) -> list[int] | None:
    items = parse_list(text, what)
    if items is None or items == ["all"]:
        return None
    try:
        return [int(x) for x in items]
    except ValueError:
        raise BenchError(f"bad --{what} '{text}': comma-separated integers or 'all'") from None


def load_grid(path: Path) -> SweepSpec:
    """Read a grid TOML file (keys: methods, cohorts, folds, seeds, set, sets, epochs, executor, workers, [slurm])."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"grid file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"grid file {path} is not valid TOML: {exc}") from exc
    unknown = set(raw) - GRID_KEYS
    if unknown:
        raise BenchError(f"unknown key(s) {', '.join(sorted(unknown))} in grid {path}; "
                         f"valid: {', '.join(sorted(GRID_KEYS))}")
    if "methods" not in raw or "cohorts" not in raw:
        raise BenchError(f"grid {path} must list 'methods' and 'cohorts'")

    def as_list(v: Any) -> list:
        return v if isinstance(v, list) else [v]

    folds = raw.get("folds", "all")
    base = dict(raw.get("set", {}))
    sets = [dict(base, **s) for s in raw.get("sets", [{}])]
    slurm = dict(raw.get("slurm", {}))
    bad = set(slurm) - SLURM_KEYS
    if bad:
        raise BenchError(f"unknown [slurm] key(s) {', '.join(sorted(bad))} in grid {path}; "
                         f"valid: {', '.join(sorted(SLURM_KEYS))}")
    return SweepSpec(
        methods=[str(m) for m in as_list(raw["methods"])],
        cohorts=[str(c) for c in as_list(raw["cohorts"])],
        folds=None if folds == "all" else [int(f) for f in as_list(folds)],
        seeds=[int(s) for s in as_list(raw.get("seeds", [0]))],
        sets=sets,
        epochs=raw.get("epochs"),
        features=raw.get("features"),
        device=raw.get("device"),
        executor=raw.get("executor", "local"),
        workers=int(raw.get("workers", 1)),
        slurm=slurm,
    )


def expand(settings: Settings, spec: SweepSpec) -> list[SweepKey]:
    """All run keys of the grid, every part validated first (nothing runs on a bad spec)."""
    from bench.runner import plan_run

    if spec.executor not in ("local", "slurm", "debug"):
        raise BenchError(f"unknown executor '{spec.executor}'; choose local, slurm or debug")
    if spec.workers < 1:
        raise BenchError(f"--workers must be >= 1, got {spec.workers}")
    cohorts = available_cohorts(settings) if [c.lower() for c in spec.cohorts] == ["all"] else [
        resolve_cohort(settings, c) for c in spec.cohorts]
    for s in spec.seeds:
        if s < 0:
            raise BenchError(f"bad seed {s}: seeds are >= 0")
    keys: list[SweepKey] = []
    for method in spec.methods:
        for sets in spec.sets:
            for cohort in cohorts:
                # plan_run validates method, cohort, keys and values, folds and device (no store is built)
                plan = plan_run(settings, method, cohort, folds=spec.folds, epochs=spec.epochs, sets=sets,
                                device=spec.device, load_store=False)
                frozen = tuple(sorted(sets.items()))
                for seed in spec.seeds:
                    for fold in plan.folds:
                        keys.append(SweepKey(method=plan.info.name, cohort=plan.cohort.name, fold=fold, seed=seed,
                                             sets=frozen, variant=plan.variant, epochs=spec.epochs,
                                             features=spec.features, device=spec.device))
    return keys


def key_status(settings: Settings, key: SweepKey) -> str:
    """complete | running | interrupted (checkpoint left) | pending."""
    from bench.predictions import read_manifest, run_dir

    d = run_dir(settings.results_dir, key.method, key.variant, key.cohort, key.seed, key.fold)
    m = read_manifest(d)
    if m is not None and m.get("status") == "complete":
        return "complete"
    if holder(d) is not None:
        return "running"
    if (d / CHECKPOINT).exists():
        return "interrupted"
    return "pending"


# ----------------------------------------------------------------------------------------------
# Running keys (inside a worker, a Slurm task or this process)


@dataclass
class KeyResult:
    label: str
    status: str  # trained | resumed | skipped | busy | failed
    seconds: float = 0.0
    error: str = ""


def _group(keys: Sequence[SweepKey]) -> list[list[SweepKey]]:
    """Keys grouped by (method, sets, cohort, seed, features), in order; one plan (and one cohort load) each."""
    groups: dict[tuple, list[SweepKey]] = {}
    for k in keys:
        groups.setdefault((k.method, k.sets, k.cohort, k.seed, k.epochs, k.features, k.device), []).append(k)
    return list(groups.values())


_RESIDENT: dict[tuple, Any] = {}


def run_keys(keys: Sequence[SweepKey], root: str, report: Callable[[KeyResult], None] | None = None,
             stop_after_epoch: int | None = None) -> list[KeyResult]:
    """Train the given keys (skipping complete or busy ones); the cohort's features are loaded once per cohort."""
    from bench.batches import ResidentBags
    from bench.runner import execute, plan_run

    results: list[KeyResult] = []
    try:
        settings = load_settings(Path(root))
    except BenchError as exc:  # e.g. bench.toml edited into something invalid mid-sweep
        for k in keys:
            _record(results, report, KeyResult(k.label(), "failed", 0.0, str(exc)))
        return results
    loaded = _RESIDENT  # survives across chunks run by the same worker process
    for group in _group(sorted(keys, key=lambda k: (k.cohort, k.method, k.sets, k.seed, k.fold))):
        k0 = group[0]
        try:
            plan = plan_run(settings, k0.method, k0.cohort, folds=[k.fold for k in group], seed=k0.seed,
                            epochs=k0.epochs, sets=dict(k0.sets), features=k0.features, device=k0.device)
            bags = None
            if plan.store is not None:
                store_key = (plan.store.info.path, plan.store.info.fingerprint, str(plan.device))
                if store_key not in loaded:
                    loaded.clear()  # keys are sorted by cohort: keep one cohort resident at a time
                    loaded[store_key] = ResidentBags(plan.store.info, plan.cohort, plan.device)
                bags = loaded[store_key]
        except BenchError as exc:
            for k in group:
                _record(results, report, KeyResult(k.label(), "failed", 0.0, str(exc)))
            continue
        for k in group:  # one key at a time, so a failing fold does not take the others down
            t0 = time.perf_counter()
            try:
                (out,) = execute(dataclasses.replace(plan, folds=[k.fold]), bags=bags,
                                 stop_after_epoch=stop_after_epoch)
                _record(results, report, KeyResult(k.label(), out.status, out.seconds))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one failing key must not stop the sweep
                msg = str(exc) if isinstance(exc, BenchError) else "".join(
                    traceback.format_exception_only(exc)).strip()
                _record(results, report, KeyResult(k.label(), "failed", time.perf_counter() - t0, msg))
    return results


def _record(results: list[KeyResult], report: Callable[[KeyResult], None] | None, r: KeyResult) -> None:
    results.append(r)
    if report:
        report(r)


_PROGRESS: Any = None  # a worker's queue for per-key results


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the sweep process dies (no orphan keeps training)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the sweep's SIGTERM handler still terminates the pool


def _worker_init(threads: int, devices: list[int] | None, counter: Any, progress: Any = None) -> None:
    import torch

    global _PROGRESS
    die_with_parent()
    _PROGRESS = progress
    torch.set_num_threads(threads)
    if devices:
        with counter.get_lock():
            slot = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices[slot % len(devices)])


def _worker_run(args: tuple[list[SweepKey], str]) -> int:
    keys, root = args

    def report(r: KeyResult) -> None:
        _PROGRESS.put(asdict(r))

    return len(run_keys(keys, root, report=report))


def chunk_by_cohort(keys: Sequence[SweepKey], n_chunks: int) -> list[list[SweepKey]]:
    """Split keys into chunks of one cohort each (large cohorts split further), about ``n_chunks`` or more."""
    by_cohort: dict[str, list[SweepKey]] = {}
    for k in keys:
        by_cohort.setdefault(k.cohort, []).append(k)
    size = max(1, -(-len(keys) // max(1, n_chunks)))
    chunks = []
    for ks in by_cohort.values():
        chunks += [ks[i:i + size] for i in range(0, len(ks), size)]
    return chunks


def run_local(keys: Sequence[SweepKey], root: Path, workers: int, on_result: Callable[[KeyResult], None]) -> None:
    """A pool of worker processes on this machine; on a GPU machine ``workers`` slots per device."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    total = workers * max(1, len(devices))
    threads = max(1, (os.cpu_count() or 1) // total)
    chunks = chunk_by_cohort(keys, total)
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    progress = ctx.Queue()

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # leaves the `with` below, which terminates the workers

    previous = signal.signal(signal.SIGTERM, stop)
    with ctx.Pool(total, initializer=_worker_init, initargs=(threads, devices or None, counter, progress)) as pool:
        pending = pool.map_async(_worker_run, [(c, str(root)) for c in chunks])
        while True:  # report every key as it finishes, not per chunk
            try:
                on_result(KeyResult(**progress.get(timeout=0.5)))
            except queue.Empty:
                if pending.ready():
                    break
        while not progress.empty():
            on_result(KeyResult(**progress.get()))
        pending.get()  # re-raise a worker crash
    signal.signal(signal.SIGTERM, previous)


class SlurmChunk:
    """A Slurm array task: run a chunk of keys; on preemption submitit requeues it (the same call),
    which skips completed keys and resumes the interrupted one from its epoch checkpoint."""

    def __init__(self, keys: list[SweepKey], root: str) -> None:
        self.keys, self.root = keys, root

    def __call__(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in run_keys(self.keys, self.root)]

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmChunk(self.keys, self.root))


def run_slurm(keys: Sequence[SweepKey], root: Path, options: dict[str, Any], wait: bool,
              on_result: Callable[[KeyResult], None], log: Callable[[str], None]) -> list[str]:
    """Submit chunks of keys as one submitit job array (cluster 'slurm', or submitit's 'local'/'debug')."""
    try:
        import submitit
    except ImportError:
        raise BenchError("the slurm executor needs submitit: pip install 'survbench[slurm]'") from None
    cluster = options.get("cluster", "slurm")
    folder = Path(options.get("folder") or (root / "results" / ".submitit"))
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": int(options.get("time", 60))}
    if cluster == "slurm":
        for ours, theirs in (("partition", "slurm_partition"), ("gpus_per_node", "gpus_per_node"),
                             ("cpus_per_task", "cpus_per_task"), ("mem_gb", "mem_gb"),
                             ("array_parallelism", "slurm_array_parallelism"), ("account", "slurm_account"),
                             ("qos", "slurm_qos")):
            if ours in options:
                params[theirs] = options[ours]
    executor.update_parameters(**params)
    chunk_size = int(options.get("chunk_size", 5))
    chunks = [list(keys[i:i + chunk_size]) for i in range(0, len(keys), chunk_size)]
    tasks = [SlurmChunk(c, str(root)) for c in chunks]
    jobs = executor.submit_array(tasks)
    ids = [j.job_id for j in jobs]
    log(f"submitted {len(jobs)} array task(s) to {cluster}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
    if wait:
        for job in jobs:
            try:
                for r in job.result():
                    on_result(KeyResult(**r))
            except Exception as exc:
                log(f"array task {job.job_id} failed: {exc}")
    return ids


@dataclass
class Tally:
    """Progress of a sweep: done / running / failed / remaining."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    busy: int = 0
    failures: list[KeyResult] = field(default_factory=list)

    def add(self, r: KeyResult) -> None:
        if r.status == "failed":
            self.failed += 1
            self.failures.append(r)
        elif r.status == "skipped":
            self.skipped += 1
        elif r.status == "busy":
            self.busy += 1
        else:
            self.done += 1

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - self.skipped - self.busy

    def line(self) -> str:
        return (f"done {self.done} · skipped {self.skipped} · running elsewhere {self.busy} · failed {self.failed} "
                f"· remaining {self.remaining} (of {self.total})")


def run_spec(settings: Settings, spec: SweepSpec, log: Callable[[str], None], *, wait: bool = True,
             dry_run: bool = False) -> Tally:
    """Expand, check and run a grid (the body of ``bench sweep``); returns the final tally."""
    keys = expand(settings, spec)
    status = describe_keys(settings, keys)
    todo = [k for k, s in status if s != "complete"]
    counts = {s: sum(1 for _, x in status if x == s) for s in ("complete", "running", "interrupted", "pending")}
    log(f"{len(keys)} run keys: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    tally = Tally(total=len(todo))
    if dry_run:
        from tabulate import tabulate

        log(tabulate([[k.label(), s, k.command()] for k, s in status], headers=["key", "status", "command"]))
        log(f"{len(todo)} would run")
        return tally
    if not todo:
        log("nothing to run: every key is complete")
        return tally

    def on_result(r: KeyResult) -> None:
        tally.add(r)
        note = f" — {r.error}" if r.error else ""
        log(f"  {r.label}: {r.status}{note} ({tally.line()})")

    if spec.executor == "debug":
        run_keys(todo, str(settings.root), report=on_result)
    elif spec.executor == "local":
        run_local(todo, settings.root, spec.workers, on_result)
    else:
        run_slurm(todo, settings.root, spec.slurm, wait, on_result, log)
    if wait or spec.executor != "slurm":
        log(tally.line())
    return tally


def describe_keys(settings: Settings, keys: Iterable[SweepKey]) -> list[tuple[SweepKey, str]]:
    return [(k, key_status(settings, k)) for k in keys]


def write_failures(settings: Settings, failures: list[KeyResult]) -> Path | None:
    """Record failed keys and their errors next to the store (results/.sweep-failures.json)."""
    if not failures:
        return None
    from bench.io import write_json

    path = settings.results_dir / ".sweep-failures.json"
    write_json(path, [asdict(f) for f in failures])
    return path


__all__ = ["SweepKey", "SweepSpec", "Tally", "expand", "load_grid", "run_keys", "run_local", "run_slurm"]
