"""What the command modules share: the consoles, the project's settings, the --folds parser."""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def load_settings():
    """``bench.toml`` of the project the command runs in (``$BENCH_ROOT`` or the nearest one above)."""
    from bench._core.config import load_settings as load

    return load()


def parse_folds(text: str | None) -> list[int] | None:
    from bench.train.sweep import parse_ints

    return parse_ints(text, "folds")
