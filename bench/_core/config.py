"""Settings from ``bench.toml`` and the resolved configuration of one run.

``bench.toml`` holds the project-wide defaults (paths, data handling, the synthetic store, the
training protocol used by methods that do not set their own). A run's *resolved config* is

    {"method": ..., "model": {...}, "train": {...}, "data": {...}}

built from those defaults, the method's own defaults (its official settings), per-cohort
defaults of the method, and the user's ``--set key=value`` overrides, in that order. Its
hash is part of the run key. Every key and value is checked: an unknown key or a bad value
is an error naming the key.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._core.errors import BenchError
from bench._core.files import sha256_json


@dataclass(frozen=True)
class Key:
    """One configurable key: its type, default and an optional check."""

    type: type
    default: Any
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    help: str = ""

    def validate(self, name: str, value: Any) -> Any:
        value = coerce(name, value, self.type)
        if self.choices is not None and value not in self.choices:
            raise BenchError(f"bad value {value!r} for '{name}': choose one of {', '.join(map(str, self.choices))}")
        if self.check is not None and not self.check(value):
            raise BenchError(f"bad value {value!r} for '{name}': {self.help or 'out of range'}")
        return value


def _pos(x: float) -> bool:
    return x > 0


def _nonneg(x: float) -> bool:
    return x >= 0


TRAIN_KEYS: dict[str, Key] = {
    "optimizer": Key(str, "sgd", choices=("sgd", "adam", "adamw", "radam")),
    "lr": Key(float, 1e-3, check=_pos, help="must be > 0"),
    "momentum": Key(float, 0.0, check=_nonneg, help="must be >= 0"),
    "weight_decay": Key(float, 1e-5, check=_nonneg, help="must be >= 0"),
    "epochs": Key(int, 30, check=lambda x: x >= 1, help="must be >= 1"),
    "batch_size": Key(int, 1, check=lambda x: x >= 1, help="must be >= 1"),
    "grad_accum": Key(int, 1, check=lambda x: x >= 1, help="must be >= 1"),
    "sampler": Key(str, "uniform", choices=("uniform", "balanced")),
    "alpha": Key(float, 0.0, check=lambda x: 0 <= x <= 1, help="must be in [0, 1]"),
    "l1": Key(float, 0.0, check=_nonneg, help="must be >= 0"),
    "scheduler": Key(str, "none", choices=("none", "cosine")),
    "warmup_epochs": Key(int, 0, check=lambda x: x >= 0, help="must be >= 0"),
    # outer: train on the whole training fold (the published protocols). inner: train on the training fold minus
    # its inner split (splits/<cohort>/inner_<k>.csv) and evaluate that split after every epoch as well, so the
    # `inner` fold-score protocol can pick the epoch on patients the reported fold never sees.
    "selection": Key(str, "outer", choices=("outer", "inner")),
}

#: Keys added after runs were stored: left out of the config hash at these values, so the stored runs keep
#: their keys (their configs were resolved before the key existed, with this behaviour).
HASH_DEFAULTS: dict[tuple[str, str], Any] = {("train", "selection"): "outer", ("data", "splits"): "fixed"}

#: The split families a run can use: ``fixed`` (splits/<cohort>/splits_<k>.csv, the published ones) and ``site``
#: (splits/<cohort>/site/splits_<k>.csv, written by ``bench data site-splits``: each tissue source site in one fold).
SPLIT_KINDS = ("fixed", "site")

def _build_name(x: str) -> bool:
    # a build is a folder name under data/genomics, never a path (``../genomics/mutsig`` would alias a build)
    return bool(x) and x not in (".", "..") and all(ch.isalnum() or ch in "_-." for ch in x)


DATA_KEYS: dict[str, Key] = {
    "genomics": Key(str, "mutsig", check=_build_name,
                    help="a genomics build is a name, not a path: mutsig, mcat_sig, mcat_full or another folder "
                         "name under data/genomics"),
    "bins": Key(str, "train", choices=("train", "cohort")),
    "n_bins": Key(int, 4, check=lambda x: x >= 2, help="must be >= 2"),
    "patch_cap": Key(int, 0, check=lambda x: x >= 0, help="0 (no cap) or a positive patch count"),
    "patch_cap_eval": Key(bool, False),
    # which 5-fold split the run trains and reports on (SPLIT_KINDS); not the default: part of the variant
    "splits": Key(str, "fixed", choices=SPLIT_KINDS),
}

#: Seeds numpy and torch both accept (numpy's legacy seeding stops at 2**32 - 1).
SEED_LIMIT = 2**32
#: The fixed splits are 5-fold: fold numbers 0..4 (each a splits_<k>.csv).
N_FOLDS = 5


def _seed(x: int) -> bool:
    return 0 <= x < SEED_LIMIT


def _fold_list(x: list) -> bool:
    return (bool(x) and all(isinstance(f, int) and not isinstance(f, bool) and 0 <= f < N_FOLDS for f in x)
            and len(set(x)) == len(x))


SEED_HELP = "a seed is an integer with 0 <= seed < 2**32 (what numpy and torch seeding accept)"

RUN_KEYS: dict[str, Key] = {
    "folds": Key(list, [0, 1, 2, 3, 4], check=_fold_list,
                 help=f"a list of distinct fold numbers 0..{N_FOLDS - 1}, e.g. [0, 1, 2, 3, 4]"),
    "seed": Key(int, 0, check=_seed, help=SEED_HELP),
    "device": Key(str, "auto", choices=("auto", "cpu", "cuda")),
    "features": Key(str, "auto", help="'auto', 'synthetic', a store name or a path to an .h5 store"),
    "placement": Key(str, "auto", choices=("auto", "device", "host", "disk")),
    # auto: the store stays on disk (streamed, bag by bag) when it exceeds this share of the available host memory
    "memory_share": Key(float, 0.5, check=lambda x: 0 < x <= 1, help="a share of the available memory, 0 < x <= 1"),
}

SYNTHETIC_KEYS: dict[str, Key] = {
    "patches": Key(int, 128, check=lambda x: x >= 1, help="must be >= 1"),
    "signal": Key(float, 0.05, check=_nonneg, help="must be >= 0"),
    "seed": Key(int, 0, check=_nonneg, help="must be >= 0"),
    "dim": Key(int, 1024, check=lambda x: x >= 2, help="must be >= 2"),
}

PATHS_KEYS: dict[str, Key] = {
    "results": Key(str, "results"),
    "features": Key(str, "features"),
    "splits": Key(str, "splits"),
    "data": Key(str, "data"),
}

SECTIONS: dict[str, dict[str, Key]] = {
    "paths": PATHS_KEYS,
    "run": RUN_KEYS,
    "data": DATA_KEYS,
    "synthetic": SYNTHETIC_KEYS,
    "train": TRAIN_KEYS,
}


def coerce(name: str, value: Any, typ: type) -> Any:
    """Coerce ``value`` to ``typ`` where that loses nothing; otherwise raise naming ``name``."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise BenchError(f"bad value {value!r} for '{name}': must be finite")
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
    elif typ is list and isinstance(value, list):
        return value
    raise BenchError(f"bad value {value!r} for '{name}': expected {typ.__name__}")


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as a TOML literal (``3``, ``1e-4``, ``true``, ``"x"``); else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["k=9", "train.lr=1e-4"]`` (or comma-joined ``"k=9,tau=0.3"``) into a dict."""
    out: dict[str, Any] = {}
    for item in items:
        for part in _split_top_level(item):
            if "=" not in part:
                raise BenchError(f"bad --set '{part}': write key=value, e.g. --set k=9")
            key, _, value = part.partition("=")
            key = key.strip()
            if not key:
                raise BenchError(f"bad --set '{part}': the key is empty")
            out[key] = parse_value(value.strip())
    return out


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class Settings:
    """The validated contents of ``bench.toml`` and the project root it was found in."""

    root: Path
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.sections[section]

    def path(self, name: str) -> Path:
        """An absolute path from the ``[paths]`` section (relative paths are under the root)."""
        p = Path(self.sections["paths"][name]).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def results_dir(self) -> Path:
        return self.path("results")

    @property
    def features_dir(self) -> Path:
        return self.path("features")

    @property
    def splits_dir(self) -> Path:
        return self.path("splits")

    @property
    def data_dir(self) -> Path:
        return self.path("data")


def find_root(start: Path | None = None) -> Path:
    """The project root: ``$BENCH_ROOT``, else the nearest folder above ``start`` holding bench.toml,
    else the folder the package was installed from."""
    env = os.environ.get("BENCH_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "bench.toml").is_file():
            return p
    return Path(__file__).resolve().parents[2]  # bench/_core/config.py -> the project folder


def load_settings(root: Path | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """Read and validate ``<root>/bench.toml``; missing keys take the documented defaults."""
    root = (root or find_root()).resolve()
    raw: dict[str, Any] = {}
    toml_path = root / "bench.toml"
    if toml_path.is_file():
        try:
            raw = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise BenchError(f"{toml_path} is not valid TOML: {exc}") from exc
    sections: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise BenchError(f"unknown section [{name}] in {toml_path}; valid sections: {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise BenchError(f"bad value {value!r} for '{name}' in {toml_path}: '{name}' is a section; write a "
                             f"[{name}] header followed by key = value lines")
    for name, keys in SECTIONS.items():
        given = dict(raw.get(name, {}))
        given.update((overrides or {}).get(name, {}))
        sections[name] = validate_section(name, given, keys, where=str(toml_path))
    return Settings(root=root, sections=sections)


def validate_section(section: str, given: Mapping[str, Any], keys: Mapping[str, Key],
                     where: str = "") -> dict[str, Any]:
    """Defaults for ``keys`` updated with ``given``, every key checked."""
    out = {k: copy.deepcopy(key.default) for k, key in keys.items()}
    for k, v in given.items():
        if k not in keys:
            loc = f" in {where}" if where else ""
            raise BenchError(f"unknown key '{section}.{k}'{loc}; valid keys: {', '.join(sorted(keys))}")
        try:
            out[k] = keys[k].validate(f"{section}.{k}", v)
        except BenchError as exc:
            if not where:
                raise
            raise BenchError(f"{exc} (in {where})") from None
    return out


# ----------------------------------------------------------------------------------------------
# Resolved run configuration


def resolve_run_config(
    settings: Settings,
    method: Any,
    cohort: str,
    sets: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(config, overrides)`` for one run of ``method`` on ``cohort``.

    ``config`` is the full resolved config; ``overrides`` holds only the keys the user changed
    from the method's defaults, as canonical ``section.key`` names (it names the variant).
    """
    base = default_run_config(settings, method, cohort)
    config = copy.deepcopy(base)
    for raw_key, value in (sets or {}).items():
        section, key = locate_key(raw_key, config, method)
        if section == "model":
            config["model"][key] = method.validate_hparam(key, value)
        else:
            keys = TRAIN_KEYS if section == "train" else DATA_KEYS
            config[section][key] = keys[key].validate(f"{section}.{key}", value)
    method.check_config(config)
    overrides = {
        f"{s}.{k}": config[s][k]
        for s in ("model", "train", "data")
        for k in config[s]
        if config[s][k] != base[s][k]
    }
    return config, overrides


def default_run_config(settings: Settings, method: Any, cohort: str) -> dict[str, Any]:
    """The config a run gets with no ``--set``: bench.toml < method defaults < cohort defaults."""
    train = dict(settings["train"])
    train.update(method.train)
    model = dict(method.hparams)
    cohort_defaults = method.cohort_defaults.get(cohort, {})
    data = dict(settings["data"])
    data.update(method.data)
    for k, v in cohort_defaults.items():
        if k in model:
            model[k] = v
        elif k in train:
            train[k] = v
        elif k in data:
            data[k] = v
    return {
        "method": method.name,
        "model": model,
        "train": validate_section("train", train, TRAIN_KEYS),
        "data": validate_section("data", data, DATA_KEYS),
    }


def locate_key(raw_key: str, config: Mapping[str, Any], method: Any) -> tuple[str, str]:
    """Map ``lr``, ``train.lr``, ``k`` or ``model.k`` to its (section, key); unknown keys are errors."""
    if "." in raw_key:
        section, _, key = raw_key.partition(".")
        if section not in ("model", "train", "data") or key not in config.get(section, {}):
            raise BenchError(f"unknown key '{raw_key}' for method {method.name}; {_valid_keys(config)}")
        return section, key
    hits = [s for s in ("model", "train", "data") if raw_key in config[s]]
    if not hits:
        raise BenchError(f"unknown key '{raw_key}' for method {method.name}; {_valid_keys(config)}")
    if len(hits) > 1:
        raise BenchError(f"key '{raw_key}' is ambiguous; write {' or '.join(f'{s}.{raw_key}' for s in hits)}")
    return hits[0], raw_key


def _valid_keys(config: Mapping[str, Any]) -> str:
    parts = []
    for s in ("model", "train", "data"):
        if config[s]:
            parts.append(f"{s}: {', '.join(sorted(config[s]))}")
    return "valid keys — " + "; ".join(parts)


def config_hash(config: Mapping[str, Any]) -> str:
    """Short stable hash of a resolved config (part of the run key)."""
    hashed = {section: dict(values) if isinstance(values, Mapping) else values for section, values in config.items()}
    for (section, key), default in HASH_DEFAULTS.items():
        if isinstance(hashed.get(section), dict) and hashed[section].get(key, default) == default:
            hashed[section].pop(key, None)
    return sha256_json(hashed)[:12]


def variant_name(overrides: Mapping[str, Any]) -> str:
    """``default`` for no overrides, else ``key=value`` pairs joined by commas (sorted), or a hash if long."""
    if not overrides:
        return "default"
    parts = []
    for name in sorted(overrides):
        short = name.split(".", 1)[1]
        parts.append(f"{short}={format_value(overrides[name])}")
    name = ",".join(parts)
    safe = all(ch.isalnum() or ch in "=,._-+" for ch in name)
    if len(name) > 64 or not safe:
        return "cfg-" + sha256_json(dict(overrides))[:10]
    return name


def format_value(v: Any) -> str:
    """Render a config value the way variant names spell it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v).replace("e-0", "e-").replace("e+0", "e+")
    return str(v)
