"""CLI commands that turn the prediction store into verdicts: ``bench compare`` and ``bench claims``.

Registered on the main app by :func:`register`. Both read the store only; nothing retrains.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench._core.errors import BenchError
from bench.cli.common import load_settings
from bench.cli.report import FEATURES_HELP, SPLITS_HELP

FORMATS = ("text", "markdown", "csv", "json", "latex")
_RENDER = {"text": "terminal", "markdown": "markdown", "csv": "csv", "latex": "latex"}


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BenchError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    return fmt


def _side(text: str, variant: str | None, cohort: str = "all"):
    """``method``, ``method:key=value,...`` or ``method:NAMED`` (one of the method's named variants, e.g.
    ``snn:ccl-protocol``) as a comparison side (the registry name or a stored name)."""
    from bench.report.compare import Side
    from bench.report.evaluation import normalize_overrides, parse_variant

    name, _, inline = text.partition(":")
    name = name.strip().lower()
    if not name:
        raise BenchError(f"empty method name in '{text}'; write METHOD or METHOD:key=value")
    given = (inline or variant or "").strip()
    if given and "=" not in given and given != "default":
        from bench._core.config import resolve_run_config
        from bench.api.registry import get_method

        info = get_method(name)
        if given not in info.variants:
            raise BenchError(f"unknown variant '{given}' of {name}; its named variants: "
                             f"{', '.join(info.variants) or 'none'} (or write key=value,...)")
        # the overrides a run of the named variant records (values equal to the defaults drop out)
        co = "" if cohort.lower() == "all" else cohort.lower()
        co = co if not co or co.startswith("tcga_") else f"tcga_{co}"
        overrides = resolve_run_config(load_settings(), info, co, info.variants[given])[1]
        return Side(name, normalize_overrides(overrides), named=given)
    return Side(name, parse_variant(given or None))


def compare(
    method_a: Annotated[str, typer.Argument(
        help="Method A (optionally METHOD:key=value,... or METHOD:NAMED-VARIANT, e.g. snn:ccl-protocol).")],
    method_b: Annotated[str, typer.Argument(help="Method B, the same way.")],
    cohort: Annotated[str, typer.Option(help="A cohort (UCEC, tcga_ucec) or 'all' (every cohort both have).")] = "all",
    protocol: Annotated[str, typer.Option(help="Fold-score protocol: best-val, last or inner.")] = "best-val",
    variant: Annotated[str | None, typer.Option(help="Variant of both sides when not given inline.")] = None,
    format_: Annotated[str, typer.Option("--format", "-f", help="text, markdown, csv, json or latex.")] = "text",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples per fold (>= 1000 recommended).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
    splits: Annotated[str, typer.Option(help=SPLITS_HELP)] = "fixed",
    features: Annotated[str | None, typer.Option(help=FEATURES_HELP)] = None,
) -> None:
    """Is A better than B beyond fold and seed noise? Paired tests on the runs both have (store only)."""
    from bench.cli.report import _warn_left_out, load_evaluation
    from bench.data.cohort import canonical_name, short_name
    from bench.report.compare import compare as run_compare
    from bench.report.compare import comparison_table
    from bench.report.evaluation import check_protocol
    from bench.report.render import render

    fmt = _check_format(format_)
    check_protocol(protocol)
    if resamples < 1:
        raise BenchError(f"--resamples {resamples}: give at least 1 (1000 or more for a 95% interval)")
    a, b = _side(method_a, variant, cohort), _side(method_b, variant, cohort)
    settings, ev = load_evaluation(results, splits, features)
    _warn_left_out(settings, ev)
    for side in (a, b):
        if side.method not in ev.methods():
            stored = ", ".join(ev.methods()) or "none"
            raise BenchError(f"nothing stored for method '{side.method}'; stored methods: {stored}")
    if cohort.strip().lower() == "all":
        cohorts = [c for c in ev.cohorts() if ev.cell(a.method, c, a.overrides, protocol) is not None
                   and ev.cell(b.method, c, b.overrides, protocol) is not None]
        if not cohorts:
            raise BenchError(f"{a.label} and {b.label} share no cohort in the store under protocol {protocol}; "
                             "run both on one cohort first (bench run --method M --cohort C)")
    else:
        cohorts = [canonical_name(cohort)]
    comps = [run_compare(ev, a, b, c, protocol=protocol, n_resamples=resamples, seed=seed,
                         paper_gap=_paper_gap(a, b, short_name(c))) for c in cohorts]
    if fmt == "json":
        sys.stdout.write(json.dumps([c.record() for c in comps], indent=2) + "\n")
        return
    sys.stdout.write(render(comparison_table(comps), _RENDER[fmt]).rstrip("\n") + "\n")


def _paper_gap(a, b, cohort_short: str) -> float | None:
    """The CCL paper's Table I gap A − B, when both are paper rows with their default settings."""
    from bench.api import all_methods, paper_table
    from bench.report.compare import paper_gap

    if a.overrides or b.overrides:
        return None
    titles = {m.name: m.title for m in all_methods()}
    return paper_gap(paper_table("table1_cindex"), titles.get(a.method), titles.get(b.method), cohort_short)


def claims(
    protocol: Annotated[str, typer.Option(help="Fold-score protocol: best-val, last or inner.")] = "best-val",
    table: Annotated[str, typer.Option("--table", "-t", help="Which tables' claims: I, II, III, IV or all.")] = "all",
    format_: Annotated[str, typer.Option("--format", "-f", help="text, markdown, csv, json or latex.")] = "text",
    include_synthetic: Annotated[bool, typer.Option(
        "--include-synthetic", help="Count claims whose evidence uses synthetic pathology.")] = False,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples per fold of each comparison.")] = 1000,
    results: Annotated[Path | None, typer.Option(help="Prediction store folder (default: results/).")] = None,
    splits: Annotated[str, typer.Option(help=SPLITS_HELP)] = "fixed",
    features: Annotated[str | None, typer.Option(help=FEATURES_HELP)] = None,
) -> None:
    """The CCL paper's claims checked one by one on the store: holds, not distinguishable, reversed, not run."""
    from bench.cli.report import _warn_left_out, load_evaluation, with_axes
    from bench.report.claims import check_claims, claims_table
    from bench.report.evaluation import check_protocol
    from bench.report.render import render

    fmt = _check_format(format_)
    check_protocol(protocol)
    wanted = ("I", "II", "III", "IV") if table.strip().lower() == "all" else tuple(
        t.strip().upper() for t in table.split(","))
    bad = [t for t in wanted if t not in ("I", "II", "III", "IV")]
    if bad:
        raise BenchError(f"unknown table '{bad[0]}'; choose I, II, III, IV or all")
    settings, ev = load_evaluation(results, splits, features)
    _warn_left_out(settings, ev)
    found = check_claims(ev, protocol, n_resamples=resamples, tables=wanted)
    for c in found:  # a restricted view's missing runs are made with its --splits/--features
        c.commands = with_axes(c.commands, ev)
    if fmt == "json":
        sys.stdout.write(json.dumps([c.record() for c in found], indent=2) + "\n")
        return
    sys.stdout.write(render(claims_table(found, protocol, include_synthetic), _RENDER[fmt]).rstrip("\n") + "\n")


def register(app: typer.Typer) -> None:
    """Add ``compare`` and ``claims`` to the main app."""
    app.command("compare")(compare)
    app.command("claims")(claims)
