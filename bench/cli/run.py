"""``bench run``: train and evaluate one method on one cohort, with a progress bar per fold."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tabulate import tabulate

from bench._core.errors import BenchError
from bench.cli.common import console, err_console, load_settings, parse_folds


def run(
    method: Annotated[str, typer.Option("--method", "-m", help="Method name (see `bench methods`).")],
    cohort: Annotated[str, typer.Option("--cohort", "-c", help="Cohort: BLCA, BRCA, GBMLGG, LUAD or UCEC.")],
    folds: Annotated[str | None, typer.Option(help="Comma-separated folds, e.g. 0,2 (default: all).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default from bench.toml).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 0,1,2: one run per seed.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the method's number of epochs.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key=value override (repeatable).")] = None,
    variant: Annotated[str | None, typer.Option(help="A named variant of the method (e.g. CCL's ablations).")] = None,
    features: Annotated[str | None, typer.Option(help="Feature store: auto, synthetic, a name or an .h5 path (a "
                                                      "store other than the default synthetic one is part of the "
                                                      "variant: features=NAME).")] = None,
    splits: Annotated[str | None, typer.Option(
        help="fixed (default, the published splits) or site (splits/<cohort>/site/, from bench data site-splits; "
             "variant splits=site).")] = None,
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain folds that are already stored.")] = False,
    workers: Annotated[int, typer.Option(help="Train this many folds at once (processes sharing the features).")] = 1,
) -> None:
    """Train and evaluate one method on one cohort over the fixed 5-fold splits (or the site-preserved ones)."""
    from bench._core.config import parse_sets
    from bench.train.runner import plan_run
    from bench.train.sweep import parse_ints

    if workers < 1:
        raise BenchError(f"bad --workers {workers}: must be >= 1")
    if seed is not None and seeds is not None:
        raise BenchError("give --seed or --seeds, not both")
    settings = load_settings()
    seed_list: list[int | None] = list(parse_ints(seeds, "seeds") or []) if seeds is not None else [seed]
    if not seed_list:
        raise BenchError(f"--seeds {seeds!r} names no seed; give e.g. --seeds 0,1,2")
    # every seed is planned (and its inputs checked) before any trains
    plans = [plan_run(settings, method, cohort, folds=parse_folds(folds), seed=s, epochs=epochs, device=device,
                      sets=parse_sets(set_ or []), variant=variant, features=features, results=results,
                      splits=splits)
             for s in seed_list]
    lost: list[str] = []
    summaries = []
    for plan in plans:
        summary, interrupted = _run_plan(plan, force, workers)
        summaries.append(summary)
        lost += [f"fold {f}" if len(plans) == 1 else f"seed {plan.seed} fold {f}" for f in interrupted]
    if len(plans) > 1:
        _seed_table(plans, summaries)
    if lost:
        err_console.print(f"{len(lost)} fold(s) interrupted ({', '.join(lost)}): a worker process died; rerun the "
                          "same command to resume from the checkpoint", markup=False)
        sys.exit(1)


def _seed_table(plans, summaries) -> None:
    """Across seeds: each fold averaged over the seeds, then mean ± std over folds; the spread over seeds."""
    from bench.metrics.concordance import seed_summary

    common = sorted(set.intersection(*[{f.fold for f in s.folds} for s in summaries]))
    if not common:
        return
    rows = []
    for name, attr in (("best-val", "best_cindex"), ("last", "last_cindex"), ("inner", "inner_cindex")):
        per_seed = [[getattr(next(f for f in s.folds if f.fold == k), attr) for k in common] for s in summaries]
        if any(v is None for vs in per_seed for v in vs):
            continue
        mean, std, spread = seed_summary(per_seed)
        rows.append([name, f"{mean:.4f} ± {std:.4f}", f"{spread:.4f}" if spread is not None else "—"])
    console.print(f"over seeds {', '.join(str(p.seed) for p in plans)} (folds {', '.join(map(str, common))}: each "
                  "fold averaged over the seeds, then mean ± std over folds):")
    console.print(tabulate(rows, headers=["protocol", "C-index", "spread over seeds"], tablefmt="simple"))


def _run_plan(plan, force: bool, workers: int):
    """Train one planned seed with progress bars; print its per-fold table. (summary, interrupted folds)."""
    from bench.train.runner import execute, summarize

    info = plan.info
    console.print(f"[bold]{escape(info.title)}[/] on [bold]{plan.cohort.name}[/] · variant "
                  f"[cyan]{escape(plan.variant)}[/] (config {plan.chash}) · seed {plan.seed} · device {plan.device} · "
                  f"genomics build {escape(plan.cohort.build)} · splits {escape(plan.cohort.split_kind)}")
    if plan.store is not None:
        s = plan.store.info
        console.print(f"pathology features: {s.kind.upper()} store {escape(s.path.name)} ({s.n_slides} slides, "
                      f"{s.n_patches} patches x {s.dim}, {s.nbytes / 2**20:.0f} MiB)")
        if plan.store.notice:
            err_console.print(f"[yellow]{escape(plan.store.notice)}[/]")
    epochs_total = plan.config["train"]["epochs"]

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
                  transient=False, disable=not console.is_terminal) as bar:

        def progress_for(fold: int):
            from bench.train.engine import Progress as EngineProgress

            task = bar.add_task(f"fold {fold}", total=epochs_total, status="")
            state = {"epoch": 0}

            def on_step(i: int, n: int, loss: float) -> None:
                if i % 16 == 0 or i == n:
                    bar.update(task, status=f"epoch {state['epoch'] + 1}/{epochs_total} step {i}/{n} loss {loss:.3f}")

            def on_epoch(log) -> None:
                state["epoch"] = log.epoch
                bar.update(task, completed=log.epoch,
                           status=f"epoch {log.epoch}/{epochs_total} loss {log.train_loss:.3f} "
                                  f"val C {log.val_cindex:.4f}")
                if not console.is_terminal and (log.epoch == epochs_total or log.epoch % 10 == 0):
                    console.print(f"  fold {fold} epoch {log.epoch}/{epochs_total}: loss {log.train_loss:.4f}, "
                                  f"val C-index {log.val_cindex:.4f} ({log.seconds:.1f}s)")

            return EngineProgress(on_step=on_step, on_epoch=on_epoch)

        def on_fold(out) -> None:
            if out.status == "skipped":
                console.print(f"  fold {out.fold}: already stored, skipped (--force retrains)")
            elif out.status == "busy":
                console.print(f"  fold {out.fold}: another process is training it right now, skipped")
            elif out.status == "interrupted":
                console.print(f"  fold {out.fold}: interrupted, its worker process died (killed or out of memory); "
                              f"rerun to resume it from its checkpoint -> {out.path}", markup=False)
            else:
                console.print(f"  fold {out.fold}: {out.status} in {out.seconds:.1f}s -> {out.path}", markup=False)

        outcomes = execute(plan, force=force, progress=progress_for, on_fold=on_fold, workers=workers)

    summary = summarize(plan)
    inner = bool(summary.folds) and all(f.inner_cindex is not None for f in summary.folds)
    rows = [[f.fold, f"{f.best_cindex:.4f}", f.best_epoch, f"{f.last_cindex:.4f}", f.last_epoch]
            + ([f"{f.inner_cindex:.4f}", f.inner_epoch] if inner else []) for f in summary.folds]
    bm, bsd = summary.protocol("best-val")
    lm, lsd = summary.protocol("last")
    rows.append(["mean ± std", f"{bm:.4f} ± {bsd:.4f}", "", f"{lm:.4f} ± {lsd:.4f}", ""]
                + (["{:.4f} ± {:.4f}".format(*summary.protocol("inner")), ""] if inner else []))
    headers = ["fold", "C best-val", "epoch", "C last", "epoch"] + (["C inner", "epoch"] if inner else [])
    console.print(f"seed {plan.seed}:")
    console.print(tabulate(rows, headers=headers, tablefmt="simple"))
    kind = "synthetic" if plan.store is not None and plan.store.info.synthetic else (
        "real" if plan.store is not None else "none")
    console.print(f"protocols: best-val = max val C-index over epochs (official {info.title} rule: {info.selection}); "
                  f"last = epoch {epochs_total}" + ("; inner = the epoch with the best inner-split C-index" if inner
                                                     else "") + f". Pathology: {kind}. Predictions: {plan.results}",
                  markup=False)
    return summary, [o.fold for o in outcomes if o.status == "interrupted"]


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""
    app.command("run")(run)
