"""CLI for grids of runs: ``bench sweep``, ``bench results verify`` and ``bench results compact``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from tabulate import tabulate

from bench._core.errors import BenchError


def register(app: typer.Typer, results_app: typer.Typer) -> None:
    """Add ``sweep`` to the main app and ``verify`` to ``bench results``."""
    app.command("sweep")(sweep)
    results_app.command("verify")(verify)
    results_app.command("compact")(compact)


def sweep(
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods, e.g. ccl,mcat.")] = None,
    cohorts: Annotated[str | None, typer.Option(help="Comma-separated cohorts or 'all'.")] = None,
    folds: Annotated[str, typer.Option(help="Comma-separated folds or 'all'.")] = "all",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    set_: Annotated[list[str] | None, typer.Option("--set", help="key=value for every run (repeatable).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override every method's epochs.")] = None,
    grid: Annotated[Path | None, typer.Option(help="A grid TOML file instead of the options above.")] = None,
    executor: Annotated[str | None, typer.Option(help="local (worker pool), slurm (submitit), debug.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (per GPU on a GPU machine).")] = None,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    time_min: Annotated[int | None, typer.Option("--time", help="Slurm time limit per array task (minutes).")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(help="Slurm GPUs per task.")] = None,
    submitit_cluster: Annotated[str, typer.Option(help="submitit cluster: slurm, local or debug (testing).")] = "slurm",
    wait: Annotated[bool, typer.Option(help="Wait for Slurm array tasks to finish.")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the keys and their status; run nothing.")] = False,
    measure: Annotated[int, typer.Option(help="With --dry-run: also time one epoch of each pending (method, variant, "
                                              "cohort) on this many of its fold's patients (one thread) and print "
                                              "the cost measured now beside the store's estimates (0: off).")] = 0,
    features: Annotated[str | None, typer.Option(help="Feature store(s), comma-separated: the grid runs once per "
                                                      "store, e.g. resnet50,uni_v2.")] = None,
    splits: Annotated[str | None, typer.Option(help="fixed (default) or site: every run on the site-preserved "
                                                    "splits (variant splits=site).")] = None,
) -> None:
    """Run a grid of (method, variant, cohort, fold, seed) keys, skipping those already complete."""
    from bench._core.config import load_settings, parse_sets
    from bench.cli.common import console, err_console
    from bench.train.sweep import SweepSpec, load_grid, parse_ints, parse_list, run_sweep, write_failures

    settings = load_settings()
    if grid is not None:
        spec = load_grid(grid)
    else:
        if not methods or not cohorts:
            raise BenchError("give --methods and --cohorts (or --grid FILE)")
        spec = SweepSpec(methods=parse_list(methods, "methods"), cohorts=parse_list(cohorts, "cohorts"),
                         folds=parse_ints(folds, "folds"), seeds=parse_ints(seeds, "seeds") or [0],
                         sets=[parse_sets(set_ or [])], epochs=epochs)
    if features is not None:
        spec.features = parse_list(features, "features")
    if splits is not None:
        spec.splits = splits
    spec.executor = executor or spec.executor
    if workers is not None:  # not `workers or ...`: --workers 0 is an error, not the default
        spec.workers = workers
    for k, v in (("partition", partition), ("time", time_min), ("gpus_per_node", gpus_per_node)):
        if v is not None:
            spec.slurm[k] = v
    spec.slurm.setdefault("cluster", submitit_cluster)
    measured = None
    if measure:
        if not dry_run:
            raise BenchError("--measure only goes with --dry-run")
        from bench.tools.perf_epoch import sweep_measurer

        measured = sweep_measurer(settings, measure)
    tally = run_sweep(settings, spec, lambda line: console.print(line, markup=False), wait=wait, dry_run=dry_run,
                      measure=measured)
    failed = write_failures(settings, tally.failures)
    if failed:
        err_console.print(f"{tally.summary()}; errors in {failed}", markup=False)
        sys.exit(1)


def verify(
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
) -> None:
    """Check every stored run; list incomplete or corrupt ones with the command that redoes them."""
    from bench._core.config import load_settings
    from bench.cli.common import console
    from bench.store.verify import ignored_note, verify_report

    settings = load_settings()
    report = verify_report(settings, results)
    n, problems = report.checked, report.problems
    for line in [ignored_note(p, str(p.relative_to(settings.root) if p.is_relative_to(settings.root) else p))
                 for p in report.ignored] + report.environment:
        console.print(line, markup=False)  # information only: the exit code depends on the runs alone
    if not problems:
        console.print(f"{n} run(s) checked: all complete and consistent")
        return
    rows = [[str(p.path.relative_to(settings.root) if p.path.is_relative_to(settings.root) else p.path), p.kind,
             p.detail, p.command] for p in problems]
    console.print(tabulate(rows, headers=["run", "problem", "detail", "redo with"]))
    console.print(f"{n} run(s) checked: {len(problems)} problem(s)")
    sys.exit(1)


def compact(
    paths: Annotated[list[Path] | None, typer.Argument(help="Only the runs under these folders (e.g. "
                                                          "results/snn/default); default: the whole store.")] = None,
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be compressed; change nothing.")]
    = False,
) -> None:
    """Gzip the plain predictions.csv of earlier runs (values unchanged; the manifest follows)."""
    from bench._core.config import load_settings
    from bench._core.errors import BenchError
    from bench.cli.common import console
    from bench.store.predictions import PREDICTIONS, compact_run, predictions_path, read_manifest, store_layout
    from bench.store.verify import store_root

    settings = load_settings()
    root = store_root(settings, results)
    runs = store_layout(root).runs
    if paths:
        wanted = [p.resolve() for p in paths]
        missing = [str(p) for p, w in zip(paths, wanted, strict=True) if not w.is_dir()]
        if missing:
            raise BenchError(f"no such folder: {', '.join(missing)} (name folders of the store {root})")
        runs = [d for d in runs if any(d.resolve().is_relative_to(w) for w in wanted)]
    todo = [d for d in runs
            if (m := read_manifest(d)) is not None and m.get("status") == "complete"
            and predictions_path(d, m).name == PREDICTIONS]
    before = sum((d / PREDICTIONS).stat().st_size for d in todo)
    if dry_run:
        console.print(f"{len(todo)} run(s) hold a plain predictions.csv ({before / 2**20:.1f} MiB)")
        return
    done = sum(compact_run(d) for d in todo)
    after = sum(predictions_path(d, read_manifest(d)).stat().st_size for d in todo)
    console.print(f"{done} run(s) compacted: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")
