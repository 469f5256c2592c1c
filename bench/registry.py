"""Deprecated alias of :mod:`bench.api.registry` (survbench 0.1's layout); removed in the next release."""

from bench._core.deprecation import alias

alias(__name__, "bench.api.registry", "bench.api.model", "bench.api.paper", "bench._core.config", use="bench.api")
