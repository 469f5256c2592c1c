"""``bench run``: plan the runs of one method on one cohort, then train and store each fold.

A run key is (method, config hash, cohort, fold, seed); its variant names the config for humans.
The cohort and its features are loaded once for all folds. A fold whose complete manifest matches
the key and the data is skipped; a fold with a checkpoint resumes from its last completed epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench._core.config import RUN_KEYS, Settings, config_hash, format_value, resolve_run_config, variant_name
from bench._core.errors import BenchError
from bench._core.files import sha256_file, write_json
from bench.api.model import InputDims, SurvivalModel
from bench.api.registry import MethodInfo, get_method
from bench.data.audit import check_site_folds
from bench.data.batches import Batches, DiskBags, FoldTensors, ResidentBags, input_dims, load_bags
from bench.data.cohort import GROUP_NAMES, Cohort, Fold, load_cohort, resolve_cohort, short_name
from bench.data.features import StoreChoice, choose_store, store_label
from bench.data.inner_splits import inner_path, read_inner
from bench.metrics.concordance import fold_score, mean_std
from bench.store.keys import PLAN_ORDER, RunKey, run_command
from bench.store.locks import RunLock, remove_partial_files
from bench.store.manifest import build_manifest, data_hash, data_identity
from bench.store.predictions import (
    CHECKPOINT,
    MANIFEST,
    RUN_SPEC,
    predictions_path,
    read_manifest,
    read_predictions,
    write_run,
)
from bench.train.engine import Progress, check_accumulation, train_fold
from bench.train.workers import die_with_parent, run_slots


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise BenchError(f"bad device '{name}'; choose auto, cpu or cuda")
    return torch.device(name)


@dataclass
class RunPlan:
    """Everything resolved before training starts."""

    info: MethodInfo
    config: dict[str, Any]
    overrides: dict[str, Any]
    variant: str
    chash: str
    cohort: Cohort
    folds: list[int]
    seed: int
    device: torch.device
    results: Path
    settings: Settings
    store: StoreChoice | None = None

    def key(self, fold: int) -> RunKey:
        """The store key of one fold of this plan."""
        return RunKey(self.info.name, self.variant, self.cohort.name, self.seed, fold, self.chash)

    def dir(self, fold: int) -> Path:
        return self.key(fold).dir(self.results)

    def data_hash(self, fold: int) -> str:
        return data_hash(data_identity(self.cohort, fold, self.store.info if self.store else None,
                                       self.inner_sha256(fold)))

    @property
    def inner(self) -> bool:
        """Whether the epoch is selected on an inner split (``selection=inner``)."""
        return self.config["train"].get("selection", "outer") == "inner"

    def inner_patients(self, fold: int) -> list[str] | None:
        """The inner split's patients of ``fold`` under ``selection=inner`` (checked file), else None."""
        if not self.inner:
            return None
        split = self.cohort.split(fold)
        return read_inner(inner_path(split.path.parent, fold), [self.cohort.case_ids[i] for i in split.train])[1]

    def inner_sha256(self, fold: int) -> str | None:
        if not self.inner:
            return None
        path = inner_path(self.cohort.split(fold).path.parent, fold)
        if not path.is_file():
            site = " --splits site" if self.cohort.split_kind == "site" else ""
            raise BenchError(f"selection=inner needs {path}; draw the inner splits with "
                             f"`bench data inner-splits --cohort {short_name(self.cohort.name)}{site}`")
        return sha256_file(path)

    def command(self, folds: bool | Sequence[int] = False) -> str:
        """The ``bench run`` command that (re)creates this plan (``folds``: True for the plan's folds, or a list)."""
        sets = [(k.split(".", 1)[1], format_value(v)) for k, v in sorted(self.overrides.items())]
        seed = self.seed if self.seed != self.settings["run"]["seed"] else None
        chosen = self.folds if folds is True else (list(folds) if folds else None)
        return run_command(self.info.name, self.cohort.name, sets=sets, seed=seed, folds=chosen, order=PLAN_ORDER)


def plan_run(
    settings: Settings,
    method: str,
    cohort: str,
    *,
    folds: list[int] | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    device: str | None = None,
    sets: Mapping[str, Any] | None = None,
    variant: str | None = None,
    features: str | None = None,
    results: Path | None = None,
    load_store: bool = True,
    splits: str | None = None,
) -> RunPlan:
    """Resolve method, cohort, config, folds, seed, device and feature store (no training).

    ``splits``: ``fixed`` or ``site`` (as ``--set splits=site``). ``features`` (or ``--set features=NAME``): the
    feature store; the site splits and a store other than the default synthetic one are part of the variant
    (``splits=site``, ``features=NAME``) and of the config hash, so those runs never share a key with the others.
    """
    info = get_method(method)
    name = resolve_cohort(settings, cohort)
    all_sets: dict[str, Any] = {}
    if variant:
        if variant not in info.variants:
            valid = ", ".join(info.variants) or "none"
            raise BenchError(f"unknown variant '{variant}' of {info.name}; its named variants: {valid}")
        all_sets.update(info.variants[variant])
    all_sets.update(sets or {})
    for k in ("features", "data.features"):  # the store is chosen below, not a config key
        if k in all_sets:
            given = all_sets.pop(k)
            features = features or str(given)
    if splits is not None:
        all_sets["data.splits"] = splits
    if epochs is not None:
        all_sets["train.epochs"] = epochs
    config, overrides = resolve_run_config(settings, info, name, all_sets)
    kind = config["data"]["splits"]
    if kind != "fixed":  # also when bench.toml makes it the default: a site-split run is never variant `default`
        overrides["data.splits"] = kind
    co = load_cohort(settings, name, config["data"]["genomics"], splits=kind)
    if kind == "site":
        check_site_folds(co)
    if info.genomics == "groups":
        empty = [g for g, n in zip(GROUP_NAMES, co.group_sizes, strict=True) if n == 0]
        if empty:
            raise BenchError(f"{info.name} needs the six signature groups, but group(s) {', '.join(empty)} have no "
                             f"columns in the {co.build} build of {short_name(name)}")
    n_folds = len(co.splits)
    fold_list = list(folds) if folds is not None else list(settings["run"]["folds"])
    for f in fold_list:
        if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < n_folds:
            where = "" if folds is not None else f" (run.folds in {settings.root / 'bench.toml'})"
            raise BenchError(f"fold {f!r} out of range for {short_name(name)}{where}: folds 0..{n_folds - 1}")
        check_accumulation(config["train"], len(co.split(f).train))  # before anything is written
    if len(set(fold_list)) != len(fold_list):
        raise BenchError(f"folds {','.join(map(str, fold_list))} name a fold twice; name each fold once")
    if seed is not None:
        seed = RUN_KEYS["seed"].validate("--seed", seed)
    spec = features or settings["run"]["features"]
    label = store_label(settings, co, spec) if info.uses_pathology else None
    if label is not None:  # the encoder axis: a run on another store is another variant
        config["data"]["features"] = label
        overrides["data.features"] = label
    plan = RunPlan(
        info=info,
        config=config,
        overrides=overrides,
        variant=_named_variant(settings, info, name, overrides) or variant_name(overrides),
        chash=config_hash(config),
        cohort=co,
        folds=fold_list,
        seed=settings["run"]["seed"] if seed is None else seed,
        device=resolve_device(device or settings["run"]["device"]),
        results=Path(results) if results else settings.results_dir,
        settings=settings,
    )
    if plan.inner:
        for f in fold_list:  # a missing or inconsistent inner split stops the run before anything is written
            plan.inner_sha256(f)
            plan.inner_patients(f)
    if info.uses_pathology and load_store:
        plan.store = choose_store(settings, co, spec)
    return plan


def _named_variant(settings: Settings, info: MethodInfo, cohort: str, overrides: Mapping[str, Any]) -> str | None:
    """The method's named variant whose overrides are exactly these (so `--set` and `--variant` agree).

    Overrides that extend a named variant are named after it: ``ccl-protocol`` plus ``selection=inner`` is
    ``ccl-protocol,selection=inner`` (the largest named variant contained wins; None when none is contained).
    """
    if not overrides:
        return None
    best: tuple[int, str, dict[str, Any]] | None = None
    for name, sets in info.variants.items():
        named = resolve_run_config(settings, info, cohort, sets)[1]
        if named == dict(overrides):
            return name
        contained = named and all(k in overrides and overrides[k] == v for k, v in named.items())
        if contained and (best is None or len(named) > best[0]):
            best = (len(named), name, named)
    if best is None:
        return None
    rest = variant_name({k: v for k, v in overrides.items() if k not in best[2]})
    return f"{best[1]},{rest}" if not rest.startswith("cfg-") else None


@dataclass
class FoldOutcome:
    fold: int
    status: str  # trained | resumed | skipped | busy (another process holds the run's lock) | interrupted (worker died)
    path: Path
    seconds: float = 0.0


def fold_state(plan: RunPlan, fold: int) -> str:
    """``complete`` (key and data match), ``stale`` (stored under other config/data), or ``missing``."""
    manifest = read_manifest(plan.dir(fold))
    if manifest is None or manifest.get("status") != "complete":
        return "missing"
    same_key = manifest.get("key", {}).get("config_hash") == plan.chash
    same_data = manifest.get("data", {}).get("data_hash") == plan.data_hash(fold)
    return "complete" if same_key and same_data else "stale"


def execute(
    plan: RunPlan,
    *,
    force: bool = False,
    progress: Callable[[int], Progress] | None = None,
    on_fold: Callable[[FoldOutcome], None] | None = None,
    bags: ResidentBags | DiskBags | None = None,
    stop_after_epoch: int | None = None,
    workers: int = 1,
) -> list[FoldOutcome]:
    """Train and store every fold of ``plan`` that is not already complete.

    ``workers > 1`` trains that many folds at once in worker processes that share one copy of the
    resident features (shared memory); each worker uses ``cpu_count // workers`` torch threads.
    """
    _determinism(plan.device)
    outcomes: list[FoldOutcome] = []
    todo = []
    for fold in plan.folds:
        state = fold_state(plan, fold)
        if state == "complete" and not force:
            out = FoldOutcome(fold, "skipped", plan.dir(fold))
            outcomes.append(out)
            if on_fold:
                on_fold(out)
            continue
        if state == "stale" and not force:
            stored = read_manifest(plan.dir(fold)) or {}
            raise BenchError(
                f"{plan.dir(fold)} holds a run made with another config or other data (config "
                f"{stored.get('key', {}).get('config_hash')} vs {plan.chash}, data "
                f"{stored.get('data', {}).get('data_hash')} vs {plan.data_hash(fold)}); pass --force to replace it "
                f"or --results DIR to keep both")
        todo.append(fold)
    if not todo:
        return outcomes
    if plan.info.uses_pathology and bags is None:
        assert plan.store is not None
        run = plan.settings["run"]
        bags = load_bags(plan.store.info, plan.cohort, plan.device, run["placement"], run["memory_share"])
    if workers > 1 and len(todo) > 1:

        def emit(out: FoldOutcome) -> None:
            outcomes.append(out)
            if on_fold:
                on_fold(out)

        _parallel_folds(plan, todo, bags, force, stop_after_epoch, workers, emit)
        return outcomes
    for fold in todo:
        out = locked_fold(plan, fold, bags, force=force, progress=progress(fold) if progress else None,
                          stop_after_epoch=stop_after_epoch)
        outcomes.append(out)
        if on_fold:
            on_fold(out)
    return outcomes


def locked_fold(plan: RunPlan, fold: int, bags: ResidentBags | DiskBags | None, *, force: bool = False,
                progress: Progress | None = None, stop_after_epoch: int | None = None) -> FoldOutcome:
    """Train one fold while holding its run lock (``busy`` if another process holds it)."""
    with RunLock(plan.dir(fold)) as lock:
        if not lock.acquire():
            return FoldOutcome(fold, "busy", plan.dir(fold))
        if not force and fold_state(plan, fold) == "complete":  # finished by another process meanwhile
            return FoldOutcome(fold, "skipped", plan.dir(fold))
        remove_partial_files(plan.dir(fold))
        return run_one_fold(plan, fold, bags, force=force, progress=progress, stop_after_epoch=stop_after_epoch)


_SHARED: dict[str, Any] = {}


def _fold_worker_init(bags: ResidentBags | DiskBags | None, threads: int) -> None:
    import signal

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    torch.set_num_threads(threads)
    _SHARED["bags"] = bags


def _fold_worker(fold: int, plan: RunPlan, force: bool, stop_after_epoch: int | None) -> FoldOutcome:
    return locked_fold(plan, fold, _SHARED["bags"], force=force, stop_after_epoch=stop_after_epoch)


def _parallel_folds(plan: RunPlan, folds: list[int], bags: ResidentBags | DiskBags | None, force: bool,
                    stop_after_epoch: int | None, workers: int, emit: Callable[[FoldOutcome], None]) -> None:
    """Folds in ``workers`` processes; the resident features are moved to shared memory once, not copied.

    A fold whose worker process dies (SIGKILL, the OOM killer) is reported ``interrupted`` (it resumes
    from its checkpoint on the next run); the other folds go on in a fresh worker.
    """
    import functools
    from concurrent.futures import ProcessPoolExecutor

    import torch.multiprocessing as tmp

    if isinstance(bags, ResidentBags) and bags.features.device.type == "cpu":  # DiskBags: each worker reads the file
        bags.features.share_memory_()
    n = min(workers, len(folds))
    threads = max(1, (os.cpu_count() or 1) // n)
    ctx = tmp.get_context("spawn")

    def start(slot: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=ctx, initializer=_fold_worker_init, initargs=(bags, threads))

    run_slots([[f] for f in folds], n, start,
              functools.partial(_fold_worker, plan=plan, force=force, stop_after_epoch=stop_after_epoch),
              lambda fold, out: emit(out), lambda fold: emit(FoldOutcome(fold, "interrupted", plan.dir(fold))))


def fold_inputs(plan: RunPlan, fold: int, bags: ResidentBags | DiskBags | None) -> tuple[Fold, FoldTensors, InputDims]:
    """A fold's split (with its inner patients under ``selection=inner``), its tensors on the plan's device
    and the model's input dimensions (fitted on its training patients)."""
    cfg = plan.config
    fold_obj = plan.cohort.fold(fold, bins=cfg["data"]["bins"], n_bins=cfg["data"]["n_bins"],
                                inner=plan.inner_patients(fold))
    tensors = FoldTensors.build(plan.cohort, fold_obj, plan.device, bags.available if bags is not None else None)
    dims = input_dims(plan.cohort, cfg["data"]["n_bins"], bags.dim if bags is not None else None, tensors.train)
    return fold_obj, tensors, dims


def fold_batches(plan: RunPlan, tensors: FoldTensors, bags: ResidentBags | DiskBags | None) -> Batches:
    """The batch builder over ``tensors`` with the plan's patch caps."""
    data = plan.config["data"]
    return Batches(plan.cohort, tensors, bags, patch_cap=data["patch_cap"], patch_cap_eval=data["patch_cap_eval"])


def run_one_fold(plan: RunPlan, fold: int, bags: ResidentBags | DiskBags | None, *, force: bool = False,
                 progress: Progress | None = None, stop_after_epoch: int | None = None) -> FoldOutcome:
    """Train one fold and write its predictions and manifest."""
    cfg = plan.config
    d = plan.dir(fold)
    fold_obj, tensors, dims = fold_inputs(plan, fold, bags)
    if len(tensors.train) == 0 or len(tensors.val) == 0:
        raise BenchError(f"fold {fold} of {plan.cohort.name} has no usable train or val patients "
                         f"({len(tensors.excluded)} excluded for missing features)")
    batches = fold_batches(plan, tensors, bags)
    ckpt = d / CHECKPOINT
    if force:
        ckpt.unlink(missing_ok=True)
    _check_checkpoint(ckpt, plan, fold)
    write_json(d / RUN_SPEC, run_spec(plan, fold))
    result = train_fold(plan.info, cfg, dims, batches, plan.seed, progress=progress, checkpoint=ckpt,
                        stop_after_epoch=stop_after_epoch)
    manifest = build_manifest(
        key=plan.key(fold).record(), method=plan.info, config=cfg, overrides=plan.overrides, cohort=plan.cohort,
        fold=fold_obj, store=plan.store.info if plan.store else None, excluded=tensors.excluded,
        n_train=len(tensors.train), n_val=len(tensors.val), device=plan.device, root=plan.settings.root,
        epochs=result.epochs, placement=bags.placement if bags is not None else None, seconds=result.seconds,
        memory_share=bags.memory_share if bags is not None else None,
        resumed_from=result.resumed_from, inner_sha256=plan.inner_sha256(fold),
        inner_patients=[plan.cohort.case_ids[i] for i in tensors.inner] if plan.inner else None,
    )
    if stats := result.model.run_stats():
        manifest["model_stats"] = stats
    write_run(d, result.predictions, manifest)
    ckpt.unlink(missing_ok=True)
    (d / RUN_SPEC).unlink(missing_ok=True)
    return FoldOutcome(fold, "resumed" if result.resumed_from else "trained", d, result.seconds)


def run_spec(plan: RunPlan, fold: int) -> dict[str, Any]:
    """What an unfinished run directory records about itself (for resuming and `bench results verify`)."""
    return {**plan.key(fold).record(), "data_hash": plan.data_hash(fold), "overrides": plan.overrides,
            "command": plan.command([fold])}


def _check_checkpoint(ckpt: Path, plan: RunPlan, fold: int) -> None:
    """Drop a checkpoint left by a run with another config or other data (it cannot be resumed)."""
    if not ckpt.exists():
        return
    import json

    try:
        stored = json.loads((ckpt.parent / RUN_SPEC).read_text())
    except (OSError, ValueError):
        stored = {}
    if stored.get("config_hash") != plan.chash or stored.get("data_hash") != plan.data_hash(fold):
        ckpt.unlink(missing_ok=True)


def _determinism(device: torch.device) -> None:
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@dataclass
class FoldSummary:
    fold: int
    best_epoch: int
    best_cindex: float
    last_epoch: int
    last_cindex: float
    inner_epoch: int | None = None  # runs with selection=inner only
    inner_cindex: float | None = None


@dataclass
class RunSummary:
    folds: list[FoldSummary] = field(default_factory=list)

    def protocol(self, name: str) -> tuple[float, float]:
        attr = {"best-val": "best_cindex", "last": "last_cindex", "inner": "inner_cindex"}[name]
        vals = [getattr(f, attr) for f in self.folds]
        return mean_std(vals)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([f.__dict__ for f in self.folds])


def summarize(plan: RunPlan) -> RunSummary:
    """Per-fold C-index under both protocols, read back from the prediction store."""
    out = RunSummary()
    for fold in plan.folds:
        d = plan.dir(fold)
        if read_manifest(d) is None or not (d / MANIFEST).is_file():
            continue
        preds = read_predictions(predictions_path(d, read_manifest(d)))
        be, bc = fold_score(preds, "best-val", plan.info.tie)
        le, lc = fold_score(preds, "last")
        ie, ic = fold_score(preds, "inner", plan.info.tie) if (preds["split"] == "inner").any() else (None, None)
        out.folds.append(FoldSummary(fold, be, bc, le, lc, ie, ic))
    return out


def create_model(name: str, cohort: str, *, settings: Settings | None = None, sets: Mapping[str, Any] | None = None,
                 variant: str | None = None, path_dim: int | None = None, fold: int | None = None) -> SurvivalModel:
    """Method ``name``'s model, built for ``cohort``'s inputs with the config a run would use (the method's
    defaults, its cohort defaults, then ``variant`` and ``sets``), in train mode, on the CPU.

    ``path_dim``: the patch feature size of a pathology or multimodal method (default: the cohort's real
    feature store if it has exactly one, else the synthetic store's dimension from bench.toml; nothing is
    created). ``fold``: give the model that fold's training labels (as ``bench run`` does; CCL fits its
    patient groups on them); by default it gets none.
    """
    from bench._core.config import load_settings
    from bench.data.features import real_stores
    from bench.data.features.store import read_info

    settings = settings or load_settings()
    plan = plan_run(settings, name, cohort, sets=sets, variant=variant, load_store=False, features="synthetic",
                    folds=[fold] if fold is not None else None)
    if path_dim is None and plan.info.uses_pathology:
        reals = real_stores(settings, plan.cohort.name)
        path_dim = read_info(reals[0]).dim if len(reals) == 1 else settings["synthetic"]["dim"]
    train = plan.cohort.split(fold).train if fold is not None else None
    dims = input_dims(plan.cohort, plan.config["data"]["n_bins"], path_dim if plan.info.uses_pathology else None,
                      train)
    return plan.info.build(dims, plan.config["model"])


__all__ = ["FoldOutcome", "RunPlan", "RunSummary", "create_model", "execute", "plan_run", "summarize"]
