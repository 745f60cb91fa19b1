"""What the report writes, by name and format: the one owner of those names. The tables and
figures modules write these files; the workflow asks here which files its rules declare.

No pandas, no matplotlib, no torch: the workflow's planning imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

RECORDS = ("runs", "epochs")  # CSV tables of the finished runs (mimetic.report.records)
TABLES = ("summary", "main", "verdicts", "ablation", "initialization", "time_to_accuracy", "references")
GRID_TABLE = "grid"  # only when arms form an (alpha, beta) grid (has_grid)
TABLE_FORMATS = ("csv", "md", "tex", "html")
SUMMARY_FORMATS = ("csv", "md")  # the summary is for the folder, not for a paper
FIGURES = ("test_accuracy", "final_accuracy", "gain_forest", "arm_ranking", "time_to_accuracy")
GRID_FIGURE = "grid_heatmap"
FIGURE_FORMATS = ("png", "pdf")
ALPHA_BETA = ("alpha1", "alpha2", "beta1", "beta2")


def table_names(grid: bool) -> list[str]:
    return [*TABLES, *([GRID_TABLE] if grid else [])]


def formats(table: str) -> tuple[str, ...]:
    return SUMMARY_FORMATS if table == "summary" else TABLE_FORMATS


def table_files(folder: str | Path, grid: bool) -> dict[str, str]:
    """'<name>.<ext>' -> path of every table file, in table_names order."""
    return {f"{n}.{ext}": f"{folder}/{n}.{ext}" for n in table_names(grid) for ext in formats(n)}


def figure_names(grid: bool) -> list[str]:
    return [*FIGURES, *([GRID_FIGURE] if grid else [])]


def figure_files(folder: str | Path, grid: bool) -> dict[str, str]:
    """'<name>.<ext>' -> path of every results figure file."""
    return {f"{n}.{ext}": f"{folder}/{n}.{ext}" for n in figure_names(grid) for ext in FIGURE_FORMATS}


def record_files(folder: str | Path) -> dict[str, str]:
    """name -> path of the run records' CSV tables."""
    return {n: f"{folder}/{n}.csv" for n in RECORDS}


def structure_stems(folder: str | Path, experiment: str, arms: list[str], seed: int) -> dict[str, list[str]]:
    """An experiment's structure figures, without their formats (FIGURE_FORMATS): each arm's trained
    heatmaps, the sources side by side, and their diagonal profile."""
    return {"heatmaps": [f"{folder}/structure/{experiment}/{a}_seed{seed}_final_heatmaps" for a in arms],
            "compare": [f"{folder}/structure_{experiment}"],
            "profile": [f"{folder}/structure_profile_{experiment}"]}


def pretrained_stems(folder: str | Path, labels: list[str]) -> dict[str, list[str]]:
    """The pretrained models' figures, without their formats: each one's heatmaps, and one profile
    of them all (none without models)."""
    return {"heatmaps": [f"{folder}/pretrained/{p}_heatmaps" for p in labels],
            "profile": [f"{folder}/pretrained_profile"] if labels else []}


def with_formats(stems: list[str]) -> list[str]:
    """Each figure stem's files, one per FIGURE_FORMATS."""
    return [f"{stem}.{ext}" for stem in stems for ext in FIGURE_FORMATS]


def grid_groups(arms: Mapping[str, tuple[str, Mapping]]) -> list[list[str]]:
    """Arms that form an (alpha, beta) grid: those sharing one init and every parameter other than
    alpha1/alpha2/beta1/beta2 (e.g. dist), with at least two distinct (alpha, beta) settings.
    `arms`: label -> (init, complete parameters). Groups in sorted order, arms sorted."""
    groups: dict[tuple[str, str], list[str]] = {}
    for label, (init, params) in sorted(arms.items()):
        if not any(k in params for k in ALPHA_BETA):
            continue
        rest = json.dumps({k: v for k, v in params.items() if k not in ALPHA_BETA}, sort_keys=True)
        groups.setdefault((init, rest), []).append(label)
    out = []
    for _, labels in sorted(groups.items()):
        settings = {tuple(arms[a][1].get(k) for k in ALPHA_BETA) for a in labels}
        if len(settings) >= 2:
            out.append(labels)
    return out


def has_grid(arms_config: Mapping[str, Mapping], baseline: str = "default") -> bool:
    """Whether a workflow config's `arms` (label -> {init, params}) other than the baseline form an
    (alpha, beta) grid, as the runs will record them (parameters completed with the init's
    defaults): for declaring the grid's table and figure."""
    from mimetic.attention.init import check_params

    arms = {label: (a["init"], check_params(a["init"], dict(a.get("params") or {})))
            for label, a in arms_config.items() if label != baseline}
    return bool(grid_groups(arms))


# The package's code behind each kind of output: the workflow makes these files inputs of the
# rules whose outputs they shape, so editing a table's code re-makes the tables and no figure.
CODE = {
    "tables": ("report/records.py", "report/stats.py", "report/compare.py", "report/render.py", "report/tables.py",
               "report/claims.py", "report/outputs.py"),
    "figures": ("report/_plot.py", "report/figures.py", "report/compare.py", "report/stats.py",
                "report/render.py", "report/outputs.py"),
    "structure_figures": ("report/_plot.py", "report/structure_figures.py"),
    "provenance": ("provenance.py",),
}
