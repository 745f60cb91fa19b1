"""Figures, one function per figure; each writes PNG (and PDF beside it for papers)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workstations, cluster nodes and CI alike

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mimetic import io  # noqa: E402


def _save(fig: plt.Figure, out: str | Path) -> None:
    """Write `out` (PNG) and the same figure as PDF beside it, atomically."""
    out = Path(out)
    for path in (out, out.with_suffix(".pdf")):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=200, bbox_inches="tight")
    plt.close(fig)


def learning_curves(epochs: pd.DataFrame, out: str | Path, metric: str = "test_acc",
                    label: str = "test accuracy (%)") -> None:
    """`metric` vs epoch, one panel per experiment, one line per arm: mean over seeds with a
    band of ± one standard deviation."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.2)
    experiments = sorted(epochs["experiment"].unique())
    fig, axes = plt.subplots(1, len(experiments), figsize=(4.5 * len(experiments), 3.6), squeeze=False)
    for ax, exp in zip(axes[0], experiments):
        df = epochs[epochs["experiment"] == exp]
        n = df.groupby("arm")["seed"].nunique()
        sns.lineplot(df, x="epoch", y=metric, hue="arm", hue_order=sorted(n.index), errorbar="sd", ax=ax)
        ax.set(title=f"{exp} (mean ± sd over seeds)", xlabel="epoch", ylabel=label)
        ax.legend(title=None, labels=[f"{a} (n={n[a]})" for a in sorted(n.index)],
                  handles=ax.get_legend().legend_handles)
    fig.tight_layout()
    _save(fig, out)
