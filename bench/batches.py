"""Deprecated alias of :mod:`bench.data.batches` (survbench 0.1's layout); removed in the next release."""

from bench._core.deprecation import alias

alias(__name__, "bench.data.batches", "bench.api.model", use="bench.api (Batch) or bench.data.batches")
