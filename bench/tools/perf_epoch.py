"""``bench perf --cohort C``: thread-seconds per fold-epoch of each method on a real cohort's fold.

Every method is timed on the same fold of the same cohort (its bundled genomics and the feature store
a run would use), in one process, one torch thread: one training pass in the engine's order
(:func:`bench.train.engine.train_one_epoch`: the method's sampler, accumulation, L1, auxiliary losses)
and one evaluation pass over the validation fold. ``--patients N`` times the first ``N`` training
patients of the epoch's order and the first ``N`` validation patients and scales both to the whole fold
(the line says so). With ``explicit`` each method is also timed with its exact speed-ups switched off
(:func:`bench.api.explicit_computation`), and ``check_epochs`` trains that many epochs both ways
from the same seed and reports how far the stored predictions differ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench._core.config import Settings
from bench._core.errors import BenchError
from bench.data.batches import load_bags
from bench.metrics.concordance import fold_score
from bench.store.costs import CostEstimate, training_evaluations
from bench.tools.perf_floor import FloorCount, ProductFlops, gemm_rate, linear_flops
from bench.train.engine import evaluate, restore, train_fold, train_one_epoch
from bench.train.runner import fold_batches, fold_inputs, plan_run, resolve_device
from bench.train.sweep import SweepTask


@dataclass
class EpochCost:
    """One method's measured cost on the fold (``explicit``: with its exact speed-ups off)."""

    method: str
    explicit: bool
    n_train: int
    n_val: int
    timed_train: int
    timed_val: int
    train_s: float  # thread-seconds of the training pass, scaled to the whole training fold
    eval_s: float  # thread-seconds of the validation pass, scaled to the whole validation fold

    @property
    def epoch_s(self) -> float:
        return self.train_s + self.eval_s


@dataclass
class Equality:
    """Predictions of a ``epochs``-epoch run with the speed-ups on vs off, same seed."""

    method: str
    epochs: int
    identical: bool
    max_abs_diff: float
    cindex_fast: float
    cindex_explicit: float


def _built(explicit: bool) -> contextlib.AbstractContextManager:
    """Models built inside have their exact speed-ups off (``explicit``) or on."""
    from bench.api import explicit_computation

    return explicit_computation() if explicit else contextlib.nullcontext()


@contextlib.contextmanager
def _one_thread():
    """Torch on one thread inside (the unit every thread-second here is counted in); the old count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fold(settings: Settings, method: str, cohort: str, fold: int, patients: int | None, bags_cache: dict,
          sets: Mapping[str, Any] | None = None, features: str | None = None):
    """The run's plan, feature bags (loaded once per store), fold tensors (cut to ``patients``), input
    dimensions and the full fold's (train, val) sizes: the same inputs ``bench run`` builds (with ``sets``
    and ``features`` as ``--set`` and ``--features`` give them)."""
    plan = plan_run(settings, method, cohort, folds=[fold], sets=sets, features=features)
    bags = None
    if plan.store is not None:
        key = plan.store.info.path
        if key not in bags_cache:
            bags_cache[key] = load_bags(plan.store.info, plan.cohort, plan.device)
        bags = bags_cache[key]
    _, tensors, dims = fold_inputs(plan, fold, bags)
    full = (len(tensors.train), len(tensors.val))
    if patients:
        tensors = dataclasses.replace(tensors, train=tensors.train[:patients], val=tensors.val[:patients])
    return plan, bags, tensors, dims, full


def _epoch_setup(settings: Settings, method: str, cohort: str, fold: int, patients: int | None, explicit: bool,
                 bags_cache: dict | None, seed: int, sets: Mapping[str, Any] | None = None,
                 features: str | None = None):
    """The fold's inputs as :func:`_fold` gives them, its batches, the training settings (accumulation capped at
    the timed patients) and a fresh training state built with the speed-ups on or off (``explicit``)."""
    plan, bags, tensors, dims, full = _fold(settings, method, cohort, fold, patients,
                                            {} if bags_cache is None else bags_cache, sets, features)
    cfg = plan.config
    batches = fold_batches(plan, tensors, bags)
    train_cfg = {**cfg["train"], "grad_accum": min(cfg["train"]["grad_accum"], len(tensors.train))}
    with _built(explicit):  # the model keeps the setting it was built with
        state = restore(plan.info, {**cfg, "train": train_cfg}, dims, batches, seed)
    return plan, tensors, batches, train_cfg, state, full


def time_epoch(settings: Settings, method: str, cohort: str, fold: int = 0, *, patients: int | None = None,
               explicit: bool = False, bags_cache: dict | None = None, seed: int = 0,
               sets: Mapping[str, Any] | None = None, features: str | None = None) -> EpochCost:
    """Thread-seconds of one training pass and one validation pass of ``method`` on ``cohort``'s ``fold``.

    Args:
        patients: time only the first ``patients`` of the epoch's training order and of the validation
            fold, and scale to the whole fold (None: the whole fold).
        explicit: switch the method's exact speed-ups off.
        bags_cache: feature stores already loaded, shared between calls.
        sets: config overrides of the run (its variant), as ``--set`` gives them.
        features: the feature store, as ``--features`` names it (None: the run's default).
    """
    plan, tensors, batches, train_cfg, state, (n_train, n_val) = _epoch_setup(
        settings, method, cohort, fold, patients, explicit, bags_cache, seed, sets, features)
    t0 = time.process_time()
    train_one_epoch(state, plan.info, train_cfg, batches, 1)
    train_s = time.process_time() - t0
    t0 = time.process_time()
    evaluate(state.model, batches, tensors.val, plan.config["train"]["batch_size"], 1, "val")
    eval_s = time.process_time() - t0
    timed_train, timed_val = len(tensors.train), len(tensors.val)
    return EpochCost(method, explicit, n_train, n_val, timed_train, timed_val,
                     train_s * n_train / timed_train, eval_s * n_val / timed_val)


def count_epoch(settings: Settings, method: str, cohort: str, fold: int = 0, *, patients: int | None = None,
                explicit: bool = False, bags_cache: dict | None = None, seed: int = 0) -> FloorCount:
    """The matrix-product FLOPs of :func:`time_epoch`'s training and validation passes (``explicit``: with the
    exact speed-ups off), by dtype, and those of the ``nn.Linear`` layers, scaled to the whole fold as the
    times are."""
    plan, tensors, batches, train_cfg, state, (n_train, n_val) = _epoch_setup(
        settings, method, cohort, fold, patients, explicit, bags_cache, seed)
    found = FloorCount(method, explicit)
    passes = ((lambda: train_one_epoch(state, plan.info, train_cfg, batches, 1), n_train / len(tensors.train)),
              (lambda: evaluate(state.model, batches, tensors.val, plan.config["train"]["batch_size"], 1, "val"),
               n_val / len(tensors.val)))
    for run_pass, scale in passes:
        with linear_flops(state.model) as linear, ProductFlops() as counter:
            run_pass()
        for dtype, flops in counter.flops.items():
            name = str(dtype).removeprefix("torch.")
            found.flops[name] = found.flops.get(name, 0.0) + flops * scale
        found.linear_flops += linear[0] * scale
        found.linalg_s += counter.linalg_s * scale
    return found


def measured_run_cost(settings: Settings, task: SweepTask, *, patients: int = 24, bags_cache: dict | None = None,
                      train_evaluations: Sequence[int] = ()) -> CostEstimate:
    """A sweep key's thread-seconds from one epoch timed on its own cohort, fold, variant and feature store.

    One training and one validation pass over the first ``patients`` of each (:func:`time_epoch`, one torch
    thread), scaled to the fold, times the run's epochs, plus its evaluations of the training fold at the
    epochs a protocol can select (each costs the validation pass scaled to the training fold): as many as
    the median of ``train_evaluations`` (the counts of stored runs of the method,
    :func:`bench.store.costs.training_evaluations`), else one per epoch (an upper bound). Model building
    and the cohort's load are not counted.
    """
    with _one_thread():
        cost = time_epoch(settings, task.method, task.cohort, task.fold, patients=patients, bags_cache=bags_cache,
                          sets=dict(task.sets), features=task.features)
    plan = plan_run(settings, task.method, task.cohort, folds=[task.fold], epochs=task.epochs, sets=dict(task.sets),
                    features=task.features, load_store=False)
    epochs = int(plan.config["train"]["epochs"])
    if train_evaluations:
        evals = min(float(statistics.median(train_evaluations)), float(epochs))
        counted = f"{evals:g} training-fold evaluations (median of {len(train_evaluations)} stored runs)"
    else:
        evals = float(epochs)
        counted = f"{epochs} training-fold evaluations (no stored run: one per epoch, an upper bound)"
    train_eval_s = cost.eval_s / max(cost.n_val, 1) * cost.n_train
    seconds = epochs * cost.epoch_s + evals * train_eval_s
    basis = (f"measured: {cost.epoch_s:.3g} thread-s per epoch (fold {task.fold}, {cost.timed_train} of "
             f"{cost.n_train} training and {cost.timed_val} of {cost.n_val} validation patients, scaled) x {epochs} "
             f"+ {counted}")
    return CostEstimate(seconds, basis, seconds)


def sweep_measurer(settings: Settings, patients: int) -> Callable[[SweepTask], CostEstimate]:
    """What ``bench sweep --dry-run --measure N`` times each pending key with: :func:`measured_run_cost` on
    ``patients`` patients, feature stores loaded once and each method's training-fold evaluation counts read
    from the store once."""
    if patients < 1:
        raise BenchError(f"--measure {patients}: give a number of patients >= 1 (0 turns it off)")
    bags: dict = {}
    evaluations: dict[str, list[int]] = {}

    def measure(task: SweepTask) -> CostEstimate:
        if task.method not in evaluations:
            evaluations[task.method] = training_evaluations(settings.results_dir, task.method)
        return measured_run_cost(settings, task, patients=patients, bags_cache=bags,
                                 train_evaluations=evaluations[task.method])

    return measure


def check_equal(settings: Settings, method: str, cohort: str, fold: int = 0, *, epochs: int = 2,
                patients: int | None = None, bags_cache: dict | None = None, seed: int = 0) -> Equality:
    """Train ``epochs`` epochs with the speed-ups on and off from the same seed; compare the predictions.

    ``patients``: train and validate on the first ``patients`` training and validation patients only.
    """
    outs = []
    for explicit in (False, True):
        plan, bags, tensors, dims, _ = _fold(settings, method, cohort, fold, patients,
                                             {} if bags_cache is None else bags_cache)
        cfg = {**plan.config, "train": {**plan.config["train"], "epochs": epochs,
                                         "grad_accum": min(plan.config["train"]["grad_accum"], len(tensors.train))}}
        batches = fold_batches(plan, tensors, bags)
        with _built(explicit):  # the model is built inside train_fold
            outs.append(train_fold(plan.info, cfg, dims, batches, seed).predictions)
    fast, slow = outs
    cols = [c for c in fast.columns if c == "risk" or c.startswith("surv_")]
    diff = float(np.max(np.abs(fast[cols].to_numpy() - slow[cols].to_numpy())))
    return Equality(method, epochs, bool(fast[cols].equals(slow[cols])), diff, fold_score(fast, "last")[1],
                    fold_score(slow, "last")[1])


def run_epoch_perf(settings: Settings, methods: list[str], cohort: str, fold: int = 0, *,
                   patients: int | None = None, explicit: bool = False, check_epochs: int = 0,
                   reference: str = "attmil", repeats: int = 2, floor: bool = False,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time each method (and ``reference``) per fold-epoch; optionally with speed-ups off and an equality check.

    Each mode is timed ``repeats`` times (explicit and fast alternating) and its fastest pass kept.
    With ``floor``, each method's matrix-product FLOPs are also counted (:func:`count_epoch`, an untimed
    pass) and divided by this CPU's best one-thread GEMM rates, measured first (:mod:`bench.tools.perf_floor`).

    Returns ``{"costs": [...], "equality": [...], "floors": [...], "gemm_rates": {...}, "threads": 1, ...}``
    (JSON-ready).
    """
    cache: dict = {}
    costs: list[EpochCost] = []
    equal: list[Equality] = []
    floors: list[dict[str, Any]] = []
    rates: dict[str, float] = {}
    with _one_thread():
        if floor:
            device = resolve_device(settings["run"]["device"])  # where the fold's epochs run
            rates = {"float32": gemm_rate(torch.float32, device=device),
                     "float64": gemm_rate(torch.float64, device=device)}
            log(f"best one-thread GEMM rate here: float32 {rates['float32'] / 1e9:.1f} GFLOP/s, "
                f"float64 {rates['float64'] / 1e9:.1f} GFLOP/s")
        names = list(dict.fromkeys([reference, *methods]))
        for name in names:
            modes = (True, False) * repeats if explicit and name != reference else (False,) * repeats
            timed: dict[bool, EpochCost] = {}
            for mode in modes:  # alternating, the fastest of each mode: load and warm-up hit both alike
                cost = time_epoch(settings, name, cohort, fold, patients=patients, explicit=mode, bags_cache=cache)
                if mode not in timed or cost.epoch_s < timed[mode].epoch_s:
                    timed[mode] = cost
            for mode in sorted(timed):
                cost = timed[mode]
                costs.append(cost)
                scaled = f" (timed on {cost.timed_train} train / {cost.timed_val} val patients, scaled)" \
                    if cost.timed_train < cost.n_train else ""
                log(f"{name}{' [explicit]' if mode else ''}: {cost.epoch_s:.1f} thread-s per fold-epoch "
                    f"(train {cost.train_s:.1f}, val {cost.eval_s:.1f}){scaled}")
            if check_epochs and name != reference:
                eq = check_equal(settings, name, cohort, fold, epochs=check_epochs, patients=patients,
                                 bags_cache=cache)
                equal.append(eq)
                log(f"{name}: {check_epochs}-epoch predictions {'identical' if eq.identical else 'differ'} "
                    f"(max |diff| {eq.max_abs_diff:.2e}; val C-index {eq.cindex_fast:.4f} vs {eq.cindex_explicit:.4f})")
            for mode in sorted(timed) if floor else ():
                count = count_epoch(settings, name, cohort, fold, patients=patients, explicit=mode, bags_cache=cache)
                row = {"method": name, "explicit": mode, "flops": count.flops, "linear_flops": count.linear_flops,
                       "floor_s": count.floor_s(rates), "linear_floor_s": count.linear_floor_s(rates),
                       "linalg_s": count.linalg_s}
                floors.append(row)
                split = ", ".join(f"{d} {f / 1e9:.0f}" for d, f in sorted(count.flops.items()))
                log(f"{name}{' [explicit]' if mode else ''}: {sum(count.flops.values()) / 1e9:.0f} GFLOP of products "
                    f"per fold-epoch ({split}; nn.Linear {count.linear_flops / 1e9:.0f}): at least "
                    f"{row['floor_s']:.1f} thread-s here (nn.Linear alone {row['linear_floor_s']:.1f}); "
                    f"{count.linalg_s:.1f} s inside matrix decompositions")
    ref = next(c.epoch_s for c in costs if c.method == reference and not c.explicit)
    rows = []
    for c in costs:
        row = {**dataclasses.asdict(c), "epoch_s": c.epoch_s, "vs_reference": c.epoch_s / ref}
        rows.append(row)
    return {"cohort": cohort, "fold": fold, "threads": 1, "reference": reference, "patients": patients,
            "repeats": repeats, "costs": rows, "equality": [dataclasses.asdict(e) for e in equal],
            "gemm_rates": rates, "floors": floors}


def markdown_table(result: dict[str, Any]) -> str:
    """method | thread-s per fold-epoch (explicit, fast) | speed-up | ratio to the reference, and with floors:
    the product floor of the fast computation, the ``nn.Linear`` floor and the largest speed-up over the
    explicit time the latter leaves (the explicit computation's floors are in the JSON)."""
    by: dict[str, dict[str, float]] = {}
    for r in result["costs"]:
        by.setdefault(r["method"], {})["explicit" if r["explicit"] else "fast"] = r["epoch_s"]
    floors = {f["method"]: f for f in result.get("floors", []) if not f.get("explicit")}
    ref = by[result["reference"]]["fast"]
    head = "| method | explicit (thread-s) | with the speed-ups | × | ratio to " + result["reference"] + " |"
    rule = "|---|---|---|---|---|"
    if floors:
        head += " product floor (thread-s) | + decompositions | nn.Linear floor | most × over explicit |"
        rule += "---|---|---|---|"
    lines = [head, rule]
    for name, v in by.items():
        slow = v.get("explicit")
        line = (f"| {name} | {slow:.1f} | {v['fast']:.1f} | {slow / v['fast']:.2f} | {v['fast'] / ref:.1f} |"
                if slow else f"| {name} | – | {v['fast']:.1f} | – | {v['fast'] / ref:.1f} |")
        if floors:
            f = floors.get(name)
            most = f"{(slow or v['fast']) / f['linear_floor_s']:.1f}" if f and f["linear_floor_s"] > 0 else "–"
            line += (f" {f['floor_s']:.1f} | {f['floor_s'] + f['linalg_s']:.1f} | {f['linear_floor_s']:.1f} | {most} |"
                     if f else " – | – | – | – |")
        lines.append(line)
    return "\n".join(lines)
