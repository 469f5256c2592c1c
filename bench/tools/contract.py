"""The method contract: the checks every registered method must pass (``bench check-method``).

Each check runs on a tiny synthetic project (:mod:`bench.data.toy`) through the shared data path and
engine, and reports pass / fail / skip with a reason:

* ``builds`` — the model builds from its metadata's hyper-parameters.
* ``shapes`` — ``forward`` returns finite logits ``[B, n_bins]`` (B = 1, and B = 2 when the method
  allows batches), auxiliary losses are finite scalars.
* ``mask`` — padding does not change a patient's output (alone vs. in a padded batch, eval mode).
* ``learns`` — a few optimiser steps on a fixed batch lower its loss.
* ``deterministic`` — two evaluations give identical outputs.
* ``state`` — ``state_dict`` round trip: a fresh model loaded with it gives the same outputs.
* ``stores`` — ``bench run`` for one epoch on two folds writes complete predictions and manifests.
"""

from __future__ import annotations

import copy
import inspect
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench._core.errors import BenchError
from bench.api.losses import nll_loss
from bench.api.model import InputDims, ModelOutput
from bench.api.registry import MethodInfo, get_method
from bench.data.batches import Batches, FoldTensors, ResidentBags, input_dims
from bench.data.toy import make_toy_project
from bench.store.predictions import predictions_path, read_manifest, read_predictions

#: The synthetic cohort every check runs on (bench.data.toy): patients, mean patches per slide, feature size.
TOY = {"n_patients": 40, "patches": 12, "dim": 16, "signal": 1.0}


@dataclass
class CheckResult:
    name: str
    status: str  # pass | fail | skip
    reason: str = ""


class _Skip(Exception):
    pass


class _Fail(AssertionError):
    """A contract check that failed (its message is the reason); other exceptions come from the method."""


@dataclass
class _Context:
    info: MethodInfo
    dims: InputDims
    batches: Batches
    config: dict
    settings: object
    workdir: Path

    def build(self, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        return self.info.build(self.dims, self.config["model"])

    def batch(self, idx: list[int], train: bool = False):
        return self.batches.make(idx, train=train)


def _prepare(name: str, workdir: Path) -> _Context:
    from bench.train.runner import plan_run

    project = make_toy_project(workdir, **TOY)
    plan = plan_run(project.settings, name, project.cohort, epochs=1, device="cpu")
    fold = plan.cohort.fold(0)
    bags = ResidentBags(plan.store.info, plan.cohort) if plan.store is not None else None
    tensors = FoldTensors.build(plan.cohort, fold, torch.device("cpu"), bags.available if bags else None)
    batches = Batches(plan.cohort, tensors, bags, generator=torch.Generator().manual_seed(0))
    dims = input_dims(plan.cohort, plan.config["data"]["n_bins"], bags.dim if bags else None, tensors.train)
    return _Context(info=plan.info, dims=dims, batches=batches, config=plan.config, settings=project.settings,
                    workdir=workdir)


def _allows_batches(ctx: _Context) -> bool:
    cfg = copy.deepcopy(ctx.config)
    cfg["train"]["batch_size"] = 2
    try:
        ctx.info.check_config(cfg)
    except BenchError:
        return False
    return True


def _forward(model: torch.nn.Module, batch) -> ModelOutput:
    out = model(batch)
    if not isinstance(out, ModelOutput):
        raise _Fail(f"forward returned {type(out).__name__}, expected ModelOutput(logits, aux)")
    if not isinstance(out.logits, torch.Tensor):
        raise _Fail(f"ModelOutput.logits is {type(out.logits).__name__}, expected a [B, n_bins] tensor")
    return out


def _eval(model: torch.nn.Module, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return _forward(model, batch).logits


def check_builds(ctx: _Context) -> str:
    model = ctx.build()
    n = sum(p.numel() for p in model.parameters())
    return f"{n} parameters"


def check_shapes(ctx: _Context) -> str:
    model = ctx.build()
    sizes = [1, 2] if _allows_batches(ctx) else [1]
    for b in sizes:
        batch = ctx.batch(list(ctx.batches.t.train[:b]), train=True)
        model.train()
        out = _forward(model, batch)
        if tuple(out.logits.shape) != (b, ctx.dims.n_bins):
            raise _Fail(f"logits shape {tuple(out.logits.shape)} for a batch of {b}, "
                        f"expected ({b}, {ctx.dims.n_bins})")
        if not torch.isfinite(out.logits).all():
            raise _Fail("non-finite logits")
        for k, v in out.aux.items():
            if not isinstance(v, torch.Tensor) or v.dim() != 0 or not torch.isfinite(v):
                raise _Fail(f"auxiliary loss '{k}' is not a finite scalar")
    return f"logits ({', '.join(f'{b}x{ctx.dims.n_bins}' for b in sizes)})"


def check_mask(ctx: _Context) -> str:
    if not ctx.info.uses_pathology:
        raise _Skip("genomics-only method: no bags to pad")
    if not _allows_batches(ctx):
        raise _Skip("method requires batch size 1, so it never sees padding")
    bags = ctx.batches.bags
    idx = ctx.batches.t.train
    lengths = bags.lengths[idx]
    short, long_ = int(idx[np.argmin(lengths)]), int(idx[np.argmax(lengths)])
    if bags.lengths[short] == bags.lengths[long_]:
        raise _Skip("toy bags all have the same length")
    model = ctx.build()
    alone = _eval(model, ctx.batch([short]))
    padded = _eval(model, ctx.batch([short, long_]))[:1]
    if not torch.allclose(alone, padded, atol=1e-4, rtol=1e-4):
        diff = float((alone - padded).abs().max())
        raise _Fail(f"padding changed the output of a {bags.lengths[short]}-patch bag by {diff:.2e} "
                    f"when batched with a {bags.lengths[long_]}-patch bag; use batch.mask")
    return f"{bags.lengths[short]}-patch bag unchanged next to a {bags.lengths[long_]}-patch bag"


def check_learns(ctx: _Context) -> str:
    model = ctx.build()
    batch = ctx.batch(list(ctx.batches.t.train[:1]), train=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_now() -> float:
        logits = _eval(model, batch)
        return float(nll_loss(torch.sigmoid(logits), batch.bins, batch.censorship))

    before = loss_now()
    for _ in range(15):
        model.train()
        out = _forward(model, batch)
        loss = out.nll_weight * nll_loss(torch.sigmoid(out.logits), batch.bins, batch.censorship)
        loss = loss + sum(out.aux.values()) if out.aux else loss
        if not loss.requires_grad:
            raise _Fail("the loss carries no gradient: the logits do not depend on any trainable parameter")
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = loss_now()
    if not after < before:
        raise _Fail(f"loss on a fixed batch did not go down: {before:.4f} -> {after:.4f}")
    return f"NLL {before:.4f} -> {after:.4f} after 15 Adam steps"


def check_deterministic(ctx: _Context) -> str:
    model = ctx.build()
    batch = ctx.batch(list(ctx.batches.t.val[:1]))
    a, b = _eval(model, batch), _eval(model, batch)
    if not torch.equal(a, b):
        raise _Fail(f"two evaluations differ by {float((a - b).abs().max()):.2e}; eval mode must not sample "
                    "(check model.training before any random op)")
    return "identical logits on repeat"


def check_state(ctx: _Context) -> str:
    model = ctx.build(seed=0)
    batch = ctx.batch(list(ctx.batches.t.train[:1]), train=True)
    model.train()
    model(batch)  # let stateful methods (anchors, banks) update their state once
    ref = _eval(model, ctx.batch(list(ctx.batches.t.val[:1])))
    other = ctx.build(seed=1)
    other.load_state_dict(model.state_dict())
    got = _eval(other, ctx.batch(list(ctx.batches.t.val[:1])))
    if not torch.allclose(ref, got, atol=1e-6):
        raise _Fail(f"a model restored from state_dict gives other outputs (max difference "
                    f"{float((ref - got).abs().max()):.2e}); keep all state in parameters or registered buffers")
    return f"{len(model.state_dict())} tensors restored, same outputs"


def check_stores(ctx: _Context) -> str:
    from bench.train.runner import execute, plan_run

    plan = plan_run(ctx.settings, ctx.info.name, "toy", epochs=1, folds=[0, 1], device="cpu")
    execute(plan)
    for fold in (0, 1):
        d = plan.dir(fold)
        manifest = read_manifest(d)
        if manifest is None or manifest.get("status") != "complete":
            raise _Fail(f"no complete manifest in {d}")
        preds = read_predictions(predictions_path(d, manifest))
        val_ids = {plan.cohort.case_ids[i] for i in plan.cohort.split(fold).val}
        got = set(preds.loc[preds["split"] == "val", "case_id"])
        if got != val_ids:
            raise _Fail(f"fold {fold}: stored val patients differ from the split "
                        f"({len(got)} vs {len(val_ids)})")
    return "2 folds stored with manifests and every val patient"


CHECKS: list[tuple[str, Callable[[_Context], str]]] = [
    ("builds", check_builds),
    ("shapes", check_shapes),
    ("mask", check_mask),
    ("learns", check_learns),
    ("deterministic", check_deterministic),
    ("state", check_state),
    ("stores", check_stores),
]


def run_contract(name: str, workdir: Path | None = None) -> list[CheckResult]:
    """Run every contract check for method ``name``; never raises for a failing check."""
    get_method(name)  # unknown names are a user error, not a failed check
    with tempfile.TemporaryDirectory(prefix="survbench-contract-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        try:
            ctx = _prepare(name, root)
        except Exception as exc:
            return [CheckResult("builds", "fail", f"could not prepare the toy project: {exc}"),
                    *(CheckResult(n, "skip", "not run: the model does not build") for n, _ in CHECKS[1:])]
        results: list[CheckResult] = []
        for check_name, fn in CHECKS:
            if results and results[0].status == "fail":
                results.append(CheckResult(check_name, "skip", "not run: the model does not build"))
                continue
            try:
                results.append(CheckResult(check_name, "pass", fn(ctx)))
            except _Skip as exc:
                results.append(CheckResult(check_name, "skip", str(exc)))
            except _Fail as exc:
                results.append(CheckResult(check_name, "fail", str(exc)))
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}{_location(exc, ctx.info)}"
                results.append(CheckResult(check_name, "fail", reason))
        return results


def _location(exc: BaseException, info: MethodInfo) -> str:
    """`` (file:line)`` of the error: the deepest frame in the method's own file if there is one."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    try:
        own = Path(inspect.getfile(info.model)).resolve() if info.model is not None else None
    except (TypeError, OSError):
        own = None
    mine = [f for f in frames if own is not None and Path(f.filename).resolve() == own]
    where = (mine or frames)[-1]
    return f" ({Path(where.filename).name}:{where.lineno})"
