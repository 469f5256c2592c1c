"""survbench: a reproducibility benchmark for multimodal cancer survival methods.

The public API, for notebooks and scripts (each name is imported on first use, so ``import bench`` and
``bench --help`` stay fast)::

    bench.load_settings(root=None)                    bench.toml of a project -> Settings
    bench.list_methods(modality=None)                 the registered methods (MethodInfo), in Table I order
    bench.create_model(name, cohort, ...)             one method's model, built for a cohort's inputs
    bench.plan_run(settings, method, cohort, ...)     everything resolved for a run (nothing trained) -> RunPlan
    bench.execute(plan)                               train and store every fold not stored yet
    bench.summarize(plan)                             the plan's per-fold C-index under both protocols
    bench.open_store(results=None, settings=None)     the stored runs that verify -> Evaluation
    bench.build_tables(store, which="all", ...)       Tables I-IV -> list of Table
    bench.render_table(table, fmt)                    a Table as terminal, markdown, latex or csv text
    bench.reproduce(settings=None, ...)               the main job: the README's runs, then every table and figure

The packages below follow the data's path, each importing only the ones before it: ``bench._core``
(errors, settings, atomic files) < ``bench.api`` (what methods import) < ``bench.data`` < ``bench.metrics``
< ``bench.store`` < ``bench.train`` < ``bench.report`` < ``bench.tools`` < this module < ``bench.cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

from bench._core.version import __version__

#: public name -> (module, attribute)
_API = {
    "load_settings": ("bench._core.config", "load_settings"),
    "list_methods": ("bench.api.registry", "list_methods"),
    "create_model": ("bench.train.runner", "create_model"),
    "plan_run": ("bench.train.runner", "plan_run"),
    "execute": ("bench.train.runner", "execute"),
    "summarize": ("bench.train.runner", "summarize"),
    "open_store": ("bench.report.evaluation", "open_store"),
    "build_tables": ("bench.report.tables", "build_tables"),
    "render_table": ("bench.report.render", "render"),
    "reproduce": ("bench.report.reproduce", "reproduce"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
