"""Rendering built tables as terminal text, Markdown, LaTeX or CSV (layout by tabulate; emphasis is ours).

A :class:`Table` is a title, one or more :class:`Block` s of rows, notes (where the numbers came
from) and the commands that would fill its missing cells, plus a tidy frame of the raw numbers
for CSV. Cells that carry an emphasis are rendered bold (best) or underlined (second best):
``**x**`` / ``<u>x</u>`` in Markdown, ``\\textbf{x}`` / ``\\underline{x}`` in LaTeX, ANSI bold /
underline on a colour terminal, plain otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench._core.errors import BenchError
from bench._core.files import write_text

FORMATS = ("terminal", "markdown", "latex", "csv")
EXTENSIONS = {"terminal": "txt", "markdown": "md", "latex": "tex", "csv": "csv"}
MISSING = "—"


@dataclass(frozen=True)
class Mark:
    """A table cell with an optional emphasis: ``best`` (bold) or ``second`` (underlined)."""

    text: str
    emphasis: str | None = None


@dataclass
class Block:
    caption: str
    headers: list[str]
    rows: list[list[str | Mark]]


@dataclass
class Table:
    name: str  # file stem, e.g. table1_best-val_cindex
    title: str
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BenchError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    return fmt


def render(table: Table, fmt: str, color: bool = False) -> str:
    """The whole table (blocks, notes, commands) in ``fmt``."""
    fmt = check_format(fmt)
    if fmt == "csv":
        return table.frame.to_csv(index=False)
    if fmt == "markdown":
        return _markdown(table)
    if fmt == "latex":
        return _latex(table)
    return _terminal(table, color)


def _cell(value: str | Mark, fmt: str, color: bool = False) -> str:
    text, emph = (value.text, value.emphasis) if isinstance(value, Mark) else (str(value), None)
    if fmt == "latex":
        text = latex_escape(text)
        if emph == "best":
            return rf"\textbf{{{text}}}"
        if emph == "second":
            return rf"\underline{{{text}}}"
        return text
    if emph is None:
        return text
    if fmt == "markdown":
        return f"**{text}**" if emph == "best" else f"<u>{text}</u>"
    if color:
        return f"\x1b[1m{text}\x1b[0m" if emph == "best" else f"\x1b[4m{text}\x1b[0m"
    return text


def _rows(block: Block, fmt: str, color: bool = False) -> list[list[str]]:
    return [[_cell(v, fmt, color) for v in row] for row in block.rows]


def _terminal(table: Table, color: bool) -> str:
    out = [table.title, ""]
    for b in table.blocks:
        if b.caption:
            out.append(b.caption)
        out.append(tabulate(_rows(b, "terminal", color), headers=b.headers, tablefmt="simple", disable_numparse=True))
        out.append("")
    out += [f"* {n}" for n in table.notes]
    if table.commands:
        out += ["", "To fill the missing cells, run:"] + [f"  {c}" for c in table.commands]
    return "\n".join(out).rstrip() + "\n"


def _markdown(table: Table) -> str:
    out = [f"### {table.title}", ""]
    for b in table.blocks:
        if b.caption:
            out += [f"**{b.caption}**", ""]
        out.append(tabulate(_rows(b, "markdown"), headers=b.headers, tablefmt="pipe", disable_numparse=True))
        out.append("")
    out += [f"- {n}" for n in table.notes]
    if table.commands:
        out += ["", "To fill the missing cells, run:", "", "```sh", *table.commands, "```"]
    return "\n".join(out).rstrip() + "\n"


def _latex(table: Table) -> str:
    out = [f"% {table.title}", r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}"]
    for b in table.blocks:
        if b.caption:
            out.append(rf"\par\smallskip\textit{{{latex_escape(b.caption)}}}\par")
        headers = [latex_escape(h) for h in b.headers]
        out.append(tabulate(_rows(b, "latex"), headers=headers, tablefmt="latex_raw", disable_numparse=True))
    if table.notes:
        out.append(r"\par\footnotesize " + r" \\ ".join(latex_escape(n) for n in table.notes))
    out.append(r"\end{table}")
    out += [f"% {c}" for c in table.commands]
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"±": r"$\pm$", "—": "--", "–": "--", "Δ": r"$\Delta$", "✓": r"\checkmark", "τ": r"$\tau$",
                  "≥": r"$\geq$", "×": r"$\times$", "−": "-", "…": r"\ldots"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few non-ASCII symbols the tables use to LaTeX."""
    return "".join(_LATEX_UNICODE.get(ch, _LATEX_SPECIAL.get(ch, ch)) for ch in text)


def check_out_folder(out: Path) -> Path:
    """``out`` as a folder to write into, or an error if it (or a folder above it) is a file."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"is inside {p}, which is a file"
                raise BenchError(f"--out {out} {what}, not a folder; give a folder to write into (it is created if "
                                 "missing)")
            break
    return out


def write_tables(tables: list[Table], folder: Path, fmt: str, log: Callable[[str], None] | None = None) -> list[Path]:
    """One file per table in ``folder`` (``<table name>.<ext>`` of ``fmt``), written atomically; ``log`` hears
    ``wrote <path>`` for each."""
    fmt = check_format(fmt)
    paths = []
    for t in tables:
        dest = Path(folder) / f"{t.name}.{EXTENSIONS[fmt]}"
        write_text(dest, render(t, fmt))
        paths.append(dest)
        if log is not None:
            log(f"wrote {dest}")
    return paths
