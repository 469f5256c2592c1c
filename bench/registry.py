"""The method registry: every method is a model class plus its metadata, registered by name.

A method module under ``methods/`` (or in another installed package, through the
``survbench.methods`` entry-point group) does::

    @register(MethodInfo(name="attmil", title="AttMIL", modality="pathology", ...))
    class AttMIL(SurvivalModel):
        def __init__(self, dims: InputDims, **hparams): ...
        def forward(self, batch: Batch) -> ModelOutput: ...

and nothing else. ``get_method("AttMIL")`` finds it (names are case-insensitive).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from bench.config import DATA_KEYS, TRAIN_KEYS, Key, coerce
from bench.errors import BenchError

MODALITIES = ("genomics", "pathology", "multimodal")
PAPER_COHORTS = ("BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC")
ENTRY_POINT_GROUP = "survbench.methods"


@dataclass(frozen=True)
class InputDims:
    """What a model is told about its inputs when it is built."""

    path_dim: int | None  # patch feature dimension (None for genomics-only methods)
    omic_dim: int  # number of genomic columns (all of them)
    group_sizes: tuple[int, ...]  # sizes of the six signature groups
    n_bins: int  # number of discrete time bins (hazard outputs)
    cohort: str  # canonical cohort name, e.g. tcga_blca
    # Labels of the training fold, for methods that fit label-derived quantities (e.g. CCL's r
    # patient groups) on the training fold only. None outside a fold (inspection, parameter counts).
    train_time: Any = None
    train_censorship: Any = None
    # Names of the genomic columns (batch.omic's order) and each signature group's column indices,
    # for methods that build their own genomic tokens (e.g. SurvPath from pathways).
    omic_columns: tuple[str, ...] = ()
    group_columns: tuple[tuple[int, ...], ...] = ()


@dataclass
class ModelOutput:
    """A model's output: hazard logits ``[B, n_bins]`` and optional auxiliary losses.

    ``aux`` losses are scalar tensors already weighted; the engine adds them to the NLL loss
    (times ``nll_weight``) in training and reports them. ``extras`` carries anything a method wants to expose
    (attention maps, ...); the engine ignores it.
    """

    logits: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    nll_weight: float = 1.0  # weight of the survival NLL in the training loss (CLAM's bag_weight)


class SurvivalModel(nn.Module):
    """Base class of every method's model: ``forward(batch) -> ModelOutput``.

    State a method must keep across iterations (CCL's anchor and cohort bank) belongs in
    registered buffers, so it is saved and restored with the model's ``state_dict``.
    """

    def forward(self, batch: Any) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_stats(self) -> dict[str, int | float]:
        """Counts a method reports about the whole run (recorded in the manifest as ``model_stats``)."""
        return {}


@dataclass(frozen=True)
class MethodInfo:
    """Everything survbench knows about a method besides its model code.

    Attributes:
        name: registry key, lower case (``ccl``).
        title: the name tables print (``CCL``).
        modality: ``genomics``, ``pathology`` or ``multimodal``.
        paper: citation of the method's paper.
        official_code: URL of the official code, or None.
        reported: the CCL paper's Table I numbers, cohort -> (mean, std); empty if not in Table I.
        selection: the fold-score rule of the official code: ``best-val`` or ``last``.
        tie: which epoch ``best-val`` keeps on ties: ``earliest`` (strict >) or ``latest`` (>=).
        train: official training settings (keys of bench.toml [train]).
        data: data settings the method needs (keys of bench.toml [data]).
        hparams: model hyper-parameters and their defaults (``--set name=value`` changes them).
        hparam_choices: allowed values for string hyper-parameters.
        cohort_defaults: per-cohort overrides of hparams or train settings (official scripts).
        variants: named presets of overrides (``bench run --variant NAME``).
        genomics: which genomic input the model reads: ``groups`` (six signature groups),
            ``all`` (every genomic column) or None.
        reimplementation: True where no official code was read (an [inferred] reconstruction).
        notes: where we follow code rather than paper, and other choices worth knowing.
        order: position in the paper's Table I (rows are sorted by it).
    """

    name: str
    title: str
    modality: str
    paper: str
    official_code: str | None = None
    reported: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    selection: str = "best-val"
    tie: str = "earliest"
    train: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    hparams: Mapping[str, Any] = field(default_factory=dict)
    hparam_choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    cohort_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    genomics: str | None = None
    reimplementation: bool = False
    notes: str = ""
    order: int = 1000
    model: type[SurvivalModel] | None = None
    source: str = "survbench"

    @property
    def uses_pathology(self) -> bool:
        return self.modality in ("pathology", "multimodal")

    def validate_hparam(self, key: str, value: Any) -> Any:
        """Check one hyper-parameter value against the type of its default (and its choices)."""
        default = self.hparams[key]
        typ = type(default) if default is not None else type(value)
        value = coerce(f"model.{key}", value, typ)
        choices = self.hparam_choices.get(key)
        if choices is not None and value not in choices:
            raise BenchError(f"bad value {value!r} for 'model.{key}': choose one of {', '.join(map(str, choices))}")
        return value

    def check_config(self, config: Mapping[str, Any]) -> None:
        """Hook for cross-key checks (e.g. a method that needs batch size 1)."""
        check = getattr(self.model, "check_config", None)
        if check is not None:
            check(config)

    def build(self, dims: InputDims, hparams: Mapping[str, Any]) -> SurvivalModel:
        """Instantiate the model with resolved hyper-parameters."""
        assert self.model is not None
        return self.model(dims, **dict(hparams))


_REGISTRY: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> Callable[[type[SurvivalModel]], type[SurvivalModel]]:
    """Class decorator: register ``cls`` under ``info.name`` (a clash names both sources)."""

    def wrap(cls: type[SurvivalModel]) -> type[SurvivalModel]:
        _validate_info(info, cls)
        name = info.name.lower()
        source = _source_of(cls)
        existing = _REGISTRY.get(name)
        if existing is not None and existing.model is not cls:
            if existing.model is not None and (existing.model.__module__, existing.model.__qualname__) == (
                cls.__module__, cls.__qualname__):
                pass  # the same class re-imported (e.g. a module reloaded): replace silently
            else:
                raise BenchError(f"method name '{name}' is registered twice: by {existing.source} and by {source}; "
                                 "rename one of them")
        _REGISTRY[name] = _replace(info, name=name, model=cls, source=source)
        return cls

    return wrap


def _replace(info: MethodInfo, **changes: Any) -> MethodInfo:
    from dataclasses import replace

    return replace(info, **changes)


def _source_of(cls: type) -> str:
    module = cls.__module__
    if module.startswith("methods."):
        return "survbench"
    dist = _distribution_of(module)
    return f"{dist} ({module})" if dist else module


def _distribution_of(module: str) -> str | None:
    """The distribution that provides ``module``: the one whose survbench.methods entry point names
    ``module`` (or its top-level package), else the installed distribution owning that package."""
    top = module.split(".")[0]
    # Entry points first: a distribution registered by metadata alone (no RECORD or top_level.txt,
    # e.g. a dist-info folder on PYTHONPATH) is invisible to packages_distributions().
    eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    for matches in (lambda ep: ep.module == module, lambda ep: ep.module.split(".")[0] == top):
        for ep in eps:
            dist = getattr(ep, "dist", None)
            if matches(ep) and dist is not None and dist.name:
                return dist.name
    names = importlib.metadata.packages_distributions().get(top)
    return names[0] if names else None


def _validate_info(info: MethodInfo, cls: type) -> None:
    where = f"method '{info.name}' ({cls.__module__})"
    if info.modality not in MODALITIES:
        raise BenchError(f"{where}: modality must be one of {', '.join(MODALITIES)}")
    if info.selection not in ("best-val", "last"):
        raise BenchError(f"{where}: selection must be 'best-val' or 'last'")
    if info.tie not in ("earliest", "latest"):
        raise BenchError(f"{where}: tie must be 'earliest' or 'latest'")
    if info.genomics not in (None, "groups", "all"):
        raise BenchError(f"{where}: genomics must be None, 'groups' or 'all'")
    if info.modality != "pathology" and info.genomics is None:
        raise BenchError(f"{where}: a {info.modality} method must say which genomics it reads (groups or all)")
    for cohort, value in info.reported.items():
        if cohort not in PAPER_COHORTS or not (isinstance(value, tuple | list) and len(value) == 2):
            raise BenchError(f"{where}: reported must map paper cohorts ({', '.join(PAPER_COHORTS)}) to "
                             f"(mean, std) pairs; got {cohort!r}: {value!r}")
    for k, v in info.train.items():
        if k not in TRAIN_KEYS:
            raise BenchError(f"{where}: unknown train key '{k}'; valid: {', '.join(TRAIN_KEYS)}")
        TRAIN_KEYS[k].validate(f"train.{k}", v)
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for k in info.hparams:
        if not takes_kwargs and k not in params:
            raise BenchError(f"{where}: hyper-parameter '{k}' is not an argument of {cls.__name__}.__init__")
    known = {**info.hparams, **TRAIN_KEYS, **DATA_KEYS}
    for name, overrides in info.variants.items():
        for k in overrides:
            if k.split(".")[-1] not in known:
                raise BenchError(f"{where}: variant '{name}' sets unknown key '{k}'")
    for cohort, overrides in info.cohort_defaults.items():
        for k in overrides:
            if k not in known:
                raise BenchError(f"{where}: cohort default for {cohort} sets unknown key '{k}'")


@functools.cache
def _load_builtin() -> None:
    importlib.import_module("methods")


@functools.cache
def _load_entry_points() -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except BenchError:
            raise
        except Exception as exc:
            raise BenchError(f"method plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from exc


def load_all() -> None:
    """Import the built-in methods and every installed plugin (entry-point group survbench.methods)."""
    _load_builtin()
    _load_entry_points()


def all_methods() -> list[MethodInfo]:
    """Registered methods in the paper's Table I order (then by name)."""
    load_all()
    return sorted(_REGISTRY.values(), key=lambda m: (m.order, m.name))


def get_method(name: str) -> MethodInfo:
    """A registered method by case-insensitive name, or an error listing the valid ones."""
    load_all()
    info = _REGISTRY.get(name.strip().lower())
    if info is None:
        valid = ", ".join(m.name for m in all_methods())
        raise BenchError(f"unknown method '{name}'; valid methods: {valid}")
    return info


def unregister(name: str) -> None:
    """Remove a method (used by tests that register throw-away methods)."""
    _REGISTRY.pop(name.lower(), None)


# ----------------------------------------------------------------------------------------------
# The paper's published numbers, bundled as package data under bench/paper_tables (one source for every method).

_PAPER_TABLES = Path(__file__).resolve().parent / "paper_tables"


@functools.cache
def paper_table(name: str) -> pd.DataFrame:
    """One of the bundled CSVs of the CCL paper's tables (``table1_cindex`` ...)."""
    path = _PAPER_TABLES / f"{name}.csv"
    if not path.is_file():
        raise BenchError(f"bundled paper table {path} is missing; restore bench/paper_tables from git")
    return pd.read_csv(path)


def table1_row(title: str) -> dict[str, tuple[float, float]]:
    """The CCL paper's Table I C-index (mean, std) per cohort for the row ``title``."""
    t = paper_table("table1_cindex")
    row = t[t["method"] == title]
    if row.empty:
        raise BenchError(f"'{title}' is not a row of the paper's Table I")
    r = row.iloc[0]
    return {c: (float(r[f"{c}_mean"]), float(r[f"{c}_std"])) for c in PAPER_COHORTS}


def train_key_names() -> list[str]:
    """Valid training keys (for docs and error messages)."""
    return list(TRAIN_KEYS)


__all__ = [
    "InputDims",
    "Key",
    "MethodInfo",
    "ModelOutput",
    "SurvivalModel",
    "all_methods",
    "get_method",
    "paper_table",
    "register",
    "table1_row",
]
