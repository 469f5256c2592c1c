"""CLI commands that read the prediction store: ``bench reproduce``, ``bench tables``, ``bench figures``,
``bench results import``; each a thin layer over :mod:`bench.report` and :mod:`bench.store`.

Registered on the main app by :func:`register`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bench._core.errors import BenchError
from bench.cli.common import console, load_settings

if TYPE_CHECKING:
    from bench._core.config import Settings
    from bench.report.evaluation import Evaluation


#: ``--splits`` and ``--features`` of every command that reads the store (one split family, one feature store).
SPLITS_HELP = "fixed (default) or site: report the runs on the site-preserved splits (bench data site-splits)."
FEATURES_HELP = ("Report the runs on this feature store (a store name; default: the default synthetic store); "
                 "genomics-only runs are in every store's view.")


def load_evaluation(results: Path | None, splits: str | None = None, features: str | None = None
                    ) -> tuple[Settings, Evaluation]:
    """The project's settings and its store as every report reads it (:func:`bench.report.evaluation.open_store`),
    restricted to one split family and feature store when ``splits``/``features`` say so."""
    from bench.report.evaluation import open_store

    settings = load_settings()
    return settings, open_store(results, settings, splits=splits, features=features)


def with_axes(commands: list[str], ev: Evaluation) -> list[str]:
    """The ``bench run`` commands of a restricted view with its ``--splits``/``--features`` options appended."""
    from bench.report.evaluation import axis_options

    tail = axis_options(ev.axes)
    return [c + tail if tail and c.startswith("bench run ") else c for c in commands]


def _warn_left_out(settings: Settings, ev: Evaluation) -> None:
    from bench.report.evaluation import left_out

    for line in left_out(settings, ev):
        sys.stderr.write(line + "\n")


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
        "--metric", help="cindex (default), uno, antolini, ibs, ibs_km, ibs_skill, auc, brier_12, brier_36, "
                         "brier_60, dcal_p, pooled or all; repeatable (Tables I, III, IV).")] = None,
    style: Annotated[str, typer.Option(help="default, or paper: each table in the CCL paper's layout (Methods | "
                                            "Modality, a Datasets header, Overall, p-values as a×10^-b).")] = "default",
    variant: Annotated[str, typer.Option(help="Variant of Tables I-II, e.g. epochs=2 (default: default).")] = "default",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for --metric pooled.")] = 1000,
    permutations: Annotated[int, typer.Option(help="Permutations of Table II's perm p (at least 1000).")] = 1000,
    splits: Annotated[str, typer.Option(help=SPLITS_HELP)] = "fixed",
    features: Annotated[str | None, typer.Option(help=FEATURES_HELP)] = None,
) -> None:
    """Tables I-IV of the CCL paper, computed from the prediction store only."""
    from bench.metrics.horizon import MIN_PERMUTATIONS
    from bench.report.evaluation import METRICS, check_metric, parse_variant
    from bench.report.render import check_format, check_out_folder, check_style, render, write_tables
    from bench.report.tables import TABLES, build_tables, empty_store_message, project_options

    if table not in (*TABLES, "all"):
        raise BenchError(f"bad --table '{table}': choose 1, 2, 3, 4 or all")
    fmt = check_format(format_)
    metrics = list(METRICS) if "all" in (metric or []) else [check_metric(m).name for m in (metric or ["cindex"])]
    check_style(style)
    if bootstrap < 100:
        raise BenchError(f"bad --bootstrap {bootstrap}: use at least 100 resamples")
    if permutations < MIN_PERMUTATIONS:
        raise BenchError(f"bad --permutations {permutations}: use at least {MIN_PERMUTATIONS}")
    protocols = _protocols(protocol)
    if out is not None:
        check_out_folder(Path(out))
    settings, ev = load_evaluation(results, splits, features)
    _warn_left_out(settings, ev)
    if ev.empty:
        _echo(empty_store_message(ev.results))
        return
    opts = project_options(settings, compare_paper=compare_paper, n_resamples=bootstrap, style=style,
                           permutations=permutations)
    built = build_tables(ev, table, protocols, metrics, opts, parse_variant(variant))
    for t in built:
        t.commands = with_axes(t.commands, ev)
        if ev.axes:  # a view of one split family / store: said in the title and the file name
            t.title += " — " + ", ".join(f"{k}={v}" for k, v in ev.axes.items())
            t.name += "".join(f"_{k}-{v}" for k, v in ev.axes.items())
    if out is not None:
        write_tables(built, Path(out), fmt, _echo)
        return
    color = fmt == "terminal" and sys.stdout.isatty()
    for i, t in enumerate(built):
        _echo(("\n" if i else "") + render(t, fmt, color=color))


def figures(
    fig: Annotated[str, typer.Option("--fig", help="6, 7, epochs, calibration or all.")] = "all",
    format_: Annotated[str, typer.Option("--format", "-f", help="png, pdf or both (side by side).")
                       ] = "both",
    out: Annotated[Path, typer.Option(help="Folder for the figures.")] = Path("figures"),
    method: Annotated[str | None, typer.Option(
        "--method", help="Method of Fig. 6/7 (default: CCL if stored, else the best stored method); "
                         "limits the per-epoch plots too; the calibration figures are of this method.")] = None,
    protocol: Annotated[str, typer.Option(help="Epoch rule of Figs. 6-7, calibration: best-val or last.")] = "best-val",
    ttest: Annotated[str, typer.Option(help="Fig. 7 compares survival months of 'uncensored' patients "
                                            "(default) or of 'all' patients.")] = "uncensored",
    variant: Annotated[str, typer.Option(help="Variant to plot (default: default).")] = "default",
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
    splits: Annotated[str, typer.Option(help=SPLITS_HELP)] = "fixed",
    features: Annotated[str | None, typer.Option(help=FEATURES_HELP)] = None,
) -> None:
    """Fig. 6 (Kaplan-Meier), Fig. 7 (t-test of risk groups), per-epoch val C-index and calibration plots."""
    from bench.report.evaluation import check_protocol, parse_variant
    from bench.report.figures import FIGURES, FORMATS, choose_method, draw_figures
    from bench.report.render import check_out_folder
    from bench.report.tables import empty_store_message

    if fig not in (*FIGURES, "all"):
        raise BenchError(f"bad --fig '{fig}': choose 6, 7, epochs, calibration or all")
    if format_ not in (*FORMATS, "both"):
        raise BenchError(f"bad --format '{format_}': choose png, pdf or both")
    check_protocol(protocol)
    check_out_folder(Path(out))
    settings, ev = load_evaluation(results, splits, features)
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
                 epoch_methods=[name] if method else None, log=_echo)


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
    from bench.report.reproduce import reproduce as run_reproduce

    run_reproduce(load_settings(), grids=grid, workers=workers, out=out, runs=runs, log=_echo,
                  progress=lambda line: console.print(line, markup=False),
                  heading=lambda text: console.print(f"[bold]{escape(text)}[/]"))


def register(app: typer.Typer, results_app: typer.Typer) -> None:
    """Add the reporting commands to ``app`` and the ``results`` sub-app."""
    app.command("reproduce")(reproduce)
    app.command("tables")(tables)
    app.command("figures")(figures)
    results_app.command("import")(results_import)
