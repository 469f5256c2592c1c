"""``bench methods`` and ``bench cohorts``: what is registered and what is bundled."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from tabulate import tabulate

from bench.cli.common import console, load_settings


def methods(
    details: Annotated[bool, typer.Option("--details", help="Also show notes and parameter counts.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the method pages as Markdown.")] = False,
) -> None:
    """List the registered methods."""
    from bench.api.registry import all_methods

    if markdown:
        from bench.tools.params import method_pages

        typer.echo(method_pages(load_settings()))
        return

    rows = []
    for m in all_methods():
        row = [m.name, m.title, m.modality, m.selection, "yes" if m.reimplementation else "", m.source,
               m.official_code or "—"]
        rows.append(row)
    headers = ["name", "title", "modality", "selection", "inferred", "source", "official code"]
    console.print(tabulate(rows, headers=headers), markup=False)
    if details:
        from bench.tools.params import parameter_counts

        settings = load_settings()
        for m in all_methods():
            counts = parameter_counts(settings, m)
            console.print(f"\n[bold]{escape(m.title)}[/] ({escape(m.name)}) — {escape(m.paper)}")
            console.print(f"  parameters: {counts}", markup=False)
            console.print(f"  defaults: train {dict(m.train) or 'bench.toml [train]'}; model {dict(m.hparams)}",
                          markup=False)
            if m.variants:
                console.print(f"  variants: {', '.join(m.variants)}", markup=False)
            console.print(f"  notes: {m.notes}", markup=False)


def cohorts() -> None:
    """List the bundled cohorts: patients, slides, censoring, genomic groups and feature stores."""
    from bench.data.cohort import GROUP_NAMES, available_cohorts, load_cohort, short_name, table_builds
    from bench.data.features import list_stores

    settings = load_settings()
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


def register(app: typer.Typer) -> None:
    """Add ``methods`` and ``cohorts`` to ``app``."""
    app.command("methods")(methods)
    app.command("cohorts")(cohorts)
