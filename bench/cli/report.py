"""CLI commands that read the prediction store: ``bench tables``, ``bench figures``, ``bench results import``.

Registered on the main app by :func:`register`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from tabulate import tabulate

from bench._core.errors import BenchError
from bench.cli.common import console, load_settings

if TYPE_CHECKING:
    from bench._core.config import Settings
    from bench.report.evaluation import Evaluation, Overrides


def load_evaluation(results: Path | None) -> tuple[Settings, Evaluation]:
    """The runs that verify in the store under ``results`` (default: bench.toml's), expecting each cohort's
    number of split files; see :func:`left_out` for the rest."""
    from bench.report.evaluation import DEFAULT_FOLDS, Evaluation
    from bench.store.verify import store_root

    settings = load_settings()
    folder = store_root(settings, results)

    def expected(cohort: str) -> int:
        n = len(list((settings.splits_dir / cohort).glob("splits_*.csv")))
        return n or DEFAULT_FOLDS

    return settings, Evaluation(folder, expected, settings)


def left_out(settings: Settings, ev: Evaluation) -> list[str]:
    """One line per stored run that does not verify (and the command that redoes it), and per folder ignored."""
    from bench.store.verify import ignored_note

    def shown(p: Path) -> str:
        return str(p.relative_to(settings.root) if p.is_relative_to(settings.root) else p)

    lines = [f"warning: left out {shown(p.path)} ({p.kind}: {p.detail})" + (f"; redo with: {p.command}"
                                                                           if p.command else "")
             for p in ev.excluded]
    return lines + [ignored_note(p, shown(p)) for p in ev.ignored]


def _warn_left_out(settings: Settings, ev: Evaluation) -> None:
    for line in left_out(settings, ev):
        sys.stderr.write(line + "\n")


def check_out_folder(out: Path) -> Path:
    """``--out`` as a folder to write into, or an error if it (or a folder above it) is a file."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"is inside {p}, which is a file"
                raise BenchError(f"--out {out} {what}, not a folder; give a folder to write into (it is created if "
                                 "missing)")
            break
    return out


def _echo(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _protocols(protocol: str) -> list[str]:
    from bench.report.evaluation import check_protocol

    if protocol == "all":
        return ["best-val", "last", "inner"]
    return ["best-val", "last"] if protocol == "both" else [check_protocol(protocol)]


def tables(
    table: Annotated[str, typer.Option("--table", "-t", help="1, 2, 3, 4 or all.")] = "all",
    protocol: Annotated[str, typer.Option(help="best-val, last, inner, both (best-val and last) or all.")] = "best-val",
    format_: Annotated[str, typer.Option("--format", "-f", help="terminal, markdown, latex or csv.")] = "terminal",
    out: Annotated[Path | None, typer.Option(help="Write one file per table into this folder.")] = None,
    compare_paper: Annotated[bool, typer.Option("--compare-paper",
                                                help="Paper value, difference and selection optimism.")] = False,
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="cindex (default), uno, ibs, ibs_km, ibs_skill, auc or pooled; repeatable (Tables I, III, "
                         "IV).")] = None,
    variant: Annotated[str, typer.Option(help="Variant of Tables I-II, e.g. epochs=2 (default: default).")] = "default",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for --metric pooled.")] = 1000,
) -> None:
    """Tables I-IV of the CCL paper, computed from the prediction store only."""
    from bench._core.files import write_text
    from bench.report.evaluation import check_metric, parse_variant
    from bench.report.render import EXTENSIONS, check_format, render
    from bench.report.tables import TABLES, Options, build_tables, empty_store_message

    if table not in (*TABLES, "all"):
        raise BenchError(f"bad --table '{table}': choose 1, 2, 3, 4 or all")
    fmt = check_format(format_)
    metrics = [check_metric(m).name for m in (metric or ["cindex"])]
    if bootstrap < 100:
        raise BenchError(f"bad --bootstrap {bootstrap}: use at least 100 resamples")
    protocols = _protocols(protocol)
    if out is not None:
        check_out_folder(Path(out))
    settings, ev = load_evaluation(results)
    _warn_left_out(settings, ev)
    if ev.empty:
        _echo(empty_store_message(ev.results))
        return
    from bench.data.cohort import available_cohorts

    opts = Options(compare_paper=compare_paper, default_seed=settings["run"]["seed"], n_resamples=bootstrap,
                   runnable=tuple(available_cohorts(settings)))
    built = build_tables(ev, table, protocols, metrics, opts, parse_variant(variant))
    color = fmt == "terminal" and out is None and sys.stdout.isatty()
    for i, t in enumerate(built):
        text = render(t, fmt, color=color)
        if out is not None:
            dest = Path(out) / f"{t.name}.{EXTENSIONS[fmt]}"
            write_text(dest, text)
            _echo(f"wrote {dest}")
        else:
            _echo(("\n" if i else "") + text)


def figures(
    fig: Annotated[str, typer.Option("--fig", help="6, 7, epochs or all.")] = "all",
    format_: Annotated[str, typer.Option("--format", "-f", help="png or pdf.")] = "png",
    out: Annotated[Path, typer.Option(help="Folder for the figures.")] = Path("figures"),
    method: Annotated[str | None, typer.Option(
        "--method", help="Method of Fig. 6/7 (default: CCL if stored, else the best stored method); "
                         "limits the per-epoch plots too.")] = None,
    protocol: Annotated[str, typer.Option(help="Epoch rule of Fig. 6/7: best-val or last.")] = "best-val",
    ttest: Annotated[str, typer.Option(help="Fig. 7 compares survival months of 'uncensored' patients "
                                            "(default) or of 'all' patients.")] = "uncensored",
    variant: Annotated[str, typer.Option(help="Variant to plot (default: default).")] = "default",
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
) -> None:
    """Fig. 6 (Kaplan-Meier), Fig. 7 (t-test of risk groups) and per-epoch val C-index plots."""
    from bench.report.evaluation import check_protocol, parse_variant
    from bench.report.figures import FIGURES, FORMATS, choose_method
    from bench.report.tables import empty_store_message

    if fig not in (*FIGURES, "all"):
        raise BenchError(f"bad --fig '{fig}': choose 6, 7, epochs or all")
    if format_ not in FORMATS:
        raise BenchError(f"bad --format '{format_}': choose png or pdf")
    check_protocol(protocol)
    check_out_folder(Path(out))
    settings, ev = load_evaluation(results)
    _warn_left_out(settings, ev)
    if ev.empty:
        _echo(empty_store_message(ev.results))
        return
    ov = parse_variant(variant)
    name = method.strip().lower() if method else choose_method(ev, protocol, ov)
    if name not in ev.methods():
        raise BenchError(f"no stored runs of method '{name}' in {ev.results}; stored: {', '.join(ev.methods())}")
    wanted = FIGURES if fig == "all" else (fig,)
    draw_figures(ev, [name], wanted, Path(out), fmt=format_, protocol=protocol, ttest=ttest, variant=ov,
                 epoch_methods=[name] if method else None)


def draw_figures(ev: Evaluation, names: list[str], wanted: tuple[str, ...], out: Path, *, fmt: str, protocol: str,
                 ttest: str, variant: Overrides, epoch_methods: list[str] | None) -> None:
    """Figs. 6 and 7 for each of ``names`` and the per-epoch plots (of ``epoch_methods``, default all), from ``ev``."""
    from bench.report.figures import epoch_figures, km_figure, ttest_figure
    from bench.report.tables import format_p

    for name in names:
        if "6" in wanted:
            path, stats = km_figure(ev, name, out / f"fig6_km_{name}.{fmt}", protocol=protocol, variant=variant,
                                    fmt=fmt)
            _echo(f"wrote {path}")
            _echo(tabulate([[s["cohort"], s["n_high"], s["n_low"], format_p(s["p"])] for s in stats],
                           headers=["cohort", "high risk", "low risk", "log-rank p"], disable_numparse=True))
        if "7" in wanted:
            path, stats = ttest_figure(ev, name, out / f"fig7_ttest_{name}.{fmt}", protocol=protocol,
                                       variant=variant, fmt=fmt, on=ttest)
            _echo(f"wrote {path} (Welch's t-test of survival months, {ttest} patients, high vs low risk)")
            _echo(tabulate([[s["cohort"], s["n_high"], s["n_low"], f"{s['t']:.3f}", format_p(s["p"])]
                            for s in stats], headers=["cohort", "high", "low", "t", "p"], disable_numparse=True))
    if "epochs" in wanted:
        paths = epoch_figures(ev, out, methods=epoch_methods, variant=variant, fmt=fmt)
        for p in paths:
            _echo(f"wrote {p}")
        if not paths:
            _echo("no per-epoch plots: every stored run has a single epoch")


def results_import(
    file: Annotated[Path, typer.Argument(help="CSV with case_id, fold, risk, survival_months, censorship.")],
    method: Annotated[str, typer.Option("--method", "-m", help="Method name to store the runs under.")],
    cohort: Annotated[str, typer.Option("--cohort", "-c", help="Cohort the predictions are for.")],
    variant: Annotated[str | None, typer.Option(help="default, key=value pairs (k=9) or a named variant.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed to file the runs under (default from bench.toml).")] = None,
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
    genomics_build: Annotated[str | None, typer.Option(help="Genomics build the predictions used (recorded).")] = None,
    pathology: Annotated[str, typer.Option(help="real, synthetic, none or unknown (recorded).")] = "unknown",
    title: Annotated[str | None, typer.Option(help="Table title of an unregistered method.")] = None,
    modality: Annotated[str | None, typer.Option(help="Modality of an unregistered method.")] = None,
    bin_edges: Annotated[str | None, typer.Option(help="Comma-separated n_bins+1 time-bin edges of surv_k.")] = None,
    drop_unmatched: Annotated[bool, typer.Option("--drop-unmatched",
                                                 help="Leave out rows that do not match (listed in the manifests).")
                              ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace runs already stored under this key.")] = False,
) -> None:
    """Store predictions produced elsewhere (checked against the cohort's splits) so tables include them."""
    from bench.store.results_import import import_predictions

    edges = None
    if bin_edges:
        try:
            edges = [float(x) for x in bin_edges.split(",")]
        except ValueError:
            raise BenchError(f"bad --bin-edges '{bin_edges}': comma-separated numbers") from None
    rep = import_predictions(load_settings(), file, method=method, cohort=cohort, variant=variant, seed=seed,
                             results=results, drop_unmatched=drop_unmatched, force=force,
                             genomics_build=genomics_build, pathology=pathology, title=title, modality=modality,
                             bin_edges=edges)
    _echo(f"imported {sum(rep.folds.values())} rows of {file} as {rep.method} ({rep.variant}) on {rep.cohort}, "
          f"seed {rep.seed}: folds {', '.join(f'{k} ({n} rows)' for k, n in rep.folds.items())}")
    if rep.replaced:
        _echo(f"replaced the runs stored before under this key (folds {', '.join(map(str, rep.replaced))})")
    if rep.skipped_other_cohorts:
        _echo(f"skipped {rep.skipped_other_cohorts} rows of other cohorts")
    if rep.dropped:
        _echo(f"dropped {len(rep.dropped)} unmatched row(s), e.g. {rep.dropped[0]}")


def reproduce(
    grid: Annotated[list[Path] | None, typer.Option(help="Grid file(s) (default: grids/*.toml, in order).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for the regenerated tables and figures.")] = Path("docs"),
    runs: Annotated[bool, typer.Option(help="Run the grids (--no-runs: only regenerate from the store).")] = True,
) -> None:
    """The main job: the README's runs (stored ones are skipped), then Tables I-IV and Figs. 6-7 from the store."""
    from bench.report.evaluation import DEFAULT
    from bench.report.figures import FIGURES, choose_method, complete_methods
    from bench.train.sweep import load_grid, run_sweep, write_failures

    settings = load_settings()
    grids = grid or sorted((settings.root / "grids").glob("*.toml"))
    if runs:
        for g in grids:
            console.print(f"[bold]grid {escape(g.name)}[/]")
            spec = load_grid(g)
            spec.workers = workers
            tally = run_sweep(settings, spec, lambda line: console.print(line, markup=False))
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


def register(app: typer.Typer, results_app: typer.Typer) -> None:
    """Add the reporting commands to ``app`` and the ``results`` sub-app."""
    app.command("reproduce")(reproduce)
    app.command("tables")(tables)
    app.command("figures")(figures)
    results_app.command("import")(results_import)
