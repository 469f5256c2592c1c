"""The method-agnostic training engine: one fold of one method, epoch by epoch.

Every method trains the same way: seed and build the model (:func:`restore`, which resumes from a
checkpoint when there is one), then for each epoch a pass over the training fold
(:func:`train_one_epoch`: optimiser, learning rate, weight decay, gradient accumulation and sampler
from the resolved config; NLL plus the method's auxiliary losses) and an evaluation of the
validation fold (:func:`evaluate`; under ``selection=inner`` also the inner split held out of the
training fold); the training fold is evaluated after every epoch a fold-score protocol can select
(:func:`selectable`: a validation or inner C-index at least the best so far, and the last epoch), so a
training-derived risk threshold always exists at the reported epoch. Those extra passes leave no trace
on training (:func:`evaluate_quietly`). :func:`train_fold` runs them in that order. The result is a
predictions table in the prediction-store format. An optional checkpoint after every epoch makes a
killed run resumable with the same final predictions.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench._core.errors import BenchError
from bench.api.losses import nll_loss, risk_from_survival, survival_from_hazards
from bench.api.model import InputDims, SurvivalModel
from bench.api.registry import MethodInfo
from bench.data.batches import Batches, epoch_order
from bench.metrics.concordance import cindex, epoch_cindex
from bench.store.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    read_checkpoint,
    rng_state,
    set_rng_state,
    write_checkpoint,
)


@dataclass
class EpochLog:
    """What one epoch did: mean training losses, validation C-index, seconds."""

    epoch: int
    train_loss: float
    aux: dict[str, float]
    val_cindex: float
    seconds: float


@dataclass
class FoldResult:
    predictions: pd.DataFrame
    epochs: list[EpochLog]
    seconds: float
    model: SurvivalModel
    resumed_from: int = 0


@dataclass
class Progress:
    """Callbacks the runner uses to draw progress bars (all optional)."""

    on_step: Callable[[int, int, float], None] | None = None  # (step, steps, loss)
    on_epoch: Callable[[EpochLog], None] | None = None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params: Any, train: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimiser named by the config (SGD with momentum, Adam, AdamW or RAdam).

    SGD, Adam and AdamW use torch's fused kernels (same update rule, one kernel for all tensors
    instead of a Python loop; about 4x faster for Adam at batch size 1 on a CPU).
    """
    name, lr, wd = train["optimizer"], train["lr"], train["weight_decay"]
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=train["momentum"], weight_decay=wd, fused=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=True)
    return torch.optim.RAdam(params, lr=lr, weight_decay=wd)


def make_scheduler(opt: torch.optim.Optimizer, train: Mapping[str, Any], steps_per_epoch: int):
    """Per-step cosine schedule with linear warm-up, or None."""
    if train["scheduler"] == "none":
        return None
    total = max(1, train["epochs"] * steps_per_epoch)
    warm = min(total - 1, train["warmup_epochs"] * steps_per_epoch)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total - warm))
    if warm <= 0:
        return cosine
    ramp = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-3, total_iters=warm)
    return torch.optim.lr_scheduler.SequentialLR(opt, [ramp, cosine], milestones=[warm])


@torch.no_grad()
def predict(model: SurvivalModel, batches: Batches, indices: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Hazards, survival and risk for ``indices`` with the model in eval mode."""
    model.eval()
    hazards = []
    for batch in batches.iterate(indices, batch_size, train=False):
        hazards.append(torch.sigmoid(model(batch).logits.float()))
    h = torch.cat(hazards) if hazards else torch.zeros(0, 1)
    s = survival_from_hazards(h)
    return {"hazards": h.cpu().numpy(), "surv": s.cpu().numpy(), "risk": risk_from_survival(s).cpu().numpy()}


def prediction_frame(batches: Batches, indices: np.ndarray, out: Mapping[str, np.ndarray], epoch: int,
                     split: str) -> pd.DataFrame:
    """Rows of the prediction store for one evaluation pass."""
    t = batches.t
    idx = torch.as_tensor(indices, dtype=torch.long, device=t.bins.device)
    df = pd.DataFrame({
        "case_id": [batches.case_ids[i] for i in indices],
        "epoch": epoch,
        "split": split,
        "survival_months": t.time.index_select(0, idx).cpu().numpy().astype(np.float64),
        "censorship": t.censorship.index_select(0, idx).cpu().numpy().astype(np.int64),
        "bin": t.bins.index_select(0, idx).cpu().numpy(),
        "risk": out["risk"].astype(np.float64),
    })
    for k in range(out["hazards"].shape[1]):
        df[f"hazard_{k}"] = out["hazards"][:, k].astype(np.float64)
    for k in range(out["surv"].shape[1]):
        df[f"surv_{k}"] = out["surv"][:, k].astype(np.float64)
    return df


def l1_penalty(model: torch.nn.Module) -> torch.Tensor:
    """Sum of absolute values of all parameters (MCAT's L1 regulariser)."""
    return sum(p.abs().sum() for p in model.parameters())  # type: ignore[return-value]


def backward_with_l1(model: torch.nn.Module, loss: torch.Tensor, l1: float) -> None:
    """``(loss + l1 * l1_penalty(model)).backward()`` without putting the penalty in the graph.

    The penalty's gradient is ``l1 * sign(p)``, exactly (a sign times a float); it is added to each
    parameter's loss gradient and the sum accumulated into ``p.grad`` as autograd does (the loss and
    penalty contributions of one backward summed first, then added to the stored gradient), so the
    gradients are bit-identical to the graph version for models that use each parameter once per
    forward (SNN, the one method with L1 on by default; tested for every built-in method), with a third
    of an SNN step's work gone (``abs``/``sum`` forward, ``sgn``/``mul`` backward per parameter). Where a
    parameter is used several times (DTFD, M3IF, SurvPath) autograd's summation order differs and the
    last bit may too.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    signs = torch._foreach_mul(torch._foreach_sign(params), l1)
    with torch.no_grad():
        for p, g, s in zip(params, grads, signs, strict=True):
            total = s if g is None else g + s
            if p.grad is None:
                p.grad = total
            else:
                p.grad.add_(total)


@dataclass
class TrainingState:
    """What changes while a fold trains: the model, its optimiser and schedule, the generator of the
    epochs' patient order, and the prediction rows and epoch logs recorded so far."""

    model: SurvivalModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    order_gen: torch.Generator
    frames: list[pd.DataFrame] = field(default_factory=list)
    logs: list[EpochLog] = field(default_factory=list)
    resumed_from: int = 0  # epochs restored from a checkpoint (0: a fresh start)


def restore(info: MethodInfo, config: Mapping[str, Any], dims: InputDims, batches: Batches, seed: int,
            checkpoint: Path | None = None) -> TrainingState:
    """The state a fold starts from: seeded and freshly built, then resumed from ``checkpoint`` if it exists.

    The generator of ``batches`` (patch sampling) is seeded with ``seed + 1`` if it has none. A checkpoint
    that cannot be loaded safely, is past the run's last epoch or does not fit this model and optimiser is
    reported on stderr and deleted; the fold then starts from epoch 1 with every generator as if it had
    not been there.
    """
    train_cfg = config["train"]
    if batches.generator is None:
        batches.generator = torch.Generator().manual_seed(seed + 1)
    bs, accum = train_cfg["batch_size"], train_cfg["grad_accum"]
    check_accumulation(train_cfg, len(batches.t.train))
    steps_per_epoch = max(1, -(-len(batches.t.train) // bs) // accum)
    saved = (_usable_checkpoint(checkpoint, train_cfg["epochs"])
             if checkpoint is not None and checkpoint.is_file() else None)
    cap_state = batches.generator.get_state()

    def fresh() -> TrainingState:
        seed_everything(seed)
        order_gen = torch.Generator().manual_seed(seed)
        model = info.build(dims, config["model"]).to(batches.device)
        opt = make_optimizer([p for p in model.parameters() if p.requires_grad], train_cfg)
        return TrainingState(model, opt, make_scheduler(opt, train_cfg, steps_per_epoch), order_gen)

    state = fresh()
    if saved is not None:
        try:
            state.frames, state.logs = _restore(saved, state.model, state.optimizer, state.scheduler, state.order_gen,
                                                batches.generator)
            state.resumed_from = saved["epoch"]
        except (CheckpointError, RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            # a state that does not fit this model or optimiser: discard it and train from the start
            assert checkpoint is not None
            _discard_checkpoint(checkpoint, f"it does not fit this run: {exc}")
            batches.generator.set_state(cap_state)
            state = fresh()
    return state


def train_one_epoch(state: TrainingState, info: MethodInfo, train_cfg: Mapping[str, Any], batches: Batches,
                    epoch: int, progress: Progress | None = None) -> tuple[float, dict[str, float]]:
    """One pass over the training fold in the epoch's order: NLL (times the method's ``nll_weight``) plus its
    auxiliary losses, gradient accumulation, L1, the scheduler's steps. Returns the patient-weighted mean
    loss and mean auxiliary losses."""
    model, opt, sched = state.model, state.optimizer, state.scheduler
    t = batches.t
    bs, accum = train_cfg["batch_size"], train_cfg["grad_accum"]
    model.train()
    order = epoch_order(t.train, t.bins.cpu().numpy(), t.censorship.cpu().numpy(), train_cfg["sampler"],
                        state.order_gen)
    n_steps = -(-len(order) // bs)
    total, aux_tot, seen = 0.0, {}, 0
    for i, batch in enumerate(batches.iterate(order, bs, train=True)):
        out = model(batch)
        hazards = torch.sigmoid(out.logits)
        loss = out.nll_weight * nll_loss(hazards, batch.bins, batch.censorship, alpha=train_cfg["alpha"])
        for name, value in out.aux.items():
            loss = loss + value
            aux_tot[name] = aux_tot.get(name, 0.0) + float(value.detach())
        if not torch.isfinite(loss):
            raise BenchError(f"{info.name}: training loss became {float(loss)} at patient {batch.case_ids[0]} "
                             f"(epoch {epoch}); lower the learning rate (--set lr=...) or check the inputs")
        if train_cfg["l1"] > 0:
            backward_with_l1(model, loss / accum, train_cfg["l1"])
        else:
            (loss / accum).backward()
        if (i + 1) % accum == 0:
            opt.step()
            opt.zero_grad(set_to_none=True)
            if sched is not None:
                sched.step()
        total += float(loss.detach()) * batch.size
        seen += batch.size
        if progress is not None and progress.on_step is not None:
            progress.on_step(i + 1, n_steps, float(loss.detach()))
    return total / max(1, seen), {k: v / max(1, seen) for k, v in aux_tot.items()}


def evaluate(model: SurvivalModel, batches: Batches, indices: np.ndarray, batch_size: int, epoch: int,
             split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Predict ``indices`` in eval mode: their rows of the prediction store (``epoch``, ``split``) and their
    risk scores as computed (float32, what the epoch's C-index is computed from)."""
    out = predict(model, batches, indices, batch_size)
    return prediction_frame(batches, indices, out, epoch, split), out["risk"]


def evaluate_quietly(model: SurvivalModel, batches: Batches, indices: np.ndarray, batch_size: int, epoch: int,
                     split: str) -> pd.DataFrame:
    """:func:`evaluate`'s rows, with no effect on anything later: the Python, NumPy and torch RNG states, the
    patch-sampling generator of ``batches`` and the model's buffers (e.g. CCL's k-means counters) are put back
    as they were, so the epochs that follow train and predict exactly as without this pass."""
    rng = rng_state()
    cap = batches.generator.get_state() if batches.generator is not None else None
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        return evaluate(model, batches, indices, batch_size, epoch, split)[0]
    finally:
        set_rng_state(rng)
        if cap is not None and batches.generator is not None:
            batches.generator.set_state(cap)
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def _split_cindex(frame: pd.DataFrame) -> float:
    """The C-index of one evaluation's rows exactly as the protocols compute it from the store (NaN -> -inf)."""
    c = cindex(frame["survival_months"].to_numpy(), frame["censorship"].to_numpy(), frame["risk"].to_numpy())
    return -np.inf if np.isnan(c) else c


def running_best(frames: list[pd.DataFrame]) -> dict[str, float]:
    """The best validation and inner C-index (NaN counted as -inf) of the epochs in ``frames`` (a resumed run's)."""
    best = {"val": -np.inf, "inner": -np.inf}
    if frames:
        preds = pd.concat(frames, ignore_index=True)
        for split in best:
            if (preds["split"] == split).any():
                best[split] = float(epoch_cindex(preds, split).fillna(-np.inf).max())
    return best


def selectable(best: dict[str, float], frame: pd.DataFrame, split: str) -> bool:
    """Whether this epoch's ``split`` rows reach the best C-index so far (ties included), updating ``best``.

    ``best-val`` and ``inner`` pick an epoch of maximal C-index (earliest or latest among ties); such an
    epoch is never below the maximum of the epochs before it, so every epoch they can select passes."""
    c = _split_cindex(frame)
    if c >= best[split]:
        best[split] = c
        return True
    return False


def train_fold(
    info: MethodInfo,
    config: Mapping[str, Any],
    dims: InputDims,
    batches: Batches,
    seed: int,
    *,
    progress: Progress | None = None,
    checkpoint: Path | None = None,
    stop_after_epoch: int | None = None,
) -> FoldResult:
    """Train ``info``'s model on the fold held by ``batches`` and evaluate it after every epoch.

    :func:`restore` (a fresh start or the checkpoint's state), then per epoch :func:`train_one_epoch`,
    :func:`evaluate` on the validation fold (and inner split), on the training fold where the epoch is
    :func:`selectable` or the last (:func:`evaluate_quietly` before the last) and a checkpoint.
    ``checkpoint``: where to save the full training state after each epoch; if it exists when the fold
    starts, training resumes from it (a checkpoint that cannot be loaded safely or does not fit is reported
    on stderr, deleted, and the fold trains from the start). ``stop_after_epoch`` ends early
    (used by fault tests).
    """
    train_cfg = config["train"]
    progress = progress or Progress()
    t0 = time.perf_counter()
    state = restore(info, config, dims, batches, seed, checkpoint)
    t, bs, epochs = batches.t, train_cfg["batch_size"], train_cfg["epochs"]
    best = running_best(state.frames)
    for epoch in range(state.resumed_from + 1, epochs + 1):
        e0 = time.perf_counter()
        loss, aux = train_one_epoch(state, info, train_cfg, batches, epoch, progress)
        frame, risk = evaluate(state.model, batches, t.val, bs, epoch, "val")
        state.frames.append(frame)
        keep_train = selectable(best, frame, "val")
        if len(t.inner):  # selection=inner: the epoch is chosen on these held-out training patients
            inner = evaluate(state.model, batches, t.inner, bs, epoch, "inner")[0]
            state.frames.append(inner)
            keep_train = selectable(best, inner, "inner") or keep_train
        c = cindex(t.time[t.val].cpu().numpy(), t.censorship[t.val].cpu().numpy(), risk)
        log = EpochLog(epoch=epoch, train_loss=loss, aux=aux, val_cindex=c, seconds=time.perf_counter() - e0)
        state.logs.append(log)
        if epoch == epochs:
            state.frames.append(evaluate(state.model, batches, t.train, bs, epoch, "train")[0])
        elif keep_train:  # training-fold risks of an epoch a protocol may report (Table II's fold-safe threshold)
            state.frames.append(evaluate_quietly(state.model, batches, t.train, bs, epoch, "train"))
        if progress.on_epoch is not None:
            progress.on_epoch(log)
        if checkpoint is not None and epoch < epochs:
            _save_checkpoint(checkpoint, state.model, state.optimizer, state.scheduler, state.order_gen,
                             batches.generator, state.frames, state.logs, epoch)
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < epochs:
            raise KeyboardInterrupt(f"stopped after epoch {epoch} on request")

    predictions = pd.concat(state.frames, ignore_index=True)
    return FoldResult(predictions=predictions, epochs=state.logs, seconds=time.perf_counter() - t0, model=state.model,
                      resumed_from=state.resumed_from)


def check_accumulation(train: Mapping[str, Any], n_train: int) -> None:
    """Refuse gradient accumulation longer than an epoch: the optimiser would never step."""
    bs, accum = train["batch_size"], train["grad_accum"]
    n_batches = max(1, -(-n_train // bs))
    if accum > n_batches:
        raise BenchError(f"grad_accum={accum} is longer than an epoch: {n_train} training patients in batches of {bs} "
                         f"make {n_batches} batch(es) per epoch, so the optimiser would never step; use "
                         f"--set grad_accum={n_batches} or less")


def _discard_checkpoint(path: Path, reason: str) -> None:
    path.unlink(missing_ok=True)
    sys.stderr.write(f"warning: checkpoint {path} {reason}; deleted it, the fold trains from epoch 1\n")


def _usable_checkpoint(path: Path, epochs: int) -> dict[str, Any] | None:
    """The checkpoint's state if it can be resumed for a run of ``epochs`` epochs; else it is discarded."""
    try:
        state = read_checkpoint(path)
        if state["epoch"] >= epochs:
            raise CheckpointError(f"is after epoch {state['epoch']} of a {epochs}-epoch run")
    except CheckpointError as exc:
        _discard_checkpoint(path, str(exc))
        return None
    return state


def _restore(state: Mapping[str, Any], model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
             order_gen: torch.Generator, cap_gen: torch.Generator) -> tuple[list[pd.DataFrame], list[EpochLog]]:
    """Load a checkpoint's state into the run; (prediction frames, epoch logs) so far."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state.get("scheduler") is not None:
        sched.load_state_dict(state["scheduler"])
    order_gen.set_state(state["order_gen"])
    cap_gen.set_state(state["cap_gen"])
    set_rng_state(state["rng"])
    frames = [pd.DataFrame(state["predictions"])] if len(state["predictions"]) else []
    return frames, [EpochLog(**e) for e in state["epochs"]]


def _save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
                     order_gen: torch.Generator, cap_gen: torch.Generator, frames: list[pd.DataFrame],
                     logs: list[EpochLog], epoch: int) -> None:
    preds = pd.concat(frames, ignore_index=True).to_dict(orient="list") if frames else {}
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else None,
        "order_gen": order_gen.get_state(),
        "cap_gen": cap_gen.get_state(),
        "rng": rng_state(),
        "predictions": preds,
        "epochs": [{**e.__dict__, "val_cindex": float(e.val_cindex), "train_loss": float(e.train_loss),
                    "aux": {k: float(v) for k, v in e.aux.items()}} for e in logs],
        "epoch": epoch,
    }
    write_checkpoint(path, state)


__all__ = ["EpochLog", "FoldResult", "Progress", "TrainingState", "evaluate", "evaluate_quietly", "predict", "restore",
           "running_best", "selectable", "train_fold", "train_one_epoch"]
