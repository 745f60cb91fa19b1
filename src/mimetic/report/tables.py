"""The result tables: numbers from mimetic.report.compare, formatted for people, each written as CSV,
Markdown, LaTeX booktabs fragment and HTML by mimetic.report.render.

write_all() writes, under out_dir, <name>.csv/.md/.tex/.html for each name in
  main               per experiment (one row per claim on it): baseline and treatment accuracy,
                     paired gain with intervals and p, claimed gain, verdict, published numbers
  verdicts           per claim: claimed vs measured gain, verdict; each quoted sentence and source once
  ablation           every arm of every experiment vs the baseline, paired
  initialization     every arm: its init, what it touches, its first layer's Q/K and V/Proj statistics at init
  time_to_accuracy   epochs and wall time for each arm to reach the baseline's mean final
                     accuracy and fixed levels, paired by seed
  references         the published numbers with their source and setting
  grid               only when arms form an (alpha, beta) grid (outputs.has_grid on the config)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from mimetic.attention.init import ATTENTION_PARTS
from mimetic.report import compare, outputs, render, stats
from mimetic.report.claims import Claim, Reference
from mimetic.report.render import DASH, Table, interval, mean_sd, pvalue, signed, time_unit

_VERDICT_RULE = ("Verdict from the 95% t-interval [lo, hi] of the paired gain: reproduced (lo > 0 and hi >= "
                 "claimed), smaller gain (lo > 0, hi < claimed), no significant gain (lo <= 0 <= hi), reversed "
                 "(hi < 0), too few seeds (n < 2), not run (experiment or arm absent); without a claim, "
                 "significant gain (lo > 0).")
_PUBLISHED = ("Published numbers come from other work in other settings (references table, with sources); "
              "they are shown beside ours and never enter our statistics.")


def _metric_note(metrics: pd.Series) -> str:
    names = {"final_test_acc": "final", "best_test_acc": "best (selected on the test set)"}
    used = ", ".join(names.get(m, m) for m in metrics.unique()) or "final"
    return f"Accuracy: {used} top-1 test accuracy (%), mean ± sd over seeds (n runs)."


def _claimed(v: float) -> str:
    return DASH if math.isnan(v) else f"{v:+g}".replace("-", render.MINUS)


def summary_table(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str,
                  treatment: str = compare.TREATMENT) -> Table:
    data = compare.ablation(runs, baseline, treatment)
    reach = compare.time_to_accuracy(compare.reach(runs, epochs, compare.targets(runs, baseline, [])), baseline,
                                     treatment).set_index(["experiment", "arm"])
    keys = list(zip(data["experiment"], data["arm"]))
    data = data.assign(epochs_to_baseline_final=[reach["epochs_mean"].get(k, math.nan) for k in keys],
                       reached_baseline=[f"{int(reach.loc[k, 'reached'])}/{int(reach.loc[k, 'n'])}" if k in reach.index
                                         else DASH for k in keys])
    display = pd.DataFrame({
        "experiment": data["experiment"], "arm": data["arm"],
        "seeds": [f"{n} ({seeds})" for n, seeds in data[["n", "seeds"]].values],
        "final acc (%)": [mean_sd(m, sd) for m, sd in data[["mean", "sd"]].values],
        "min – max": [f"{render.num(lo)} – {render.num(hi)}" for lo, hi in data[["min", "max"]].values],
        "gain": data["gain_mean"].map(signed),
        "95% t-interval": [interval(lo, hi) for lo, hi in data[["gain_t_lo", "gain_t_hi"]].values],
        "p": data["gain_p"].map(pvalue),
        f"epochs to {baseline} final": [f"{render.num(e, 1)} ({r})" for e, r in
                                        data[["epochs_to_baseline_final", "reached_baseline"]].values]})
    notes = [_metric_note(pd.Series([compare.METRIC])),
             f"Gain over {baseline} paired by seed, in accuracy points; {stats.INTERVAL_METHOD}; "
             f"p: {stats.TEST_METHOD}.",
             f"Epochs to {baseline} final: mean first epoch whose test accuracy reaches the {baseline} arm's mean "
             "final accuracy, over the runs that reach it (runs that do / runs)."]
    return Table("summary", data, display, f"Final test accuracy over seeds and the gain over {baseline}", notes)


def main_table(runs: pd.DataFrame, baseline: str, claims: Sequence[Claim] = (),
               references: Sequence[Reference] = (), treatment: str = compare.TREATMENT) -> Table:
    data = compare.main(runs, baseline, claims, references, treatment)
    # One comparison throughout: the arm names head the columns. Several (claims on other arms):
    # generic headers and a column naming each row's comparison.
    several = data["baseline"].nunique() > 1 or data["treatment"].nunique() > 1
    base_name, treat_name = ("baseline", "treatment") if several or data.empty else (
        data["baseline"].iloc[0], data["treatment"].iloc[0])
    columns = {
        "experiment": data["experiment"],
        "claim": [c or DASH for c in data["claim"]],
        "comparison": [f"{t} vs {b}" for t, b in data[["treatment", "baseline"]].values],
        f"{base_name} (%)": [mean_sd(*r) for r in data[["baseline_mean", "baseline_sd", "baseline_n"]].values],
        f"{treat_name} (%)": [mean_sd(*r) for r in data[["treatment_mean", "treatment_sd", "treatment_n"]].values],
        "gain (points)": data["gain_mean"].map(signed),
        "95% t-interval": [interval(lo, hi) for lo, hi in data[["gain_t_lo", "gain_t_hi"]].values],
        "95% bootstrap": [interval(lo, hi) for lo, hi in data[["gain_boot_lo", "gain_boot_hi"]].values],
        "p": data["gain_p"].map(pvalue),
        "claimed": data["claimed_gain"].map(_claimed),
        "verdict": data["verdict"],
        f"published ({base_name} → {treat_name})": [
            compare.published(references, e, [b, t], compact=True) or DASH
            for e, b, t in data[["experiment", "baseline", "treatment"]].values],
    }
    if not several:
        del columns["comparison"]
    display = pd.DataFrame(columns)
    notes = [_metric_note(data["metric"]),
             f"Gain: treatment − baseline paired by seed, in accuracy points; {stats.INTERVAL_METHOD}; "
             f"p: {stats.TEST_METHOD}.",
             _VERDICT_RULE, _PUBLISHED]
    align = ["l", "l"] + ["l"] * several + ["r"] * 7 + ["l", "p{4.2cm}"]
    return Table("main", data, display, f"{treat_name} vs {base_name}: final test accuracy, paired gain and "
                 "verdict on each claim", notes, align)


def verdicts_table(runs: pd.DataFrame, baseline: str, claims: Sequence[Claim]) -> Table:
    """Per claim: claimed vs measured gain and the verdict. Claims often quote one sentence (the
    abstract's, for CIFAR-10 and ImageNet): each quote and its source is printed once, in the
    notes, and the claims point at it by number (the CSV keeps every claim's own quote)."""
    data = compare.verdicts(compare.main(runs, baseline, claims), claims)
    sources = {}  # (quote, source) -> its number, in order of first use
    for key in zip(data["quote"], [s + (f" ({u})" if u else "") for s, u in data[["source", "url"]].values]):
        sources.setdefault(key, len(sources) + 1)
    display = pd.DataFrame({
        "claim": data["claim"],
        "comparison": [f"{e}: {t} vs {b}" for e, t, b in data[["experiment", "treatment", "baseline"]].values],
        "claimed": data["claimed_gain"].map(_claimed) if len(data) else [],
        "measured (95% t-interval)": [f"{signed(m)} {interval(lo, hi)}" if not math.isnan(m) else DASH
                                      for m, lo, hi in data[["gain_mean", "gain_t_lo", "gain_t_hi"]].values],
        "n": [DASH if math.isnan(n) else str(int(n)) for n in data["gain_n"]] if len(data) else [],
        "verdict": data["verdict"],
        "source": [f"[{sources[key]}]" for key in zip(data["quote"], [
            s + (f" ({u})" if u else "") for s, u in data[["source", "url"]].values])] if len(data) else [],
    }, columns=["claim", "comparison", "claimed", "measured (95% t-interval)", "n", "verdict", "source"])
    notes = ["Gains in accuracy points, paired by seed (main table for both arms' accuracy).", _VERDICT_RULE,
             *(f"[{k}] “{quote}” {source}." for (quote, source), k in sources.items())]
    align = ["l", "l", "r", "r", "r", "l", "l"]
    return Table("verdicts", data, display, "Claims and their verdicts", notes, align)


def _params_text(init_params: str) -> str:
    p = json.loads(init_params or "{}")
    names = {"alpha1": "α1", "beta1": "β1", "alpha2": "α2", "beta2": "β2"}
    parts = [f"{names[k]}={p[k]:g}" for k in ("alpha1", "beta1", "alpha2", "beta2") if k in p]
    parts += [f"{k}={v}" for k, v in sorted(p.items()) if k not in names]
    return ", ".join(parts) or DASH


def ablation_table(runs: pd.DataFrame, baseline: str, treatment: str = compare.TREATMENT) -> Table:
    data = compare.ablation(runs, baseline, treatment)
    display = pd.DataFrame({
        "experiment": data["experiment"], "arm": data["arm"], "init": data["init"],
        "parameters": data["init_params"].map(_params_text),
        "accuracy (%)": [mean_sd(*r) for r in data[["mean", "sd", "n"]].values],
        f"gain vs {baseline}": data["gain_mean"].map(signed),
        "95% t-interval": [interval(lo, hi) for lo, hi in data[["gain_t_lo", "gain_t_hi"]].values],
        "95% bootstrap": [interval(lo, hi) for lo, hi in data[["gain_boot_lo", "gain_boot_hi"]].values],
        "p": data["gain_p"].map(pvalue), "verdict": data["verdict"]})
    notes = [_metric_note(pd.Series([compare.METRIC])),
             f"Gain: arm − {baseline} paired by seed, in accuracy points; {stats.INTERVAL_METHOD}; "
             f"p: {stats.TEST_METHOD}, not corrected for multiple comparisons.", _VERDICT_RULE]
    return Table("ablation", data, display, f"Every arm against {baseline}, paired by seed", notes,
                 ["l", "l", "l", "l", "r", "r", "r", "r", "r", "l"])


def initialization_table(runs: pd.DataFrame, baseline: str, treatment: str = compare.TREATMENT) -> Table:
    """Per experiment and arm: the init, what it declares it touches (everything else is the
    model's own init of the same seed, bit for bit) and layer 1's products at initialization."""
    from mimetic.report.records import INIT_STATS

    cols = ["touches", *(f"init_{k}" for k in INIT_STATS)]
    df = runs.assign(**{c: runs[c] if c in runs.columns else math.nan for c in cols})
    df["touches"] = df["touches"].fillna(DASH).astype(str)
    stats_of = df.groupby(["experiment", "arm"]).agg(touches=("touches", "first"), n=("seed", "size"),
                                                     **{k: (f"init_{k}", "mean") for k in INIT_STATS})
    rows = []
    for info in compare.arms_of(runs).to_dict("records"):
        rows.append({**info, **stats_of.loc[(info["experiment"], info["arm"])].to_dict()})
    order = {e: compare.arm_order(runs[runs["experiment"] == e]["arm"].unique(), baseline, treatment)
             for e in runs["experiment"].unique()}
    rows.sort(key=lambda r: (r["experiment"], order[r["experiment"]].index(r["arm"])))
    data = pd.DataFrame(rows, columns=["experiment", "arm", "init", "init_params", "touches", "n", *INIT_STATS])

    def num(v: float, sign: str = "+") -> str:
        return DASH if math.isnan(v) else f"{v:{sign}.3f}".replace("-", render.MINUS)

    def readable(touches: str) -> str:  # the declared patterns, without their regular-expression escapes
        return touches.replace("\\..*", ".*").replace("\\.", ".").replace("\\d+", "N")

    attention = {*ATTENTION_PARTS, "nothing", DASH}
    beyond = {a: readable(" ".join(t for t in touches.split() if t not in attention))
              for a, touches in zip(data["arm"], data["touches"]) if set(touches.split()) - attention}

    display = pd.DataFrame({
        "experiment": data["experiment"], "arm": data["arm"], "init": data["init"],
        "parameters": data["init_params"].map(_params_text), "touches": data["touches"].map(readable),
        "Q/K diag": data["qk_diag_mean"].map(num), "Q/K |off-diag|": data["qk_offdiag_abs_mean"].map(num, sign=""),
        "V/Proj diag": data["vo_diag_mean"].map(num),
        "V/Proj |off-diag|": data["vo_offdiag_abs_mean"].map(num, sign="")})
    notes = ["Touches: the tensors the init may write (q, k, v, proj of every attention layer; others by name); "
             "every other tensor is the model's own initialization of the same seed, bit for bit (each run's "
             "init.json lists them).",
             "Layer 1 at initialization: diagonal mean and mean |off-diagonal| of W_q^h W_k^h^T (mean over heads) "
             "and of W_v W_proj, mean over seeds."]
    if beyond:
        notes.append("Beyond attention: " + "; ".join(f"{a} also writes {t}" for a, t in beyond.items()) + ".")
    return Table("initialization", data, display, "Initialization: what each arm changes, and layer 1's products",
                 notes, ["l", "l", "l", "l", "l", "r", "r", "r", "r"])


def grid_table(runs: pd.DataFrame, baseline: str) -> Table | None:
    """The (alpha, beta) grid, one row per alpha setting and one column per beta setting, or None."""
    data = compare.grid(runs, baseline)
    if data.empty:
        return None
    data = data.assign(alpha=[compare.axis_label(r, "alpha") for r in data.to_dict("records")],
                       beta=[compare.axis_label(r, "beta") for r in data.to_dict("records")])
    uniform_n = data["n"].nunique() == 1
    data["cell"] = [f"{mean_sd(m, s, None if uniform_n else n)}, Δ {signed(g)} {interval(lo, hi)}"
                    for m, s, n, g, lo, hi in data[["mean", "sd", "n", "gain_mean", "gain_t_lo", "gain_t_hi"]].values]
    betas = sorted(data["beta"].unique(), key=lambda b: [float(x) for x in b.split(" / ")] if b else [])
    rows = []
    for (exp, group), part in data.groupby(["experiment", "group"], sort=True):
        fixed = ", ".join(f"{k}={v}" for k, v in json.loads(part["fixed_params"].iloc[0]).items())
        for alpha in sorted(part["alpha"].unique(), key=lambda a: [float(x) for x in a.split(" / ")] if a else []):
            cells = part[part["alpha"] == alpha].set_index("beta")["cell"]
            rows.append({"experiment": exp, "init": part["init"].iloc[0] + (f" ({fixed})" if fixed else ""),
                         "α (Q/K / V/Proj)": alpha, **{f"β = {b}": cells.get(b, DASH) for b in betas}})
    display = pd.DataFrame(rows)
    data = data.drop(columns=["cell"])
    n_note = f"n = {int(data['n'].iloc[0])} seeds per cell. " if uniform_n else ""
    notes = [f"Cells: final test accuracy (%), mean ± sd over seeds, and Δ: the gain over {baseline} paired by "
             f"seed with its 95% t-interval. {n_note}α and β: Q/K value / V/Proj value (one value where the "
             "init sets only one product).",
             "Arms form a grid when they share an init and every parameter but α and β."]
    return Table(outputs.GRID_TABLE, data, display, f"(α, β) grid against {baseline}", notes,
                 ["l", "l", "l"] + ["r"] * len(betas))


def time_table(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str, treatment: str = compare.TREATMENT,
               levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None) -> Table:
    goals = compare.targets(runs, baseline, levels)
    data = compare.time_to_accuracy(compare.reach(runs, epochs, goals), baseline, treatment)
    unit, scale = time_unit(pd.concat([data["wall_time_mean"], data["d_wall_time_mean"].abs()]).max())
    base_rows = data["arm"] == baseline
    display = pd.DataFrame({
        "experiment": data["experiment"],
        "target": [f"{t} ({a:.2f}%)" if not t.endswith("%") else t for t, a in data[["target", "target_acc"]].values],
        "arm": data["arm"],
        "reached": [f"{r}/{n}" for r, n in data[["reached", "n"]].values],
        "epochs": [mean_sd(m, s, digits=1) for m, s in data[["epochs_mean", "epochs_sd"]].values],
        f"Δ epochs vs {baseline}": [DASH if b else f"{signed(m, 1)} {interval(lo, hi, 1)}".replace(f" {DASH}", "")
                                    for b, m, lo, hi in zip(base_rows, data["d_epochs_mean"], data["d_epochs_t_lo"],
                                                            data["d_epochs_t_hi"])],
        f"wall time ({unit})": [mean_sd(m / scale, s / scale) for m, s in
                                data[["wall_time_mean", "wall_time_sd"]].values],
        f"Δ wall time ({unit})": [DASH if b else f"{signed(m / scale)} {interval(lo / scale, hi / scale)}".replace(
            f" {DASH}", "") for b, m, lo, hi in zip(base_rows, data["d_wall_time_mean"], data["d_wall_time_t_lo"],
                                                   data["d_wall_time_t_hi"])],
        "speed-up": [DASH if b or math.isnan(v) else f"{v:.2f}×" for b, v in zip(base_rows, data["speedup"])],
    })
    notes = [f"First epoch whose test accuracy reaches the target, and the cumulative wall time at its end; mean ± "
             f"sd over the runs that reach it (reached: runs that do / runs). Targets: the {baseline} arm's mean "
             "final accuracy and fixed levels.",
             f"Δ: arm − {baseline} paired by seed over the seeds where both reach the target (negative: faster), "
             f"mean and 95% t-interval; speed-up: mean {baseline} epochs / mean arm epochs over those seeds.",
             "Wall time depends on the device and on other jobs sharing it (runs record their device)."]
    return Table("time_to_accuracy", data, display, "Time to accuracy, paired by seed", notes,
                 ["l", "l", "l", "r", "r", "r", "r", "r", "r"])


def references_table(references: Sequence[Reference], arms: Sequence[str] = ("default", "mimetic")) -> Table:
    data = compare.references_frame(references)
    arms = list(dict.fromkeys([*arms, *data["arm"]]))
    rows = []
    for r in references:
        origin = r.origin.replace("_", " ") + (", secondary" if r.secondary else "")
        rows.append({"id": r.id, "origin": origin, "experiment": r.experiment,
                     "setting": r.setting,
                     **{f"{a} (%)": mean_sd(r.arms[a].mean, r.arms[a].sd, r.arms[a].n) if a in r.arms else DASH
                        for a in arms},
                     "source": r.source + (f" ({r.url})" if r.url else ""), "note": r.note or DASH})
    cols = ["id", "origin", "experiment", "setting", *[f"{a} (%)" for a in arms], "source", "note"]
    display = pd.DataFrame(rows, columns=cols)
    notes = ["Top-1 test accuracy (%) as published: mean ± sd (n runs) where the source gives them. Settings differ "
             "from ours; these numbers are context and never enter our statistics. Secondary: read from someone "
             "else's copy of the number (a chart, a digest, a review), not from the authors' own paper or code."]
    return Table("references", data, display, "Published results of others", notes,
                 ["l", "l", "l", "p{3.2cm}"] + ["r"] * len(arms) + ["p{4.5cm}", "p{4cm}"])


def build_all(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str, claims: Sequence[Claim] = (),
              references: Sequence[Reference] = (), *, treatment: str = compare.TREATMENT,
              levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None) -> list[Table]:
    """Every table, in outputs.TABLES order, then the grid where there is one."""
    tables = [summary_table(runs, epochs, baseline, treatment),
              main_table(runs, baseline, claims, references, treatment), verdicts_table(runs, baseline, claims),
              ablation_table(runs, baseline, treatment), initialization_table(runs, baseline, treatment),
              time_table(runs, epochs, baseline, treatment, levels),
              references_table(references, [baseline, treatment])]
    grid = grid_table(runs, baseline)
    return tables + ([grid] if grid is not None else [])


def write_all(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str, claims: Sequence[Claim],
              references: Sequence[Reference], out: str | os.PathLike | Mapping[str, str | os.PathLike], *,
              treatment: str = compare.TREATMENT,
              levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None) -> list[Path]:
    """Write every table in its formats (outputs.formats) to the files `out` maps '<name>.<ext>'
    to, or into the folder `out`; returns the paths written."""
    built = build_all(runs, epochs, baseline, claims, references, treatment=treatment, levels=levels)
    if isinstance(out, (str, os.PathLike)):
        out = outputs.table_files(out, any(t.name == outputs.GRID_TABLE for t in built))
    paths = []
    for t in built:
        paths += render.write(t, out, outputs.formats(t.name))
    return paths
