"""The ``bench`` command line (Typer).

Every command reads ``bench.toml`` from the project root. User errors print one line and exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from tabulate import tabulate

from bench.errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="survbench: re-run published multimodal survival methods on fixed TCGA splits.")
data_app = typer.Typer(no_args_is_help=True, help="Feature stores: import real features or synthesise stand-ins.")
app.add_typer(data_app, name="data")
results_app = typer.Typer(no_args_is_help=True, help="The prediction store: import, verify.")
app.add_typer(results_app, name="results")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _settings():
    from bench.config import load_settings

    return load_settings()


def _parse_folds(text: str | None) -> list[int] | None:
    from bench.sweep import parse_ints

    return parse_ints(text, "folds")


# ----------------------------------------------------------------------------------------------
# bench run


@app.command()
def run(
    method: Annotated[str, typer.Option("--method", "-m", help="Method name (see `bench methods`).")],
    cohort: Annotated[str, typer.Option("--cohort", "-c", help="Cohort: BLCA, BRCA, GBMLGG, LUAD or UCEC.")],
    folds: Annotated[str | None, typer.Option(help="Comma-separated folds, e.g. 0,2 (default: all).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default from bench.toml).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the method's number of epochs.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key=value override (repeatable).")] = None,
    variant: Annotated[str | None, typer.Option(help="A named variant of the method (e.g. CCL's ablations).")] = None,
    features: Annotated[str | None, typer.Option(help="Feature store: auto, synthetic, a name or an .h5 path.")] = None,
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain folds that are already stored.")] = False,
    workers: Annotated[int, typer.Option(help="Train this many folds at once (processes sharing the features).")] = 1,
) -> None:
    """Train and evaluate one method on one cohort over the fixed 5-fold splits."""
    from bench.config import parse_sets
    from bench.runner import execute, plan_run, summarize

    if workers < 1:
        raise BenchError(f"bad --workers {workers}: must be >= 1")
    settings = _settings()
    plan = plan_run(settings, method, cohort, folds=_parse_folds(folds), seed=seed, epochs=epochs, device=device,
                    sets=parse_sets(set_ or []), variant=variant, features=features, results=results)
    info = plan.info
    console.print(f"[bold]{escape(info.title)}[/] on [bold]{plan.cohort.name}[/] · variant "
                  f"[cyan]{escape(plan.variant)}[/] (config {plan.chash}) · seed {plan.seed} · device {plan.device} · "
                  f"genomics build {escape(plan.cohort.build)}")
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
            from bench.engine import Progress as EngineProgress

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
    rows = [[f.fold, f"{f.best_cindex:.4f}", f.best_epoch, f"{f.last_cindex:.4f}", f.last_epoch] for f in summary.folds]
    bm, bsd = summary.protocol("best-val")
    lm, lsd = summary.protocol("last")
    rows.append(["mean ± std", f"{bm:.4f} ± {bsd:.4f}", "", f"{lm:.4f} ± {lsd:.4f}", ""])
    console.print(tabulate(rows, headers=["fold", "C best-val", "epoch", "C last", "epoch"], tablefmt="simple"))
    kind = "synthetic" if plan.store is not None and plan.store.info.synthetic else (
        "real" if plan.store is not None else "none")
    console.print(f"protocols: best-val = max val C-index over epochs (official {info.title} rule: {info.selection}); "
                  f"last = epoch {epochs_total}. Pathology: {kind}. Predictions: {plan.results}", markup=False)
    lost = [o.fold for o in outcomes if o.status == "interrupted"]
    if lost:
        err_console.print(f"{len(lost)} fold(s) interrupted (fold {', '.join(map(str, lost))}): a worker process "
                          f"died; rerun the same command to resume from the checkpoint", markup=False)
        sys.exit(1)


# ----------------------------------------------------------------------------------------------
# bench methods / cohorts


@app.command()
def methods(
    details: Annotated[bool, typer.Option("--details", help="Also show notes and parameter counts.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the method pages as Markdown.")] = False,
) -> None:
    """List the registered methods."""
    from bench.registry import all_methods

    if markdown:
        from bench.inspect import method_pages

        typer.echo(method_pages(_settings()))
        return

    rows = []
    for m in all_methods():
        row = [m.name, m.title, m.modality, m.selection, "yes" if m.reimplementation else "", m.source,
               m.official_code or "—"]
        rows.append(row)
    headers = ["name", "title", "modality", "selection", "inferred", "source", "official code"]
    console.print(tabulate(rows, headers=headers), markup=False)
    if details:
        from bench.inspect import parameter_counts

        settings = _settings()
        for m in all_methods():
            counts = parameter_counts(settings, m)
            console.print(f"\n[bold]{escape(m.title)}[/] ({escape(m.name)}) — {escape(m.paper)}")
            console.print(f"  parameters: {counts}", markup=False)
            console.print(f"  defaults: train {dict(m.train) or 'bench.toml [train]'}; model {dict(m.hparams)}",
                          markup=False)
            if m.variants:
                console.print(f"  variants: {', '.join(m.variants)}", markup=False)
            console.print(f"  notes: {m.notes}", markup=False)


@app.command()
def cohorts() -> None:
    """List the bundled cohorts: patients, slides, censoring, genomic groups and feature stores."""
    from bench.cohort import GROUP_NAMES, available_cohorts, load_cohort, short_name, table_builds
    from bench.features import list_stores

    settings = _settings()
    rows = []
    for name in available_cohorts(settings):
        co = load_cohort(settings, name, settings["data"]["genomics"]) if settings["data"]["genomics"] in table_builds(
            settings, name) else load_cohort(settings, name, table_builds(settings, name)[0])
        stores = ", ".join(p.stem for p in list_stores(settings, name)) or "—"
        rows.append([short_name(name), co.n_patients, co.n_slides, f"{100 * co.censorship.mean():.1f}%", co.build,
                     co.genomics.shape[1], " / ".join(map(str, co.group_sizes)), sum(co.group_sizes),
                     ", ".join(table_builds(settings, name)), stores])
    console.print(tabulate(rows, headers=["cohort", "patients", "slides", "censored", "build", "genomic cols",
                                          "groups " + "/".join(GROUP_NAMES), "grouped", "builds", "feature stores"]),
                  markup=False)


# ----------------------------------------------------------------------------------------------
# bench data


@data_app.command("import")
def data_import(
    cohort: Annotated[str, typer.Option("--cohort", "-c", help="Cohort the slides belong to.")],
    features: Annotated[Path, typer.Option("--features", help="Folder of CLAM .pt or CLAM/TRIDENT .h5 files.")],
    name: Annotated[str | None, typer.Option(help="Store name (default: the encoder name).")] = None,
    encoder: Annotated[str, typer.Option(help="Encoder that made the features (recorded).")] = "resnet50",
    dim: Annotated[int | None, typer.Option(help="Expected feature dimension (checked).")] = None,
    dtype: Annotated[str, typer.Option(help="Stored dtype: float16 or float32.")] = "float16",
    allow_missing_slides: Annotated[bool, typer.Option("--allow-missing-slides",
                                                       help="Drop patients lacking a slide (recorded).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing store of that name.")] = False,
) -> None:
    """Convert a folder of per-slide features into the cohort's contiguous feature store."""
    from bench.cohort import load_cohort
    from bench.features import check_store_name, cohort_store_dir
    from bench.features.importer import import_features

    settings = _settings()
    co = load_cohort(settings, cohort)
    if dtype not in ("float16", "float32"):
        raise BenchError(f"bad --dtype '{dtype}': float16 or float32")
    store_name = check_store_name(name if name is not None else encoder, "--name" if name is not None else "--encoder")
    if store_name.startswith("synthetic"):
        raise BenchError("store names starting with 'synthetic' are reserved for synthetic stores; pick another --name")
    dest = cohort_store_dir(settings, co.name) / f"{store_name}.h5"
    if dest.exists() and not force:
        raise BenchError(f"{dest} exists; pass --force to replace it or choose another --name")
    info = import_features(co, features, dest, encoder=encoder, allow_missing=allow_missing_slides,
                           expected_dim=dim, dtype=dtype,
                           notify=lambda line: console.print(line, style="yellow", markup=False))
    console.print(f"wrote {info.path}: {info.n_slides} slides, {info.n_patches} patches x {info.dim} ({info.dtype}), "
                  f"real features from {features}")
    if info.dropped_patients:
        shown = ", ".join(info.dropped_patients[:10]) + (" ..." if len(info.dropped_patients) > 10 else "")
        console.print(f"[yellow]dropped {len(info.dropped_patients)} patient(s) with missing slides (recorded in the "
                      f"store): {shown}[/]")


@data_app.command("synth")
def data_synth(
    cohort: Annotated[str, typer.Option("--cohort", "-c", help="Cohort whose slide ids to use.")],
    patches: Annotated[int | None, typer.Option(help="Mean patches per slide.")] = None,
    signal: Annotated[float | None, typer.Option(help="Survival signal strength (0 = none).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    dim: Annotated[int | None, typer.Option(help="Feature dimension.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild if it exists.")] = False,
) -> None:
    """Write a SYNTHETIC feature store for the cohort's real slide ids (labelled synthetic everywhere)."""
    from bench.cohort import load_cohort
    from bench.config import SYNTHETIC_KEYS
    from bench.features import cohort_store_dir
    from bench.features.synthetic import synthesize, synthetic_store_name

    settings = _settings()
    co = load_cohort(settings, cohort)
    s = dict(settings["synthetic"])
    for k, v in (("patches", patches), ("signal", signal), ("seed", seed), ("dim", dim)):
        if v is not None:
            s[k] = SYNTHETIC_KEYS[k].validate(k, v)
    dest = cohort_store_dir(settings, co.name) / synthetic_store_name(s["patches"], s["signal"], s["seed"], s["dim"])
    if dest.exists() and not force:
        console.print(f"{dest} exists (use --force to rebuild)")
        return
    info = synthesize(co, dest, patches=s["patches"], signal=s["signal"], seed=s["seed"], dim=s["dim"])
    console.print(f"wrote SYNTHETIC store {info.path}: {info.n_slides} slides, {info.n_patches} patches x {info.dim}, "
                  f"signal {s['signal']}, seed {s['seed']}")
    default = (s == dict(settings["synthetic"]))
    if not default:
        console.print(f"use it with: bench run ... --features {info.path.stem}")


@app.command()
def perf(
    method: Annotated[list[str] | None, typer.Option("--method", "-m", help="Method(s) to time (repeatable).")] = None,
    profile: Annotated[str, typer.Option(help="small (this CPU) or realistic (BLCA-sized bags, for a GPU).")] = "small",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    naive: Annotated[bool, typer.Option(help="Also time the published data path (per-slide reads).")] = True,
    iters: Annotated[int | None, typer.Option(help="Timed training iterations per mode.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON.")] = None,
) -> None:
    """Time methods on a synthetic cohort: train/eval patients per second, 5-fold wall time, memory, speed-up."""
    from bench.perf import run_perf, write_json

    results, machine = run_perf(_settings(), method or ["ccl"], profile, device, naive=naive, iters=iters,
                                log=lambda s: console.print(s, markup=False))
    gpu = f" {machine['gpu']}" if machine["gpu"] else ""
    console.print(f"machine: {machine['processor']}, {machine['device']}{gpu}, "
                  f"torch {machine['torch']}, {machine['threads']} thread(s); store {machine['store_mb']:.0f} MiB, "
                  f"peak host RSS {machine['peak_host_rss_mb']:.0f} MiB", markup=False)
    if json_out:
        write_json(json_out, results, machine)
        console.print(f"wrote {json_out}", markup=False)


@app.command()
def reproduce(
    grid: Annotated[list[Path] | None, typer.Option(help="Grid file(s) (default: grids/*.toml, in order).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for the regenerated tables and figures.")] = Path("docs"),
    runs: Annotated[bool, typer.Option(help="Run the grids (--no-runs: only regenerate from the store).")] = True,
) -> None:
    """The main job: the README's runs (stored ones are skipped), then Tables I-IV and Figs. 6-7 from the store."""
    from bench.cli_report import draw_figures, load_evaluation, tables
    from bench.evaluation import DEFAULT
    from bench.figures import FIGURES, choose_method, complete_methods
    from bench.sweep import load_grid, run_spec, write_failures

    settings = _settings()
    grids = grid or sorted((settings.root / "grids").glob("*.toml"))
    if runs:
        for g in grids:
            console.print(f"[bold]grid {escape(g.name)}[/]")
            spec = load_grid(g)
            spec.workers = workers
            tally = run_spec(settings, spec, lambda line: console.print(line, markup=False))
            failures = write_failures(settings, tally.failures)
            if failures:
                raise BenchError(f"grid {g.name}: {tally.summary()}; see {failures}")
    out = out if out.is_absolute() else settings.root / out
    tables(table="all", protocol="both", format_="markdown", out=out / "tables", compare_paper=True, results=None,
           metric=None, variant="default", bootstrap=1000)
    _, ev = load_evaluation(None)
    if ev.empty:
        return
    # Figs. 6-7 for the default method (CCL) and for every method stored on all five cohorts
    names = list(dict.fromkeys([choose_method(ev, "best-val"), *complete_methods(ev, "best-val")]))
    draw_figures(ev, names, FIGURES, out / "figures", fmt="png", protocol="best-val", ttest="uncensored",
                 variant=DEFAULT, epoch_methods=None)


def _register_reporting() -> None:
    from bench import cli_methods, cli_report, cli_sweep

    cli_report.register(app, results_app)
    cli_methods.register(app)
    cli_sweep.register(app, results_app)


_register_reporting()


def main() -> None:
    """Console entry point: run the app; user errors print one line and exit 2."""
    try:
        sys.exit(app(standalone_mode=False) or 0)
    except BenchError as exc:
        # Text, not markup: the message quotes user input ('[/]', '[bold]x') verbatim
        err_console.print(Text.assemble(("error:", "red"), f" {exc}"), soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; completed folds are stored, an unfinished fold resumes from its checkpoint")
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code)
    except Exception as exc:
        # usage errors of the bundled click (typer ships its own copy, so match by interface)
        if callable(getattr(exc, "show", None)) and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
