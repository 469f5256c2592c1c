"""The main job (``make reproduce``, ``bench reproduce``, :func:`bench.reproduce`): the README's runs, then
every table and figure from the prediction store.

1. Every grid of ``grids/*.toml`` (in name order) through :func:`bench.train.sweep.run_sweep`: keys
   already complete in the store are skipped, so on a fresh clone this only checks the store.
2. Tables I-IV under both protocols, with the paper's numbers, as Markdown into ``<out>/tables``.
3. Figs. 6-7 for the default method (CCL if stored, else the best stored one) and for every method
   stored on all five cohorts, and the per-epoch C-index plots, as PNG into ``<out>/figures``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench._core.config import Settings, load_settings
from bench._core.errors import BenchError
from bench.report.evaluation import DEFAULT, Evaluation, left_out, open_store
from bench.report.figures import FIGURES, FORMATS, choose_method, complete_methods, draw_figures
from bench.report.render import check_out_folder, write_tables
from bench.report.tables import build_tables, empty_store_message, project_options


def _stdout(line: str) -> None:
    sys.stdout.write(line if line.endswith("\n") else line + "\n")


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


def reproduce(settings: Settings | None = None, *, grids: Sequence[Path] | None = None, workers: int = 1,
              out: Path | str = "docs", runs: bool = True, log: Callable[[str], None] = _stdout,
              progress: Callable[[str], None] | None = None, heading: Callable[[str], None] | None = None,
              warn: Callable[[str], None] = _stderr) -> Evaluation:
    """Run the grids (``runs``; stored keys are skipped), then write the tables and figures into ``out``
    (relative to the project root). ``log`` hears every file written and the figures' statistics,
    ``progress`` the sweeps' lines and ``heading`` each grid's name (both default to ``log``), ``warn`` each
    stored run left out. Returns the store the reports were read from. A grid with a failed or interrupted
    run stops it with a BenchError naming the failures file."""
    from bench.train.sweep import load_grid, run_sweep, write_failures

    settings = settings or load_settings()
    progress = progress or log
    heading = heading or progress
    grid_files = list(grids) if grids else sorted((settings.root / "grids").glob("*.toml"))
    if runs:
        for g in grid_files:
            heading(f"grid {g.name}")
            spec = load_grid(g)
            spec.workers = workers
            tally = run_sweep(settings, spec, progress)
            failures = write_failures(settings, tally.failures)
            if failures:
                raise BenchError(f"grid {g.name}: {tally.summary()}; see {failures}")
    out = Path(out)
    out = out if out.is_absolute() else settings.root / out
    check_out_folder(out / "tables")
    ev = open_store(None, settings)
    for line in left_out(settings, ev):
        warn(line)
    if ev.empty:
        log(empty_store_message(ev.results))
        return ev
    tables = build_tables(ev, "all", ["best-val", "last"], ["cindex"],
                          project_options(settings, compare_paper=True, n_resamples=1000), DEFAULT)
    write_tables(tables, out / "tables", "markdown", log)
    # Figs. 6-7 and calibration for the default method (CCL) and every method stored on all five cohorts
    names = list(dict.fromkeys([choose_method(ev, "best-val"), *complete_methods(ev, "best-val")]))
    draw_figures(ev, names, FIGURES, out / "figures", fmt=FORMATS, protocol="best-val", ttest="uncensored",
                 variant=DEFAULT, epoch_methods=None, log=log)
    return ev
