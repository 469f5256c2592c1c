"""CLI commands for method authors: ``bench new-method`` and ``bench check-method``.

Registered on the main app by :func:`register`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench._core.errors import BenchError


def _echo(text: str = "") -> None:
    # Plain stdout (no rich markup): reasons quote tensors and brackets verbatim.
    sys.stdout.write(text + "\n")


def new_method(
    name: Annotated[str, typer.Argument(help="Method name: letters, digits, underscores (e.g. my_mil or MyMIL).")],
    modality: Annotated[str, typer.Option(help="genomics, pathology or multimodal.")] = "multimodal",
    dir_: Annotated[Path, typer.Option("--dir", help="Folder of the method module (e.g. your package).")] = Path("."),
    tests: Annotated[Path | None, typer.Option(
        help="Folder of the test (default: tests/ beside the top package, or --dir outside a package).")] = None,
    title: Annotated[str | None, typer.Option(help="Table label (default: the class name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a new method module (registry decorator, metadata, model skeleton) and its contract test."""
    from bench.tools.scaffold import check_name_free, next_steps, plan_scaffold, write_scaffold

    scaffold = plan_scaffold(name, modality, dir_, tests, title)
    check_name_free(scaffold.name)
    for path in write_scaffold(scaffold, force=force):
        _echo(f"wrote {path}")
    _echo(f"{scaffold.title} ({scaffold.modality}): class {scaffold.cls} in module {scaffold.module}")
    for line in next_steps(scaffold):
        _echo(line)


def _import_module(spec: str) -> str:
    """Import a dotted module or a ``.py`` file (registering the methods it defines); its module name."""
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise BenchError(f"--module {spec}: no such file")
        name = path.stem
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        loader_spec = importlib.util.spec_from_file_location(name, path)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except BenchError:
            raise
        except Exception as exc:
            sys.modules.pop(name, None)
            raise BenchError(f"--module {spec} failed to import: {type(exc).__name__}: {exc}") from exc
        return name
    # Like `python -m`: modules in the working directory are importable.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        importlib.import_module(spec)
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(f"--module {spec} failed to import: {type(exc).__name__}: {exc}") from exc
    return spec


def check_method(
    name: Annotated[str, typer.Argument(help="Registered method name (see `bench methods`).")],
    module: Annotated[list[str] | None, typer.Option(
        "--module", help="Import this module or .py file first (a method not registered yet); repeatable.")] = None,
    workdir: Annotated[Path | None, typer.Option(
        help="Keep the toy project and its stored runs here (default: a temporary folder).")] = None,
) -> None:
    """Run the shared method contract on a tiny synthetic cohort; exit 1 if a check fails."""
    from bench.api.registry import get_method
    from bench.tools.contract import TOY, run_contract

    for spec in module or []:
        _import_module(spec)
    info = get_method(name)
    _echo(f"check-method {info.name}: {info.title} ({info.modality}) from {info.source}")
    _echo(f"on a synthetic toy cohort ({TOY['n_patients']} patients, bags of ~{TOY['patches']} patches x "
          f"{TOY['dim']} features) through the shared data path and engine")
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    results = run_contract(info.name, workdir)
    width = max(len(r.name) for r in results)
    for r in results:
        _echo(f"  {r.status.upper():4}  {r.name:<{width}}  {r.reason}")
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    failed = [r.name for r in results if r.status == "fail"]
    _echo(f"{info.name}: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"
          + (f" — failed: {', '.join(failed)}" if failed else ""))
    if failed:
        # SystemExit, not typer.Exit: bench.cli.main runs the app with standalone_mode=False, where
        # click returns typer.Exit's code instead of exiting with it.
        raise SystemExit(1)


def register(app: typer.Typer) -> None:
    """Add the method-author commands to ``app``."""
    app.command("new-method")(new_method)
    app.command("check-method")(check_method)
