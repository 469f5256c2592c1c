"""Deprecated alias of :mod:`bench.data.features` (survbench 0.1's layout); removed in the next release."""

from bench._core.deprecation import alias

alias(__name__, "bench.data.features")
