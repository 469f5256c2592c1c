"""Deprecated alias of :mod:`bench._core.errors` (survbench 0.1's layout); removed in the next release."""

from bench._core.deprecation import alias

alias(__name__, "bench._core.errors", use="bench.api (BenchError) or bench._core.errors")
