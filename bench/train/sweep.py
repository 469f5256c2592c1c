"""``bench sweep``: a grid of run keys on this machine (a worker pool) or on Slurm (submitit job arrays).

A grid is methods x override sets x cohorts x folds x seeds. It is expanded and every part is checked
(unknown method, cohort or key, fold out of range, bad value) before anything runs; keys already
complete in the store are skipped. Workers take keys grouped by cohort, so each worker loads a
cohort's features once for all its runs. A lock per run key keeps two sweeps from training the same
key at once; a killed run resumes from its last completed epoch checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing as mp
import os
import signal
import time
import tomllib
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._core.config import SEED_HELP, SEED_LIMIT, SPLIT_KINDS, Settings, format_value, load_settings
from bench._core.errors import BenchError
from bench.data.cohort import available_cohorts, resolve_cohort
from bench.store.costs import CostEstimate
from bench.store.keys import SWEEP_ORDER, RunKey
from bench.store.locks import holder
from bench.store.predictions import CHECKPOINT
from bench.train.workers import die_with_parent, run_slots

GRID_KEYS = {"methods", "cohorts", "folds", "seeds", "set", "sets", "epochs", "features", "splits", "device",
             "executor", "workers", "slurm"}
SLURM_KEYS = {"partition", "time", "gpus_per_node", "cpus_per_task", "mem_gb", "array_parallelism", "chunk_size",
              "account", "qos", "cluster", "folder"}


@dataclass(frozen=True)
class SweepTask:
    """One run of a sweep: its store key and how to make it, as plain data (picklable for workers and Slurm)."""

    key: RunKey
    sets: tuple[tuple[str, Any], ...] = ()  # the grid's overrides of this run, as given (sorted)
    epochs: int | None = None
    features: str | None = None
    device: str | None = None

    @property
    def method(self) -> str:
        return self.key.method

    @property
    def variant(self) -> str:
        return self.key.variant

    @property
    def cohort(self) -> str:
        return self.key.cohort

    @property
    def seed(self) -> int:
        return self.key.seed

    @property
    def fold(self) -> int:
        return self.key.fold

    def label(self) -> str:
        return self.key.label()

    def command(self) -> str:
        tail = [f"--features {self.features}"] if self.features not in (None, "auto") else []
        return self.key.command([(k, format_value(v)) for k, v in self.sets], epochs=self.epochs, tail=tail,
                                order=SWEEP_ORDER)


@dataclass
class SweepSpec:
    """A grid: what to run and how."""

    methods: list[str]
    cohorts: list[str]
    folds: list[int] | None = None  # None = all folds of each cohort
    seeds: list[int] = field(default_factory=lambda: [0])
    sets: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    epochs: int | None = None
    features: str | list[str] | None = None  # one store, or several: the grid runs once per store
    splits: str | None = None  # fixed or site, for every run (as ``--set splits=site``)
    device: str | None = None
    executor: str = "local"
    workers: int = 1
    slurm: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None  # the grid file it was read from (named in errors)


def parse_list(text: str | None, what: str) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None stays None; text naming nothing (``""``, ``","``) is an error."""
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise BenchError(f"bad --{what} '{text}': it names nothing; give comma-separated values")
    return items


def parse_ints(text: str | None, what: str) -> list[int] | None:
    """``"0,2"`` -> ``[0, 2]``; None or ``all`` -> None (all); anything else is an error naming ``--what``."""
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if [x.lower() for x in items] == ["all"]:
        return None
    try:
        ints = [int(x) for x in items]
    except ValueError:
        ints = []
    if not ints:
        raise BenchError(f"bad --{what} '{text}': write comma-separated integers like 0,2 or 'all'")
    return ints


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
    for key, value in raw.items():
        _check_grid_value(path, key, value)
    slurm = dict(raw.get("slurm", {}))
    bad = set(slurm) - SLURM_KEYS
    if bad:
        raise BenchError(f"unknown [slurm] key(s) {', '.join(sorted(bad))} in grid {path}; "
                         f"valid: {', '.join(sorted(SLURM_KEYS))}")
    for key, value in slurm.items():
        _check_grid_value(path, f"slurm.{key}", value)

    def as_list(v: Any) -> list:
        return v if isinstance(v, list) else [v]

    folds = raw.get("folds", "all")
    base = dict(raw.get("set", {}))
    sets = [dict(base, **s) for s in raw.get("sets", [{}])]
    return SweepSpec(
        methods=as_list(raw["methods"]),
        cohorts=as_list(raw["cohorts"]),
        folds=None if folds == "all" else as_list(folds),
        seeds=as_list(raw.get("seeds", [0])),
        sets=sets,
        epochs=raw.get("epochs"),
        features=raw.get("features"),
        splits=raw.get("splits"),
        device=raw.get("device"),
        executor=raw.get("executor", "local"),
        workers=raw.get("workers", 1),
        slurm=slurm,
        source=Path(path),
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _names(v: Any) -> bool:
    items = v if isinstance(v, list) else [v]
    return bool(items) and all(isinstance(x, str) and x.strip() for x in items)


def _ints(v: Any, ok: Callable[[int], bool]) -> bool:
    items = v if isinstance(v, list) else [v]
    return bool(items) and all(_is_int(x) and ok(x) for x in items)


#: What each grid key must hold (checked before anything runs) and the fix named in the error.
GRID_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "methods": (_names, 'a method name or a list of them, e.g. ["ccl", "mcat"]'),
    "cohorts": (_names, 'a cohort or a list of them, e.g. ["UCEC"], or "all"'),
    "folds": (lambda v: v == "all" or _ints(v, lambda x: x >= 0), 'a list of fold numbers like [0, 1] or "all"'),
    "seeds": (lambda v: _ints(v, lambda x: 0 <= x < SEED_LIMIT), f"a list of seeds like [0, 1]; {SEED_HELP}"),
    "set": (lambda v: isinstance(v, dict), "a table of overrides: [set] followed by key = value lines"),
    "sets": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v),
             "a list of override tables, e.g. [{}, {k = 9}]"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "features": (_names, "'auto', 'synthetic', a store name or a path to an .h5 store, or a list of them (the grid "
                         'runs once per store), e.g. ["resnet50", "uni_v2"]'),
    "splits": (lambda v: v in SPLIT_KINDS, f"one of {', '.join(SPLIT_KINDS)}"),
    "device": (lambda v: v in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
    "executor": (lambda v: v in ("local", "slurm", "debug"), "local, slurm or debug"),
    "workers": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "slurm": (lambda v: isinstance(v, dict), "a table: [slurm] followed by key = value lines"),
    "slurm.partition": (lambda v: isinstance(v, str), "a partition name"),
    "slurm.account": (lambda v: isinstance(v, str), "an account name"),
    "slurm.qos": (lambda v: isinstance(v, str), "a QOS name"),
    "slurm.folder": (lambda v: isinstance(v, str), "a folder path"),
    "slurm.cluster": (lambda v: v in ("slurm", "local", "debug"), "slurm, local or debug"),
    "slurm.time": (lambda v: _is_int(v) and v >= 1, "minutes, an integer >= 1"),
    "slurm.gpus_per_node": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "slurm.cpus_per_task": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "slurm.mem_gb": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a number > 0"),
    "slurm.array_parallelism": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "slurm.chunk_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
}


def _check_grid_value(path: Path, key: str, value: Any) -> None:
    ok, fix = GRID_VALUES[key]
    if not ok(value):
        raise BenchError(f"bad value {value!r} for '{key}' in grid {path}: {fix}")


def expand(settings: Settings, spec: SweepSpec) -> list[SweepTask]:
    """All run keys of the grid, every part validated first (nothing runs on a bad spec)."""
    if spec.executor not in ("local", "slurm", "debug"):
        raise BenchError(f"unknown executor '{spec.executor}'; choose local, slurm or debug")
    if spec.workers < 1:
        raise BenchError(f"bad --workers {spec.workers}: must be >= 1")
    for s in spec.seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < SEED_LIMIT:
            raise BenchError(f"bad seed {s!r}: {SEED_HELP}")
    try:
        return _expand_keys(settings, spec)
    except BenchError as exc:
        if spec.source is None:
            raise
        raise BenchError(f"in grid {spec.source}: {exc}") from None


def _expand_keys(settings: Settings, spec: SweepSpec) -> list[SweepTask]:
    from bench.data.features import choose_store
    from bench.train.runner import plan_run

    cohorts = available_cohorts(settings) if [c.lower() for c in spec.cohorts] == ["all"] else [
        resolve_cohort(settings, c) for c in spec.cohorts]
    if spec.splits is not None and spec.splits not in SPLIT_KINDS:
        raise BenchError(f"bad --splits '{spec.splits}': choose one of {', '.join(SPLIT_KINDS)}")
    stores = feature_specs(spec.features)
    keys: list[SweepTask] = []
    seen: set[RunKey] = set()
    for method in spec.methods:
        for given in spec.sets:
            sets = {**given, "splits": spec.splits} if spec.splits not in (None, "fixed") else given
            for cohort in cohorts:
                for i, features in enumerate(stores):
                    # plan_run validates method, cohort, keys and values, folds and device (no store is built)
                    plan = plan_run(settings, method, cohort, folds=spec.folds, epochs=spec.epochs, sets=sets,
                                    device=spec.device, features=features, load_store=False)
                    if not plan.info.uses_pathology and i:
                        break  # a genomics-only method reads no store: one set of runs for all of them
                    if plan.info.uses_pathology and features not in (None, "auto", "synthetic"):
                        choose_store(settings, plan.cohort, features)  # a named store must exist (only read)
                    frozen = tuple(sorted(sets.items()))
                    for seed in spec.seeds:
                        for fold in plan.folds:
                            key = RunKey(plan.info.name, plan.variant, plan.cohort.name, seed, fold, plan.chash)
                            if key in seen:  # two store names for one store (auto and its name)
                                continue
                            seen.add(key)
                            keys.append(SweepTask(key, sets=frozen, epochs=spec.epochs, features=features,
                                                  device=spec.device))
    return keys


def feature_specs(features: str | Sequence[str] | None) -> list[str | None]:
    """The stores a grid runs on: ``None`` (bench.toml's ``run.features``), one store, or each of a list."""
    if features is None:
        return [None]
    items = [features] if isinstance(features, str) else list(features)
    out = list(dict.fromkeys(x.strip() for x in items if x.strip()))
    if not out:
        raise BenchError("bad --features: it names no store; give e.g. --features resnet50,uni_v2")
    return out


def key_status(settings: Settings, key: SweepTask) -> str:
    """complete | running | interrupted (checkpoint left) | pending."""
    from bench.store.predictions import read_manifest

    d = key.key.dir(settings.results_dir)
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
    status: str  # trained | resumed | skipped | busy | failed | interrupted (its worker process died)
    seconds: float = 0.0
    error: str = ""


def _group(keys: Sequence[SweepTask]) -> list[list[SweepTask]]:
    """Keys grouped by (method, sets, cohort, seed, features), in order; one plan (and one cohort load) each."""
    groups: dict[tuple, list[SweepTask]] = {}
    for k in keys:
        groups.setdefault((k.method, k.sets, k.cohort, k.seed, k.epochs, k.features, k.device), []).append(k)
    return list(groups.values())


_RESIDENT: dict[tuple, Any] = {}


def run_keys(keys: Sequence[SweepTask], root: str, report: Callable[[KeyResult], None] | None = None,
             stop_after_epoch: int | None = None) -> list[KeyResult]:
    """Train the given keys (skipping complete or busy ones); the cohort's features are loaded once per cohort."""
    from bench.data.batches import load_bags
    from bench.train.runner import execute, plan_run

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
                    loaded[store_key] = load_bags(plan.store.info, plan.cohort, plan.device,
                                                  settings["run"]["placement"], settings["run"]["memory_share"])
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


def _worker_init(threads: int, device: int | None) -> None:
    import torch

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    torch.set_num_threads(threads)
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device)


def _worker_run(key: SweepTask, root: str) -> KeyResult:
    (result,) = run_keys([key], root)
    return result


#: The error recorded for a key whose worker process died under it.
WORKER_DIED = ("its worker process died (killed, or out of memory); rerun the sweep to resume it from its last "
               "epoch checkpoint")


def chunk_by_row(keys: Sequence[SweepTask]) -> list[list[SweepTask]]:
    """The keys as rows, in the grid's order: one row is one (method, settings, cohort, seed) with all its folds.

    Workers take a whole row at a time, the next row of the grid as they free up, so a grid written
    cheap-first runs cheap-first and a stopped sweep leaves whole rows (never two halves of a grid run
    side by side, which put the expensive end of a grid next to its cheap start).
    """
    rows: dict[tuple, list[SweepTask]] = {}
    for k in keys:
        rows.setdefault((k.method, k.sets, k.cohort, k.seed, k.epochs, k.features, k.device), []).append(k)
    return list(rows.values())


def run_local(keys: Sequence[SweepTask], root: Path, workers: int, on_result: Callable[[KeyResult], None]) -> None:
    """A pool of worker processes on this machine; on a GPU machine ``workers`` slots per device.

    A worker that dies (SIGKILL, the OOM killer) costs only the key it was running, reported as
    ``interrupted``; the other keys go on in a fresh worker.
    """
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    total = workers * max(1, len(devices))
    threads = max(1, (os.cpu_count() or 1) // total)
    chunks = chunk_by_row(keys)
    ctx = mp.get_context("spawn")

    def start(slot: int) -> ProcessPoolExecutor:
        device = devices[slot % len(devices)] if devices else None
        return ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=(threads, device))

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # leaves run_slots, which terminates the workers

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        run_slots(chunks, total, start, functools.partial(_worker_run, root=str(root)),
                  lambda key, result: on_result(result),
                  lambda key: on_result(KeyResult(key.label(), "interrupted", 0.0, WORKER_DIED)))
    finally:
        signal.signal(signal.SIGTERM, previous)


class SlurmChunk:
    """A Slurm array task: run a chunk of keys; on preemption submitit requeues it (the same call),
    which skips completed keys and resumes the interrupted one from its epoch checkpoint."""

    def __init__(self, keys: list[SweepTask], root: str) -> None:
        self.keys, self.root = keys, root

    def __call__(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in run_keys(self.keys, self.root)]

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmChunk(self.keys, self.root))


def run_slurm(keys: Sequence[SweepTask], root: Path, options: dict[str, Any], wait: bool,
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
    interrupted: int = 0
    failures: list[KeyResult] = field(default_factory=list)  # failed and interrupted keys

    def add(self, r: KeyResult) -> None:
        if r.status == "failed":
            self.failed += 1
            self.failures.append(r)
        elif r.status == "interrupted":
            self.interrupted += 1
            self.failures.append(r)
        elif r.status == "skipped":
            self.skipped += 1
        elif r.status == "busy":
            self.busy += 1
        else:
            self.done += 1

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - self.skipped - self.busy - self.interrupted

    def summary(self) -> str:
        """``2 run(s) failed and 1 run(s) interrupted (...)``: what went wrong, for the closing error line."""
        parts = [f"{n} run(s) {what}" for n, what in (
            (self.failed, "failed"), (self.interrupted, "interrupted (a worker process died; rerun to resume them)"))
            if n]
        return " and ".join(parts) or "no run failed"

    def line(self) -> str:
        lost = f" · interrupted {self.interrupted}" if self.interrupted else ""
        return (f"done {self.done} · skipped {self.skipped} · running elsewhere {self.busy} · failed {self.failed}"
                f"{lost} · remaining {self.remaining} (of {self.total})")


def run_sweep(settings: Settings, spec: SweepSpec, log: Callable[[str], None], *, wait: bool = True,
             dry_run: bool = False, measure: Callable[[SweepTask], CostEstimate] | None = None) -> Tally:
    """Expand, check and run a grid (the body of ``bench sweep``); returns the final tally.

    ``measure`` (with ``dry_run``): a measured cost per pending (method, variant, cohort), printed beside the
    estimates from the store (see :func:`cost_report`)."""
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
        if todo:
            log(cost_report(settings, todo, spec.workers, measure))
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


def planned_work(settings: Settings, task: SweepTask) -> tuple[float, str]:
    """The work of one key (:func:`bench.store.costs.run_work`) and the device it would run on.

    Patches per patient come from the feature store the run would read; a default synthetic store not
    built yet is counted as ``bench.toml [synthetic] patches`` per slide, which is what it will hold on average.
    """
    from bench.data.features import choose_store, default_synthetic_path, read_info, store_label
    from bench.store.costs import run_work
    from bench.train.runner import plan_run

    plan = plan_run(settings, task.method, task.cohort, folds=[task.fold], epochs=task.epochs, sets=dict(task.sets),
                    device=task.device, features=task.features, load_store=False)
    cohort = plan.cohort
    ppp = None
    if plan.info.uses_pathology:
        spec = task.features or settings["run"]["features"]
        if store_label(settings, cohort, spec) is None:  # the default synthetic store
            path = default_synthetic_path(settings, cohort.name, cohort.build)
            patches = (read_info(path).n_patches if path.is_file()
                       else settings["synthetic"]["patches"] * cohort.n_slides)
        else:
            patches = choose_store(settings, cohort, spec).info.n_patches
        ppp = patches / cohort.n_patients
    return run_work(plan.config["train"]["epochs"], cohort.n_patients, ppp), plan.device.type


def cost_report(settings: Settings, todo: Sequence[SweepTask], workers: int,
                measure: Callable[[SweepTask], CostEstimate] | None = None) -> str:
    """The estimated cost of the keys still to run, per (method, variant, cohort) and in all.

    Estimates come from the stored runs' measured thread-seconds (:mod:`bench.store.costs`): rough, linear in
    epochs, patients and patches per patient, and as fast or slow as the machine was when those runs were made.
    ``measure`` adds a cost per key measured now (``bench sweep --dry-run --measure N``:
    :func:`bench.tools.perf_epoch.measured_run_cost` on the group's first pending key), a column, its basis
    per group and a total.
    """
    from tabulate import tabulate

    from bench.data.cohort import short_name
    from bench.store.costs import estimate_cost, measured_costs, total_hours

    costs = measured_costs(settings.results_dir)
    groups: dict[tuple[str, str, str], list[SweepTask]] = {}
    for task in todo:
        groups.setdefault((task.method, task.variant, task.cohort), []).append(task)
    table, estimates, measured, measured_bases = [], [], [], []
    for (method, variant, cohort), tasks in groups.items():
        work, device = planned_work(settings, tasks[0])  # the same for every fold: the cohort's patients
        est = estimate_cost(costs, method, variant, cohort, device, work)
        estimates += [est] * len(tasks)
        sums = [est.thread_seconds, est.typical_seconds]
        if measure is not None:
            now = measure(tasks[0])
            measured += [now] * len(tasks)
            measured_bases.append(f"{method} {variant} {short_name(cohort)}: {now.basis}")
            sums.append(now.thread_seconds)
        cells = ["—" if s is None else f"{len(tasks) * s / 3600:.3g}" for s in sums]
        table.append([method, variant, short_name(cohort), len(tasks), *cells, est.basis])
    hours, unknown = total_hours(estimates)
    typical = total_hours(estimates, typical=True)[0]
    headers = ["method", "variant", "cohort", "keys", "CPU-h", "median CPU-h", "basis"]
    if measure is not None:
        headers.insert(6, "measured CPU-h")
    lines = ["estimated cost of the keys still to run (from the stored runs' measured thread-seconds, scaled "
             "linearly by epochs x patients x patches per patient; CPU-h at the fastest reference rate, "
             "median CPU-h at the references' median rate):",
             tabulate(table, headers=headers),
             f"in all ≈ {hours:.3g} thread-hours (≈ {typical:.3g} at the median rates): ≈ "
             f"{hours / max(workers, 1):.3g}–{typical / max(workers, 1):.3g} h of wall time with {workers} "
             "worker(s), one core each"]
    if unknown:
        lines.append(f"{unknown} key(s) have no stored run of their method on their device and are not counted")
    if measure is not None:
        now_hours = total_hours(measured)[0]
        lines += ["measured CPU-h, per (method, variant, cohort):", *measured_bases,
                  f"measured: in all ≈ {now_hours:.3g} thread-hours, ≈ {now_hours / max(workers, 1):.3g} h of wall "
                  f"time with {workers} worker(s)"]
    return "\n".join(lines)


def describe_keys(settings: Settings, keys: Iterable[SweepTask]) -> list[tuple[SweepTask, str]]:
    return [(k, key_status(settings, k)) for k in keys]


def write_failures(settings: Settings, failures: list[KeyResult]) -> Path | None:
    """Record failed keys and their errors next to the store (results/.sweep-failures.json)."""
    if not failures:
        return None
    from bench._core.files import write_json

    path = settings.results_dir / ".sweep-failures.json"
    write_json(path, [asdict(f) for f in failures])
    return path


__all__ = ["SweepSpec", "SweepTask", "Tally", "expand", "load_grid", "run_keys", "run_local", "run_slurm"]
