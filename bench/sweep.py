"""Deprecated alias of :mod:`bench.train.sweep` (survbench 0.1's layout); removed in the next release."""

from bench._core.deprecation import alias

alias(__name__, "bench.train.sweep", "bench.train.workers", renamed={"run_spec": "run_sweep"})
