"""CLI commands for method authors: ``bench new-method`` and ``bench check-method``.

Registered on the main app by :func:`register`.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the method-author commands to ``app``."""
