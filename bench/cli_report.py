"""CLI commands that read the prediction store: ``bench tables``, ``bench figures``, ``bench results ...``.

Registered on the main app by :func:`register`.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer, results_app: typer.Typer) -> None:
    """Add the reporting commands to ``app`` and the ``results`` sub-app."""
