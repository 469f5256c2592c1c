"""The method registry: every method is a model class plus its metadata, registered by name.

A method module (survbench's own under ``methods/``, or one in another installed package) does::

    @register(MethodInfo(name="attmil", title="AttMIL", modality="pathology", ...))
    class AttMIL(SurvivalModel):
        def __init__(self, dims: InputDims, hidden: int = 512, dropout: float = 0.25): ...
        def forward(self, batch: Batch) -> ModelOutput: ...

and nothing else. The keyword arguments of ``__init__`` and their defaults are the method's
hyper-parameters (the one source of each default: :func:`signature_hparams` reads them into
``MethodInfo.hparams`` when the class registers). ``get_method("AttMIL")`` finds a method (names
are case-insensitive).

Discovery: every module named by an entry point of the ``survbench.methods`` group is imported,
survbench's own distribution first (its ``methods`` package is declared there like any plugin), then
the others in the order ``importlib.metadata`` lists them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bench._core.config import DATA_KEYS, TRAIN_KEYS, coerce
from bench._core.errors import BenchError
from bench.api.model import InputDims, SurvivalModel
from bench.api.paper import PAPER_COHORTS

MODALITIES = ("genomics", "pathology", "multimodal")
ENTRY_POINT_GROUP = "survbench.methods"
#: The distribution survbench itself is installed as: its methods are listed with the source ``survbench``.
DISTRIBUTION = "survbench"


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
        hparams: model hyper-parameters and their defaults (``--set name=value`` changes them), filled in
            by :func:`register` from the model's ``__init__`` signature; a method does not write them.
            (Passing them is deprecated: a plugin written for survbench 0.1 may still do so, and its
            values are used as given.)
        hparam_choices: allowed values for string hyper-parameters (the defaults themselves are in __init__).
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


def signature_hparams(cls: type) -> dict[str, Any]:
    """The hyper-parameters of ``cls``: the keyword arguments of its ``__init__`` after ``dims``, with
    their defaults, in signature order. A tuple default becomes a list (config values are TOML/JSON data)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, dims
    out: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise BenchError(f"method class {cls.__name__} ({cls.__module__}): __init__ argument '{p.name}' has no "
                             "default; every hyper-parameter needs one (it is the method's default)")
        out[p.name] = list(p.default) if isinstance(p.default, tuple) else p.default
    return out


def register(info: MethodInfo) -> Callable[[type[SurvivalModel]], type[SurvivalModel]]:
    """Class decorator: register ``cls`` under ``info.name`` (a clash names both sources)."""

    def wrap(cls: type[SurvivalModel]) -> type[SurvivalModel]:
        hparams = _hparams(info, cls)
        _validate_info(info, cls, hparams)
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
        _REGISTRY[name] = replace(info, name=name, model=cls, source=source, hparams=hparams)
        return cls

    return wrap


def _hparams(info: MethodInfo, cls: type) -> dict[str, Any]:
    """The registered hyper-parameters: the ``__init__`` signature's, or (deprecated) the ones the metadata gives."""
    if not info.hparams:
        return signature_hparams(cls)
    warnings.warn(f"method '{info.name}' ({cls.__module__}): MethodInfo(hparams=...) is deprecated; the defaults "
                  f"are read from {cls.__name__}.__init__ (drop hparams= from the metadata)", DeprecationWarning,
                  stacklevel=3)
    return dict(info.hparams)


def _source_of(cls: type) -> str:
    module = cls.__module__
    dist = _distribution_of(module)
    if dist == DISTRIBUTION:
        return DISTRIBUTION
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


def _validate_info(info: MethodInfo, cls: type, hparams: Mapping[str, Any]) -> None:
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
    for k in hparams:
        if not takes_kwargs and k not in params:
            raise BenchError(f"{where}: hyper-parameter '{k}' is not an argument of {cls.__name__}.__init__")
    known = {**hparams, **TRAIN_KEYS, **DATA_KEYS}
    for name, overrides in info.variants.items():
        for k in overrides:
            if k.split(".")[-1] not in known:
                raise BenchError(f"{where}: variant '{name}' sets unknown key '{k}'")
    for cohort, overrides in info.cohort_defaults.items():
        for k in overrides:
            if k not in known:
                raise BenchError(f"{where}: cohort default for {cohort} sets unknown key '{k}'")


def _dist_name(ep: importlib.metadata.EntryPoint) -> str | None:
    return getattr(getattr(ep, "dist", None), "name", None)


def _load(eps: list[importlib.metadata.EntryPoint]) -> None:
    for ep in eps:
        try:
            ep.load()
        except BenchError:
            raise
        except Exception as exc:
            raise BenchError(f"method plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from exc


def _metadata_location() -> str:
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "none installed"
    # PathDistribution keeps its folder in _path; other finders may not say where they read from.
    return str(getattr(dist, "_path", "location unknown"))


@functools.cache
def _load_builtin() -> None:
    """survbench's own methods: the entry points its own distribution declares (pyproject.toml)."""
    own = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if _dist_name(ep) == DISTRIBUTION]
    if not own:
        raise BenchError(f"survbench's own methods are not registered: the {DISTRIBUTION} metadata found "
                         f"({_metadata_location()}) declares no '{ENTRY_POINT_GROUP}' entry point (an install older "
                         "than this checkout, a stale survbench.egg-info folder in the working directory, or none); "
                         "delete a stale survbench.egg-info and reinstall: make setup, or "
                         "pip install --no-deps --no-build-isolation -e .")
    _load(own)
    if not any(m.source == DISTRIBUTION for m in _REGISTRY.values()):
        values = ", ".join(sorted({ep.value for ep in own}))
        raise BenchError(f"survbench's entry point(s) {values} registered no method: a folder of that name without "
                         "__init__.py earlier on sys.path (a namespace package) shadows the installed package")


@functools.cache
def _load_entry_points() -> None:
    """Every other distribution's entry points (the plugins), in the order importlib.metadata lists them."""
    _load([ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if _dist_name(ep) != DISTRIBUTION])


def load_all() -> None:
    """Import every module of the entry-point group survbench.methods: survbench's own first, then the plugins."""
    _load_builtin()
    _load_entry_points()


def all_methods() -> list[MethodInfo]:
    """Registered methods in the paper's Table I order (then by name)."""
    load_all()
    return sorted(_REGISTRY.values(), key=lambda m: (m.order, m.name))


def list_methods(modality: str | None = None) -> list[MethodInfo]:
    """Registered methods (of one ``modality``: genomics, pathology or multimodal), in Table I order."""
    if modality is not None and modality not in MODALITIES:
        raise BenchError(f"unknown modality '{modality}'; choose one of {', '.join(MODALITIES)}")
    return [m for m in all_methods() if modality is None or m.modality == modality]


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


def train_key_names() -> list[str]:
    """Valid training keys (for docs and error messages)."""
    return list(TRAIN_KEYS)


__all__ = [
    "ENTRY_POINT_GROUP",
    "MODALITIES",
    "MethodInfo",
    "all_methods",
    "get_method",
    "list_methods",
    "register",
    "signature_hparams",
    "unregister",
]
