"""What runs cost, from the store: measured thread-seconds of stored runs, and estimates for runs not made yet.

Every complete manifest records the run's wall time (``timing.wall_seconds``), its torch threads, device,
epochs and the work it did: ``epochs x patients x patches per patient`` (patients = training + validation
fold; patches per patient = the feature store's patches over those patients; 1 for a genomics-only
method). A run not made yet is estimated from stored runs of the same method on the same device, as
thread-seconds per unit of work times its own work: linear in epochs, patients and bag length, which is
rough for methods whose cost grows faster than the bag (Nyström attention) and says so in its basis.
Runs resumed from a checkpoint are left out (their wall time covers only the epochs after the resume).

The references, best first: the same method and variant on the same cohort; the same method and variant
on other cohorts; the same method with other variants. A set is passed over when all its runs are older
than the method's newest run (made before a speed-up, they would overstate the cost). Within the set the
fastest rate gives the estimate (wall times of runs made beside other jobs are inflated) and the set's
median rate a typical cost (what the runs cost on the machine as it was used: the range between the two
is what a sweep beside other work should expect). The basis names the set and the dates its runs were
made. ``bench sweep --dry-run`` prints the estimates of a grid's pending keys.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.data.cohort import short_name
from bench.store.predictions import predictions_path, read_manifest, read_predictions, store_layout


@dataclass(frozen=True)
class RunCost:
    """One stored run's measured cost and the work it did."""

    method: str
    variant: str
    cohort: str
    device: str
    thread_seconds: float  # wall seconds x torch threads
    work: float  # epochs x patients x patches per patient (1 without pathology)
    finished: str = ""  # ISO date the run finished


@dataclass(frozen=True)
class CostEstimate:
    """A run's estimated thread-seconds (None: no stored run of its method on its device) and where it came from.

    ``thread_seconds`` is at the fastest reference rate, ``typical_seconds`` at the references' median rate
    (None when there is no estimate)."""

    thread_seconds: float | None
    basis: str
    typical_seconds: float | None = None


def run_work(epochs: int, patients: int, patches_per_patient: float | None) -> float:
    """``epochs x patients x patches per patient`` (``None``: a genomics-only run, one unit per patient)."""
    return float(epochs) * patients * (1.0 if patches_per_patient is None else patches_per_patient)


def manifest_cost(manifest: dict) -> RunCost | None:
    """The cost of one complete, not resumed run from its manifest (None if it lacks what is needed)."""
    if manifest.get("status") != "complete":
        return None
    timing = manifest.get("timing") or {}
    env = (manifest.get("environment") or {}).get("machine") or {}
    data = manifest.get("data") or {}
    key = manifest.get("key") or {}
    try:
        wall = float(timing["wall_seconds"])
        threads = int(env.get("torch_threads") or 1)
        epochs = int(manifest["config"]["train"]["epochs"])
        patients = int(data["n_train"]) + int(data["n_val"])
        method, variant, cohort = key["method"], key["variant"], key["cohort"]
    except (KeyError, TypeError, ValueError):
        return None
    if timing.get("resumed_from_epoch") or wall <= 0 or patients <= 0:
        return None
    pathology = data.get("pathology")
    ppp = None
    if isinstance(pathology, dict) and pathology.get("n_patches"):
        ppp = float(pathology["n_patches"]) / patients
    return RunCost(method, variant, cohort, str(env.get("device", "cpu")), wall * threads,
                   run_work(epochs, patients, ppp), str(timing.get("finished", ""))[:10])


def measured_costs(results: Path) -> list[RunCost]:
    """The measured cost of every complete, not resumed run under ``results`` (in folder order)."""
    out = []
    for d in store_layout(results).runs:
        m = read_manifest(d)  # a corrupt manifest is an error naming it
        cost = manifest_cost(m) if m is not None else None
        if cost is not None:
            out.append(cost)
    return out


def training_evaluations(results: Path, method: str) -> list[int]:
    """For each complete stored run of ``method`` (every variant and cohort), at how many epochs it evaluated
    its training fold (the distinct epochs of its ``train`` rows): the epochs a fold-score protocol could
    select, which :func:`bench.train.engine.train_fold` evaluates and a cost estimate has to count."""
    root = Path(results)
    out = []
    for d in store_layout(root).runs:
        if d.relative_to(root).parts[0] != method:
            continue
        m = read_manifest(d)
        if m is None or m.get("status") != "complete":
            continue
        frame = read_predictions(predictions_path(d, m))
        out.append(int(frame.loc[frame["split"] == "train", "epoch"].nunique()))
    return out


def estimate_cost(costs: Sequence[RunCost], method: str, variant: str, cohort: str, device: str,
                  work: float) -> CostEstimate:
    """Thread-seconds of a run of ``method``/``variant`` on ``cohort`` doing ``work`` units, from ``costs``.

    Args:
        costs: measured runs (:func:`measured_costs`); only those on ``device`` count.
        work: the run's :func:`run_work`.

    The fewest thread-seconds per unit of work in the best reference set (see the module docstring),
    times ``work``: wall times of runs made beside other jobs are inflated, so the fastest reference is the
    one closest to the run's own cost on an idle machine; the set's median rate times ``work`` is the
    typical cost. The basis names the references and the dates they were made (older runs may predate
    speed-ups).
    """
    same_device = [c for c in costs if c.method == method and c.device == device]
    tiers = (
        ([c for c in same_device if c.variant == variant and c.cohort == cohort], "on this cohort"),
        ([c for c in same_device if c.variant == variant], "on {cohorts}, scaled"),
        (same_device, "of its variants ({variants}) on {cohorts}, scaled"),
    )
    newest = max((c.finished for c in same_device), default="")
    for refs, where in tiers:
        # a tier of older runs only, when the method has newer ones, may predate a speed-up: take the next
        if refs and max(c.finished for c in refs) >= newest:
            rates = [c.thread_seconds / c.work for c in refs]
            cohorts = ", ".join(sorted({short_name(c.cohort) for c in refs}))
            names = sorted({c.variant for c in refs})
            variants = ", ".join(names) if len(names) <= 4 else f"{len(names)} of them"
            dates = sorted(c.finished for c in refs if c.finished)
            made = f", made {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "") if dates else ""
            basis = (f"fastest of {len(refs)} stored run(s) " + where.format(cohorts=cohorts, variants=variants)
                     + made)
            return CostEstimate(min(rates) * work, basis, statistics.median(rates) * work)
    return CostEstimate(None, f"no stored run of {method} on {device}")


def total_hours(estimates: Iterable[CostEstimate], typical: bool = False) -> tuple[float, int]:
    """The estimates' sum in hours (``typical``: of their typical costs) and how many had no estimate."""
    known = [e.typical_seconds if typical else e.thread_seconds for e in estimates]
    return sum(s for s in known if s is not None) / 3600, sum(1 for s in known if s is None)


__all__ = ["CostEstimate", "RunCost", "estimate_cost", "manifest_cost", "measured_costs", "run_work", "total_hours",
           "training_evaluations"]
