"""Deprecated alias of :mod:`bench.cli.sweep` (survbench 0.1's layout); removed in the next release."""

from bench._core.deprecation import alias

alias(__name__, "bench.cli.sweep")
