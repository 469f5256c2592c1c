"""Run keys: the one key of a stored run, the folder it names, and the ``bench run`` command that makes it.

A run is keyed by (method, variant, cohort, seed, fold); its config hash rides along (the manifest
records it, and a stored run with another hash is refused rather than mixed) but is not part of the
folder. The folder is ``<results>/<method>/<variant>/<cohort>/seed<s>/fold<k>``; :meth:`RunKey.from_path`
reads a key back from it.

:func:`run_command` is the one builder of ``bench run ...`` strings. Its callers keep the option order
each has always printed (the strings are stored in ``run.json`` files, printed by ``bench tables``,
``bench sweep --dry-run`` and ``bench results verify``, and asserted by tests): :data:`PLAN_ORDER`,
:data:`SWEEP_ORDER`, :data:`REDO_ORDER`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.cohort import short_name

SEED_FOLDER = re.compile(r"seed(0|[1-9][0-9]*)")
FOLD_FOLDER = re.compile(r"fold(0|[1-9][0-9]*)")

#: ``--set``, ``--seed``, ``--folds``: a plan's command (``bench run`` output, ``run.json``, the tables' gaps).
PLAN_ORDER = ("set", "seed", "folds")
#: ``--folds``, ``--set``, ``--seed``, ``--epochs``: a sweep's key (``bench sweep --dry-run``).
SWEEP_ORDER = ("folds", "set", "seed", "epochs")
#: ``--folds``, ``--seed``, ``--set``: the command that redoes a stored run (``bench results verify``).
REDO_ORDER = ("folds", "seed", "set")


def run_command(method: str, cohort: str, *, sets: Sequence[tuple[str, str]] = (), seed: int | None = None,
                folds: Sequence[int] | None = None, epochs: int | None = None, tail: Sequence[str] = (),
                order: Sequence[str] = PLAN_ORDER) -> str:
    """``bench run --method M --cohort C`` and the options given, in ``order``, then ``tail``.

    ``sets`` are (key, value text) pairs, already formatted and in the order to print.
    """
    options = {
        "set": "--set " + ",".join(f"{k}={v}" for k, v in sets) if sets else None,
        "seed": f"--seed {seed}" if seed is not None else None,
        "folds": "--folds " + ",".join(map(str, folds)) if folds else None,
        "epochs": f"--epochs {epochs}" if epochs is not None else None,
    }
    parts = [f"bench run --method {method} --cohort {short_name(cohort)}"]
    parts += [options[name] for name in order if options[name]]
    return " ".join([*parts, *tail])


@dataclass(frozen=True)
class RunKey:
    """The key of one stored run: ``<method>/<variant>/<cohort>/seed<s>/fold<k>`` (and its config hash)."""

    method: str
    variant: str
    cohort: str
    seed: int
    fold: int
    config_hash: str | None = field(default=None, compare=False)

    def dir(self, results: Path | str) -> Path:
        """The run's folder in the store under ``results``."""
        return Path(results) / self.method / self.variant / self.cohort / f"seed{self.seed}" / f"fold{self.fold}"

    def label(self) -> str:
        """``method/variant/cohort/seed<s>/fold<k>``: the folder below the store root."""
        return f"{self.method}/{self.variant}/{self.cohort}/seed{self.seed}/fold{self.fold}"

    def record(self) -> dict[str, Any]:
        """The key as manifests and ``run.json`` record it."""
        return {"method": self.method, "variant": self.variant, "config_hash": self.config_hash,
                "cohort": self.cohort, "fold": self.fold, "seed": self.seed}

    def command(self, sets: Sequence[tuple[str, str]] = (), *, epochs: int | None = None, tail: Sequence[str] = (),
                order: Sequence[str] = REDO_ORDER) -> str:
        """The ``bench run`` that (re)makes this one fold: ``sets`` are the (key, value text) overrides."""
        return run_command(self.method, self.cohort, sets=sets, seed=self.seed, folds=[self.fold], epochs=epochs,
                           tail=tail, order=order)

    @classmethod
    def from_path(cls, d: Path) -> RunKey | None:
        """The key named by run folder ``d``, or None if its last two folders are not ``seed<N>/fold<N>``."""
        d = Path(d)
        seed, fold = SEED_FOLDER.fullmatch(d.parent.name), FOLD_FOLDER.fullmatch(d.name)
        if seed is None or fold is None or len(d.parts) < 5:
            return None
        return cls(d.parts[-5], d.parts[-4], d.parts[-3], int(seed.group(1)), int(fold.group(1)))
