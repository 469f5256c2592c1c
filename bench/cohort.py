"""Deprecated alias of :mod:`bench.data.cohort` (survbench 0.1's layout); removed in the next release."""

from bench._core.deprecation import alias

alias(__name__, "bench.data.cohort", "bench.api.bins", "bench.api.model")
