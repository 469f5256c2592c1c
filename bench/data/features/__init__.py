"""Pathology feature stores: where they live and which one a run uses.

Stores live in ``<features>/<cohort>/<name>.h5``. Real stores come from ``bench data import``;
synthetic ones (``synthetic-*.h5``) from ``bench data synth`` or, on first use, from ``bench run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench._core.config import Settings
from bench._core.errors import BenchError
from bench.data.cohort import Cohort, short_name
from bench.data.features.store import StoreInfo, read_info
from bench.data.features.synthetic import synthesize, synthetic_store_name


@dataclass
class StoreChoice:
    """The store a run uses and a notice to print about it (empty if nothing to say)."""

    info: StoreInfo
    notice: str = ""


def cohort_store_dir(settings: Settings, cohort: str) -> Path:
    return settings.features_dir / cohort


def check_store_name(name: str, option: str = "--features") -> str:
    """Return ``name`` if it is a plain file name, else refuse it: a store lives in ``<features>/<cohort>/NAME.h5``
    and no name may place it (or read it from) anywhere else."""
    # no separator of either kind also rules out absolute paths (/x, C:\\x) and any '..' component
    if not name.strip() or name.startswith(".") or any(c in name for c in "/\\\0"):
        also = {"--features": " or the path of an .h5 store",
                "--encoder": " with --name (the store name defaults to the encoder)"}.get(option, "")
        raise BenchError(f"bad {option} {name!r}: a feature store name is a plain file name (not empty, no '/' or "
                         f"'\\', not starting with '.'), stored as <features>/<cohort>/NAME.h5; give a name like "
                         f"'uni'{also}")
    return name


def list_stores(settings: Settings, cohort: str) -> list[Path]:
    """All stores of a cohort (real and synthetic)."""
    d = cohort_store_dir(settings, cohort)
    return sorted(p for p in d.glob("*.h5") if not p.name.startswith(".")) if d.is_dir() else []


def real_stores(settings: Settings, cohort: str) -> list[Path]:
    return [p for p in list_stores(settings, cohort) if not p.name.startswith("synthetic-")]


def default_synthetic_path(settings: Settings, cohort: str, build: str = "mutsig") -> Path:
    """The default synthetic store; builds other than mutsig list other slides, so they get their own."""
    s = settings["synthetic"]
    name = synthetic_store_name(s["patches"], s["signal"], s["seed"], s["dim"])
    if build != "mutsig":
        name = name.replace(".h5", f"-{build}.h5")
    return cohort_store_dir(settings, cohort) / name


def ensure_default_synthetic(settings: Settings, cohort: Cohort) -> tuple[StoreInfo, bool]:
    """The default synthetic store of ``cohort`` (bench.toml [synthetic]); created once, then cached."""
    path = default_synthetic_path(settings, cohort.name, cohort.build)
    if path.is_file():
        return read_info(path), False
    s = settings["synthetic"]
    info = synthesize(cohort, path, patches=s["patches"], signal=s["signal"], seed=s["seed"], dim=s["dim"])
    return info, True


def choose_store(settings: Settings, cohort: Cohort, spec: str = "auto") -> StoreChoice:
    """Resolve ``--features`` (``auto``, ``synthetic``, a store name or an .h5 path) to a store."""
    if spec not in ("auto", "synthetic"):
        p = Path(spec).expanduser()
        if p.suffix == ".h5":
            candidates = [p]
        else:
            candidates = [cohort_store_dir(settings, cohort.name) / f"{check_store_name(spec)}.h5"]
        for c in candidates:
            if c.is_file():
                info = read_info(c)
                _check_cohort(info, cohort)
                return StoreChoice(info)
        have = ", ".join(x.stem for x in list_stores(settings, cohort.name)) or "none"
        raise BenchError(f"no feature store '{spec}' for {short_name(cohort.name)}; stores available: {have}")
    if spec == "auto":
        reals = real_stores(settings, cohort.name)
        if len(reals) == 1:
            info = read_info(reals[0])
            _check_cohort(info, cohort)
            return StoreChoice(info)
        if len(reals) > 1:
            names = ", ".join(p.stem for p in reals)
            raise BenchError(f"{short_name(cohort.name)} has several real feature stores ({names}); "
                             "choose one with --features NAME")
    info, created = ensure_default_synthetic(settings, cohort)
    _check_cohort(info, cohort)
    what = "created" if created else "using"
    notice = (f"NOTICE: no real pathology features for {short_name(cohort.name)}; {what} the SYNTHETIC store "
              f"{info.path.name} (results are labelled synthetic). Import real features with "
              f"'bench data import --cohort {short_name(cohort.name)} --features DIR'.")
    return StoreChoice(info, notice)


def store_label(settings: Settings, cohort: Cohort, spec: str = "auto") -> str | None:
    """The store name ``--features spec`` stands for in a run's variant (``features=NAME``), resolved without
    reading or creating a store; None for the default synthetic store (the stored runs' store: no label).

    ``auto`` names the cohort's one real store (several: an error, as :func:`choose_store`), ``synthetic`` the
    default synthetic store; a name or an ``.h5`` path names itself (its file stem).
    """
    default = default_synthetic_path(settings, cohort.name, cohort.build)
    if spec == "synthetic":
        return None
    if spec == "auto":
        reals = real_stores(settings, cohort.name)
        if len(reals) > 1:
            names = ", ".join(p.stem for p in reals)
            raise BenchError(f"{short_name(cohort.name)} has several real feature stores ({names}); "
                             "choose one with --features NAME")
        return reals[0].stem if reals else None
    p = Path(spec).expanduser()
    path = p if p.suffix == ".h5" else cohort_store_dir(settings, cohort.name) / f"{check_store_name(spec)}.h5"
    return None if path.resolve() == default.resolve() else path.stem


def describe_store(info: StoreInfo | None) -> dict[str, object] | None:
    """The encoder axis of a run, as its manifest records it: the store's name, encoder (its ``encoder``
    attribute; ``synthetic`` for a synthetic store, ``unknown`` when the store does not say) and dimension."""
    if info is None:
        return None
    encoder = info.encoder or ("synthetic" if info.synthetic else "unknown")
    return {"name": info.path.stem, "encoder": encoder, "dim": int(info.dim), "kind": info.kind}


def _check_cohort(info: StoreInfo, cohort: Cohort) -> None:
    if info.cohort != cohort.name:
        raise BenchError(f"feature store {info.path} belongs to {info.cohort}, not {cohort.name}")


__all__ = ["StoreChoice", "StoreInfo", "check_store_name", "choose_store", "describe_store", "list_stores", "read_info",
           "store_label", "synthesize"]
