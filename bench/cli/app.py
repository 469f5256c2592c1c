"""The ``bench`` command line (Typer): the app, its sub-apps, and the console entry point.

Every command reads ``bench.toml`` from the project root. User errors print one line and exit 2.
The commands live in one module per group (:mod:`bench.cli.run`, :mod:`bench.cli.catalog`,
:mod:`bench.cli.data`, :mod:`bench.cli.perf`, :mod:`bench.cli.report`, :mod:`bench.cli.verdicts`,
:mod:`bench.cli.authoring`, :mod:`bench.cli.sweep`) and call library functions only; each imports what it
needs when it runs, so ``bench --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer
from rich.text import Text

from bench._core.errors import BenchError
from bench.cli import authoring, catalog, data, perf, report, run, sweep, verdicts
from bench.cli.common import err_console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="survbench: re-run published multimodal survival methods on fixed TCGA splits.")
data_app = typer.Typer(no_args_is_help=True, help="Feature stores: import real features or synthesise stand-ins.")
app.add_typer(data_app, name="data")
results_app = typer.Typer(no_args_is_help=True, help="The prediction store: import, verify.")
app.add_typer(results_app, name="results")

# The order of registration is the order `bench --help` lists the commands in.
run.register(app)
catalog.register(app)
data.register(data_app)
perf.register(app)
report.register(app, results_app)
verdicts.register(app)
authoring.register(app)
sweep.register(app, results_app)


def main() -> None:
    """Console entry point: run the app; user errors print one line and exit 2."""
    try:
        sys.exit(app(standalone_mode=False) or 0)
    except BenchError as exc:
        # Text, not markup: the message quotes user input ('[/]', '[bold]x') verbatim
        err_console.print(Text.assemble(("error:", "red"), f" {exc}"), soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; completed folds are stored, an unfinished fold resumes from its checkpoint")
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code)
    except Exception as exc:
        # usage errors of the bundled click (typer ships its own copy, so match by interface)
        if callable(getattr(exc, "show", None)) and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
