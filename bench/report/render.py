"""Rendering built tables as terminal text, Markdown, LaTeX or CSV (layout by tabulate; emphasis is ours).

A :class:`Table` is a title, one or more :class:`Block` s of rows, notes (where the numbers came
from) and the commands that would fill its missing cells, plus a tidy frame of the raw numbers
for CSV. Cells that carry an emphasis are rendered bold (best) or underlined (second best):
``**x**`` / ``<u>x</u>`` in Markdown, ``\\textbf{x}`` / ``\\underline{x}`` in LaTeX, ANSI bold /
underline on a colour terminal, plain otherwise.

A block may carry a row of spanning headers above its headers (``super_headers``, e.g. the paper's
"Datasets" over the cohort columns): a ``\\multicolumn`` row in LaTeX, the header row in Markdown with
the headers as a first (bold) row below it, a first header line on the terminal. A table in the
``paper`` style writes the p-values in its cells as ``a×10^-b`` (``$a\\times10^{-b}$`` in LaTeX).
"""

from __future__ import annotations

import re
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
STYLES = ("default", "paper")
_SCI = re.compile(r"\b(\d\.\d)e(-?\d+)\b")  # a p-value as format_p writes it: 1.7e-6


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
    super_headers: list[tuple[str, int]] | None = None  # (label, number of columns it spans), covering every column


@dataclass
class Table:
    name: str  # file stem, e.g. table1_best-val_cindex
    title: str
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    style: str = "default"  # "paper": p-values in cells as a×10^-b


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


def check_style(style: str) -> str:
    if style not in STYLES:
        raise BenchError(f"unknown style '{style}'; choose one of {', '.join(STYLES)}")
    return style


def sci_text(text: str, fmt: str) -> str:
    """``text`` with every ``1.7e-6`` written ``1.7×10^-6`` (``$1.7\\times10^{-6}$`` for ``fmt`` latex, the rest
    of the text LaTeX-escaped)."""
    if fmt != "latex":
        return _SCI.sub(lambda m: f"{m.group(1)}×10^{m.group(2)}", text)
    out, pos = [], 0
    for m in _SCI.finditer(text):
        out += [latex_escape(text[pos:m.start()]), rf"${m.group(1)}\times10^{{{m.group(2)}}}$"]
        pos = m.end()
    return "".join([*out, latex_escape(text[pos:])])


def _cell(value: str | Mark, fmt: str, color: bool = False, style: str = "default") -> str:
    text, emph = (value.text, value.emphasis) if isinstance(value, Mark) else (str(value), None)
    if fmt == "latex":
        text = sci_text(text, fmt) if style == "paper" else latex_escape(text)
        if emph == "best":
            return rf"\textbf{{{text}}}"
        if emph == "second":
            return rf"\underline{{{text}}}"
        return text
    if style == "paper":
        text = sci_text(text, fmt)
    if emph is None:
        return text
    if fmt == "markdown":
        return f"**{text}**" if emph == "best" else f"<u>{text}</u>"
    if color:
        return f"\x1b[1m{text}\x1b[0m" if emph == "best" else f"\x1b[4m{text}\x1b[0m"
    return text


def _rows(block: Block, fmt: str, color: bool = False, style: str = "default") -> list[list[str]]:
    return [[_cell(v, fmt, color, style) for v in row] for row in block.rows]


def _spread(block: Block) -> list[str]:
    """The super headers as one label per column: each at the first column of its span, "" elsewhere."""
    out: list[str] = []
    for label, span in block.super_headers or []:
        out += [label] + [""] * (span - 1)
    if len(out) != len(block.headers):
        raise BenchError(f"table block '{block.caption}': super headers span {len(out)} columns, the table has "
                         f"{len(block.headers)}")
    return out


def _terminal(table: Table, color: bool) -> str:
    out = [table.title, ""]
    for b in table.blocks:
        if b.caption:
            out.append(b.caption)
        headers = b.headers if not b.super_headers else [f"{t}\n{h}" for t, h in zip(_spread(b), b.headers,
                                                                                       strict=True)]
        out.append(tabulate(_rows(b, "terminal", color, table.style), headers=headers, tablefmt="simple",
                            disable_numparse=True))
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
        rows, headers = _rows(b, "markdown", style=table.style), b.headers
        if b.super_headers:  # pipe tables have one header row: the spanning one; the column names follow in bold
            rows, headers = [[f"**{h}**" if h else "" for h in b.headers], *rows], _spread(b)
        out.append(tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True))
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
        body = tabulate(_rows(b, "latex", style=table.style), headers=headers, tablefmt="latex_raw",
                        disable_numparse=True)
        if b.super_headers:  # a \multicolumn row above the column names, after the opening \hline
            cells = [latex_escape(t) if n == 1 else rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(t)}}}"
                     for t, n in b.super_headers]
            top, first = " & ".join(cells) + r" \\", body.index("\\hline") + len("\\hline")
            body = body[:first] + "\n" + top + body[first:]
        out.append(body)
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
