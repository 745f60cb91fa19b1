"""What every figure shares: headless matplotlib, a look set per figure (never global state),
and atomic writes of each file a figure is given (PNG, PDF: by suffix)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workstations, cluster nodes and CI alike

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from mimetic import io  # noqa: E402

Outputs = str | Path | Sequence[str | Path]


@contextlib.contextmanager
def look(style: str = "whitegrid", font_scale: float = 1.15, rc: dict | None = None) -> Iterator[None]:
    """seaborn's paper context and `style` for the figures made (and saved) inside: nothing leaks
    into the next figure, whatever was drawn before."""
    with sns.axes_style(style), sns.plotting_context("paper", font_scale=font_scale, rc=rc), \
            plt.rc_context({"pdf.fonttype": 42}):
        yield


def save(fig: plt.Figure, out: Outputs) -> None:
    """Write the figure to each file of `out` (PNG, PDF, SVG: by suffix), atomically."""
    for path in [out] if isinstance(out, (str, Path)) else out:
        path = Path(path)
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=200, bbox_inches="tight")
    plt.close(fig)
