"""``bench data``: a cohort's feature stores (``import``, ``synth``), a feature folder's ``coverage``, its inner
validation splits (``inner-splits``), its audit (``audit``) and site-preserved splits (``site-splits``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench._core.errors import BenchError
from bench.cli.common import console, load_settings

SLIDES_HELP = "Slides to import: all, or dx (diagnostic slides only, -DX in the name; recorded)."
ENCODER_HELP = ("Encoder folder to read where the folder holds several, and the name recorded (default: the "
                "folder's name).")


def data_import(
    cohort: Annotated[str, typer.Option("--cohort", "-c", help="Cohort the slides belong to.")],
    features: Annotated[Path, typer.Option("--features", help="Folder of CLAM .pt or CLAM/TRIDENT .h5 files "
                                           "(flat, CLAM, <encoder>/ or TRIDENT layout).")],
    name: Annotated[str | None, typer.Option(help="Store name (default: the encoder name).")] = None,
    encoder: Annotated[str | None, typer.Option(help=ENCODER_HELP + " Else resnet50.")] = None,
    dim: Annotated[int | None, typer.Option(help="Expected feature dimension (checked).")] = None,
    dtype: Annotated[str, typer.Option(help="Stored dtype: float16 or float32.")] = "float16",
    allow_missing_slides: Annotated[bool, typer.Option("--allow-missing-slides",
                                                       help="Drop patients lacking a slide (recorded).")] = False,
    slides: Annotated[str, typer.Option("--slides", help=SLIDES_HELP)] = "all",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing store of that name.")] = False,
) -> None:
    """Convert a folder of per-slide features into the cohort's contiguous feature store (prints its coverage first)."""
    from bench.data.cohort import load_cohort
    from bench.data.features import check_store_name, cohort_store_dir
    from bench.data.features.importer import feature_coverage, import_features
    from bench.data.features.layouts import check_slides
    from bench.report.coverage import coverage_table
    from bench.report.render import render

    settings = load_settings()
    co = load_cohort(settings, cohort)
    if dtype not in ("float16", "float32"):
        raise BenchError(f"bad --dtype '{dtype}': float16 or float32")
    check_slides(slides)
    if name is not None:
        check_store_name(name, "--name")
    cov = feature_coverage(co, features, encoder=encoder, slides=slides, expected_dim=dim)
    # the encoder folder's name where there is one (--encoder may name the folder by its path), else --encoder
    recorded = cov.encoder or encoder or "resnet50"
    store_name = check_store_name(name if name is not None else recorded, "--name" if name is not None else "--encoder")
    if store_name.startswith("synthetic"):
        raise BenchError("store names starting with 'synthetic' are reserved for synthetic stores; pick another --name")
    dest = cohort_store_dir(settings, co.name) / f"{store_name}.h5"
    if dest.exists() and not force:
        raise BenchError(f"{dest} exists; pass --force to replace it or choose another --name")
    if cov.match.files:  # (with no file matched, the import's error says why; no empty table first)
        console.print(render(coverage_table(cov), "terminal").rstrip("\n"), markup=False)
    info = import_features(co, features, dest, encoder=recorded, allow_missing=allow_missing_slides,
                           expected_dim=dim, dtype=dtype, slides=slides, coverage=cov,
                           notify=lambda line: console.print(line, style="yellow", markup=False))
    console.print(f"wrote {info.path}: {info.n_slides} slides, {info.n_patches} patches x {info.dim} ({info.dtype}), "
                  f"real features from {features}")
    if info.dropped_patients:
        shown = ", ".join(info.dropped_patients[:10]) + (" ..." if len(info.dropped_patients) > 10 else "")
        console.print(f"[yellow]dropped {len(info.dropped_patients)} patient(s) with missing slides (recorded in the "
                      f"store): {shown}[/]")


def data_coverage(
    features: Annotated[Path, typer.Option("--features", help="Folder of feature files, in any supported layout.")],
    cohort: Annotated[str, typer.Option("--cohort", "-c", help="Cohort(s), comma-separated, or 'all'.")] = "all",
    encoder: Annotated[str | None, typer.Option(help="Encoder folder to read where the folder holds several.")] = None,
    slides: Annotated[str, typer.Option("--slides", help="Slides to count: all, or dx (diagnostic only).")] = "all",
    shown: Annotated[int, typer.Option(help="Missing patients/slides and unmatched files named (JSON: all).")] = 5,
    format_: Annotated[str, typer.Option("--format", "-f", help="text, markdown or json.")] = "text",
) -> None:
    """Which split patients and slides a feature folder covers, per cohort and fold, from file headers only."""
    import json
    import sys

    from bench.data.cohort import load_cohort, short_name
    from bench.data.features.importer import feature_coverage
    from bench.data.features.layouts import check_slides, foreign_files_message
    from bench.report.coverage import coverage_table
    from bench.report.render import render

    if format_ not in ("text", "markdown", "json"):
        raise BenchError(f"unknown format '{format_}'; choose text, markdown or json")
    check_slides(slides)
    if shown < 0:
        raise BenchError(f"bad --shown {shown}: how many missing patients, slides and files to name (0 or more)")
    settings = load_settings()
    names = _cohort_names(settings, cohort)
    covs = [feature_coverage(load_cohort(settings, n), features, encoder=encoder, slides=slides) for n in names]
    if not any(c.match.files for c in covs) and covs and covs[0].layout.files:
        if len(covs) == 1:
            raise BenchError(foreign_files_message(covs[0].cohort, covs[0].layout.folder, covs[0].layout.files))
        raise BenchError(f"0 of {covs[0].match.n_files} feature files in {covs[0].layout.folder} match a slide of "
                         f"any cohort ({', '.join(short_name(n) for n in names)}); name the files by slide id "
                         "(TCGA-XX-XXXX-01Z-00-DX1[.<UUID>].h5)")
    if len(covs) > 1:  # a file is unmatched when it matches no slide of any cohort shown
        unmatched = set.intersection(*(set(c.match.unmatched) for c in covs))
        for c in covs:
            c.match.unmatched = sorted(unmatched)
    if format_ == "json":
        sys.stdout.write(json.dumps([c.record() for c in covs], indent=2) + "\n")
    else:
        fmt = "terminal" if format_ == "text" else "markdown"
        sys.stdout.write("\n\n".join(render(coverage_table(c, shown), fmt).rstrip("\n") for c in covs) + "\n")


def data_synth(
    cohort: Annotated[str, typer.Option("--cohort", "-c", help="Cohort whose slide ids to use.")],
    patches: Annotated[int | None, typer.Option(help="Mean patches per slide.")] = None,
    signal: Annotated[float | None, typer.Option(help="Survival signal strength (0 = none).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    dim: Annotated[int | None, typer.Option(help="Feature dimension.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild if it exists.")] = False,
) -> None:
    """Write a SYNTHETIC feature store for the cohort's real slide ids (labelled synthetic everywhere)."""
    from bench._core.config import SYNTHETIC_KEYS
    from bench.data.cohort import load_cohort
    from bench.data.features import cohort_store_dir
    from bench.data.features.synthetic import synthesize, synthetic_store_name

    settings = load_settings()
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


def _cohort_names(settings, cohort: str) -> list[str]:
    from bench.data.cohort import available_cohorts, resolve_cohort

    if cohort.strip().lower() == "all":
        return list(available_cohorts(settings))
    return [resolve_cohort(settings, c.strip()) for c in cohort.split(",") if c.strip()]


def data_inner_splits(
    cohort: Annotated[str, typer.Option(help="Cohort(s), comma-separated, or 'all'.")] = "all",
    fraction: Annotated[float, typer.Option(help="Share of each training fold held out as its inner split.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the draw.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace existing inner splits that differ.")] = False,
    splits: Annotated[str, typer.Option(help="Draw them inside the fixed splits (default) or the site splits "
                                             "(splits/<cohort>/site/inner_<k>.csv).")] = "fixed",
) -> None:
    """Draw the inner validation splits (splits/<cohort>/inner_<k>.csv) that `--set selection=inner` trains with."""
    from bench.data.cohort import load_cohort, short_name
    from bench.data.inner_splits import write_inner_splits

    settings = load_settings()
    for name in _cohort_names(settings, cohort):
        out = write_inner_splits(load_cohort(settings, name, splits=splits), fraction=fraction, seed=seed,
                                 force=force)
        states = ", ".join(f"{p.name} {s}" for p, s in out)
        console.print(f"{short_name(name)}: {states} (fraction {fraction}, seed {seed})")


def data_audit(
    cohort: Annotated[str, typer.Option(help="Cohort(s), comma-separated, or 'all'.")] = "all",
    format_: Annotated[str, typer.Option("--format", "-f", help="text, markdown or json.")] = "text",
    figure: Annotated[Path | None, typer.Option(help="Also write the audit figure here (.png or .pdf).")] = None,
    splits: Annotated[str, typer.Option(help="Audit the fixed splits (default) or the site splits.")] = "fixed",
) -> None:
    """Audit cohorts and splits: labels per fold, sites shared by train and val, slides, censoring sanity."""
    import json
    import sys

    from bench.data.audit import audit_cohort, genomic_columns_per_build, plot_audit
    from bench.data.cohort import load_cohort
    from bench.report.data_audit import audit_table
    from bench.report.render import render

    if format_ not in ("text", "markdown", "json"):
        raise BenchError(f"unknown format '{format_}'; choose text, markdown or json")
    settings = load_settings()
    audits = []
    for name in _cohort_names(settings, cohort):
        co = load_cohort(settings, name, splits=splits)
        audits.append(audit_cohort(co, builds=genomic_columns_per_build(settings, name)))
    if format_ == "json":
        sys.stdout.write(json.dumps([a.record() for a in audits], indent=2, default=float) + "\n")
    else:
        fmt = "terminal" if format_ == "text" else "markdown"
        sys.stdout.write("\n\n".join(render(audit_table(a), fmt).rstrip("\n") for a in audits) + "\n")
    if figure is not None:
        if figure.suffix.lower() not in (".png", ".pdf"):
            raise BenchError(f"--figure {figure}: give a .png or .pdf file name")
        figure.parent.mkdir(parents=True, exist_ok=True)
        fig = plot_audit(audits)
        tmp = figure.with_name(f".{figure.stem}.tmp{figure.suffix}")
        fig.savefig(tmp, dpi=200)
        tmp.replace(figure)
        console.print(f"wrote {figure}")


def data_site_splits(
    cohort: Annotated[str, typer.Option(help="One cohort, e.g. UCEC.")],
    folds: Annotated[int, typer.Option(help="Number of folds.")] = 5,
    force: Annotated[bool, typer.Option("--force", help="Replace existing site splits.")] = False,
) -> None:
    """Write a site-preserved split (splits/<cohort>/site/splits_<k>.csv): each tissue source site in one fold."""
    from bench.data.audit import site_split_report, site_splits, write_site_splits
    from bench.data.cohort import load_cohort, resolve_cohort, short_name

    settings = load_settings()
    name = resolve_cohort(settings, cohort)
    co = load_cohort(settings, name)
    dest = settings.splits_dir / name / "site"
    if dest.exists() and any(dest.glob("splits_*.csv")) and not force:
        raise BenchError(f"{dest} already holds site splits; pass --force to replace them")
    write_site_splits(dest, co.case_ids, folds)
    rep = site_split_report(co.case_ids, site_splits(co.case_ids, folds))
    console.print(f"{short_name(name)}: wrote {folds} site-preserved folds to {dest} (sizes {rep['fold_sizes']}, "
                  f"sites per fold {rep['sites_per_fold']}, largest site {rep['largest_site']} "
                  f"{rep['largest_site_share']:.0%} of patients)")


def register(data_app: typer.Typer) -> None:
    """Add ``import``, ``coverage``, ``synth``, ``inner-splits``, ``audit`` and ``site-splits`` to ``bench data``."""
    data_app.command("import")(data_import)
    data_app.command("coverage")(data_coverage)
    data_app.command("synth")(data_synth)
    data_app.command("inner-splits")(data_inner_splits)
    data_app.command("audit")(data_audit)
    data_app.command("site-splits")(data_site_splits)
