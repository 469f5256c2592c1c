"""The ``bench`` command line: :data:`app` (Typer) and :func:`main`, the console entry point."""

from bench.cli.app import app, main

__all__ = ["app", "main"]
