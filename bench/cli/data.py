"""``bench data import`` and ``bench data synth``: a cohort's feature stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench._core.errors import BenchError
from bench.cli.common import console, load_settings


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
    from bench.data.cohort import load_cohort
    from bench.data.features import check_store_name, cohort_store_dir
    from bench.data.features.importer import import_features

    settings = load_settings()
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


def register(data_app: typer.Typer) -> None:
    """Add ``import`` and ``synth`` to the ``bench data`` sub-app."""
    data_app.command("import")(data_import)
    data_app.command("synth")(data_synth)
