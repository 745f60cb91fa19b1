"""One table, four files: CSV (the numbers, for machines), Markdown, LaTeX booktabs fragment and
HTML <table> (the formatted cells, for people). Each file is written atomically."""

from __future__ import annotations

import html as html_lib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mimetic import io

MINUS = "\u2212"  # a real minus sign in displayed numbers (a hyphen is too short beside a plus)
DASH = "\u2013"  # an empty cell


@dataclass
class Table:
    """`data`: numbers (CSV); `display`: the same rows as strings (Markdown, LaTeX, HTML)."""

    name: str
    data: pd.DataFrame
    display: pd.DataFrame
    title: str
    notes: list[str] = field(default_factory=list)
    # LaTeX column types, one per display column (e.g. "l", "r", "p{5cm}"); None: columns whose
    # cells all read as numbers right, the rest left.
    align: list[str] | None = None

    def column_spec(self) -> list[str]:
        if self.align is not None:
            if len(self.align) != len(self.display.columns):
                raise ValueError(f"table {self.name}: {len(self.align)} column types for "
                                 f"{len(self.display.columns)} columns")
            return list(self.align)
        return ["r" if _numeric_column(self.display[c]) else "l" for c in self.display.columns]


_NUMBER_START = re.compile(rf"^[0-9+{MINUS}\[(<]|^{DASH}$|^$")


def _numeric_column(col: pd.Series) -> bool:
    return len(col) > 0 and all(_NUMBER_START.match(str(v)) for v in col)


# --- Number formatting: every table prints numbers the same way -------------------------------

def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def num(v: float | None, digits: int = 2) -> str:
    return DASH if _missing(v) else f"{v:.{digits}f}".replace("-", MINUS)


def signed(v: float | None, digits: int = 2) -> str:
    return DASH if _missing(v) else f"{v:+.{digits}f}".replace("-", MINUS)


def interval(lo: float | None, hi: float | None, digits: int = 2) -> str:
    return DASH if _missing(lo) or _missing(hi) else f"[{num(lo, digits)}, {num(hi, digits)}]"


def mean_sd(mean: float | None, sd: float | None, n: int | None = None, digits: int = 2) -> str:
    """'76.33 ± 3.21 (n=3)'; the sd is left out where unknown (a single run, or not published)."""
    if _missing(mean):
        return DASH
    text = num(mean, digits) + ("" if _missing(sd) else f" ± {num(sd, digits)}")
    return text + ("" if n is None or _missing(n) else f" (n={int(n)})")


def time_unit(seconds: float) -> tuple[str, float]:
    """(unit, seconds per unit) for durations up to `seconds`: s below 2 min, min below 2 h, h."""
    if _missing(seconds) or seconds < 120:
        return "s", 1.0
    return ("min", 60.0) if seconds < 7200 else ("h", 3600.0)


def pvalue(p: float | None) -> str:
    if _missing(p):
        return DASH
    return f"{p:.3f}" if p >= 0.001 else "<0.001"  # the exact value is in the CSV


# --- Markdown ---------------------------------------------------------------------------------

def _md_cell(v: object) -> str:
    return str(v).replace("|", r"\|").replace("\n", "<br>")


def markdown(t: Table) -> str:
    cols = list(t.display.columns)
    spec = t.column_spec()
    lines = [f"**{t.title}**", "", "| " + " | ".join(map(_md_cell, cols)) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in spec) + "|"]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in t.display.itertuples(index=False)]
    if t.notes:
        lines += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


# --- LaTeX (booktabs) -------------------------------------------------------------------------

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
# After escaping: symbols pdflatex's default input encoding does not map, as math or text macros.
_TEX_UNICODE = {"±": r"$\pm$", MINUS: r"$-$", DASH: "--", "\u2014": "---", "→": r"$\rightarrow$",
                "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "α": r"$\alpha$", "β": r"$\beta$",
                "Δ": r"$\Delta$", "\u2009": r"\,", "·": r"$\cdot$", "…": r"\ldots{}"}
_TEX_SPECIAL_RE = re.compile("|".join(map(re.escape, _TEX_SPECIAL)))


def tex_escape(text: object) -> str:
    """Plain text -> LaTeX source that prints it: special characters escaped, straight double
    quotes as ``opening'' and closing pairs, the Unicode symbols our tables use as macros."""
    s = _TEX_SPECIAL_RE.sub(lambda m: _TEX_SPECIAL[m.group()], str(text).replace("\n", "; "))
    s = re.sub(r'"([^"]*)"', r"``\1''", s)
    for char, macro in _TEX_UNICODE.items():
        s = s.replace(char, macro)
    return s


def latex(t: Table) -> str:
    """A tabular fragment for \\input inside a table environment (needs \\usepackage{booktabs}); the
    title and notes go in comments above it, for the caption."""
    head = [f"% {t.title}"] + [f"% {n}" for n in t.notes]
    head = [line.replace("\n", " ") for line in head]
    body = [r"\begin{tabular}{" + "".join(t.column_spec()) + "}", r"\toprule",
            " & ".join(tex_escape(c) for c in t.display.columns) + r" \\", r"\midrule"]
    body += [" & ".join(tex_escape(v) for v in row) + r" \\" for row in t.display.itertuples(index=False)]
    body += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(head + body) + "\n"


# --- HTML -------------------------------------------------------------------------------------

HTML_CLASS = "mimetic-table"
# Inline styles, not a <style> block: the table reads well alone, in Snakemake's report (whose
# page a <style> block in the landing text breaks) and pasted anywhere, and styles nothing else.
HTML_STYLE = {
    # No quote marks (font names unquoted, as CSS allows): one ' in the landing text broke the report
    # page's styles as a <style> block did.
    "table": "border-collapse: collapse; margin: 0.5em 0 1em; color: #222; font-size: 14px; line-height: 1.45; "
             "font-family: system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif",
    "caption": "caption-side: top; text-align: left; font-weight: 600; font-size: 15px; padding: 0 0 0.5em",
    "th": "padding: 0.35em 0.75em; border-bottom: 2px solid #555; vertical-align: bottom; text-align: left",
    "td": "padding: 0.35em 0.75em; border-bottom: 1px solid #ddd; vertical-align: top; "
          "font-variant-numeric: tabular-nums",
    "even": "background: #f6f7f9",  # every second body row
    "notes": "padding: 0.7em 0.75em 0; font-size: 12.5px; color: #555",
}


def html(t: Table) -> str:
    """A <table class="mimetic-table"> with inline styles (HTML_STYLE), numeric columns
    right-aligned; the title as its caption, notes in its footer."""
    esc = html_lib.escape

    def cell(tag: str, value: object, align: str) -> str:
        style = HTML_STYLE[tag] + ("; text-align: right" if align == "r" else "")
        return f'<{tag} style="{style}">' + esc(str(value)).replace("\n", "<br>") + f"</{tag}>"

    cols, spec = list(t.display.columns), t.column_spec()
    lines = [f'<table class="{HTML_CLASS}" style="{HTML_STYLE["table"]}">',
             f'<caption style="{HTML_STYLE["caption"]}">{esc(t.title)}</caption>', "<thead>",
             "<tr>" + "".join(cell("th", c, a) for c, a in zip(cols, spec)) + "</tr>", "</thead>", "<tbody>"]
    lines += [(f'<tr style="{HTML_STYLE["even"]}">' if i % 2 else "<tr>")
              + "".join(cell("td", v, a) for v, a in zip(row, spec)) + "</tr>"
              for i, row in enumerate(t.display.itertuples(index=False))]
    lines.append("</tbody>")
    if t.notes:
        notes = "<br>".join(esc(n) for n in t.notes)
        lines.append(f'<tfoot><tr><td colspan="{len(cols)}" style="{HTML_STYLE["notes"]}">{notes}</td></tr></tfoot>')
    lines.append("</table>")
    return "\n".join(lines) + "\n"


_WRITERS = {"csv": lambda path, t: io.write_csv(path, t.data), "md": lambda path, t: io.write_text(path, markdown(t)),
            "tex": lambda path, t: io.write_text(path, latex(t)), "html": lambda path, t: io.write_text(path, html(t))}


def write(t: Table, files: Mapping[str, str | os.PathLike], formats: Sequence[str]) -> list[Path]:
    """The table in each of `formats` (csv, md, tex, html), to files[f"{t.name}.{ext}"] (the
    caller names every file, e.g. the workflow the ones its rule declares); returns their paths."""
    missing = [f"{t.name}.{ext}" for ext in formats if f"{t.name}.{ext}" not in files]
    if missing:
        raise ValueError(f"no output file given for {missing}")
    paths = []
    for ext in formats:
        paths.append(Path(files[f"{t.name}.{ext}"]))
        _WRITERS[ext](paths[-1], t)
    return paths
