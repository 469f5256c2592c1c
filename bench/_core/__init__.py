"""The bottom of the package: the error type, settings and run configuration, atomic file writes.

Everything else imports from here; this package imports nothing else of survbench. ``config`` sits
here rather than in :mod:`bench.api` because the registry validates a method's ``train`` settings
against the keys of ``bench.toml`` and every layer reads settings.
"""
