"""The result tables: numbers from mimetic.report.compare, formatted for people, each written as CSV,
Markdown, LaTeX booktabs fragment and HTML by mimetic.report.render. Each row speaks its
experiment's metric (compare.Metric: accuracy in %, or validation loss in nats per token, lower
is better, whose gain is baseline loss - arm loss); where a table's rows have one metric its
headers carry the unit, where they mix metrics a `metric` column names each row's.

write_all() writes, under out_dir, <name>.csv/.md/.tex/.html for each name in
  main               per experiment (one row per claim on it): baseline and treatment accuracy,
                     paired gain with intervals and p, claimed gain, verdict, published numbers
  verdicts           per claim: claimed vs measured gain, verdict; each quoted sentence and source once
  ablation           every arm of every experiment vs the baseline, paired
  initialization     every arm: its init, what it touches, its first layer's Q/K and V/Proj statistics at init
  time_to_accuracy   epochs (steps, for language models) and wall time for each arm to reach the
                     baseline's mean final value and fixed levels, paired by seed
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
from mimetic.report.claims import SIGNS, Claim, Reference
from mimetic.report.render import DASH, Table, interval, mean_sd, pvalue, signed, time_unit

_VERDICT_RULE = ("Verdict from the 95% t-interval [lo, hi] of the paired gain: reproduced (lo > 0 and hi >= "
                 "claimed), smaller gain (lo > 0, hi < claimed), no significant gain (lo <= 0 <= hi), reversed "
                 "(hi < 0), too few seeds (n < 2), not run (experiment or arm absent); a claimed direction only "
                 "(> 0 or < 0: the source gives no number): reproduced when the interval excludes 0 on the claimed "
                 "side, reversed on the other, no significant gain when it contains 0; without a claim, "
                 "significant gain (lo > 0).")
_PUBLISHED = ("Published numbers come from other work in other settings (references table, with sources); "
              "they are shown beside ours and never enter our statistics.")
_MEANING = {"vision": "top-1 test accuracy (%)",
            "lm": "mean cross-entropy over the validation split in nats per token (lower is better)"}
_SELECTED = {"vision": "selected on the test set", "lm": "the lowest of its evaluations"}


def _metrics(columns: pd.Series) -> list[compare.Metric]:
    return [compare.metric_named(c) for c in columns]


def _shared(metrics: Sequence[compare.Metric]) -> compare.Metric | None:
    """The one metric of every row; None where the rows mix metrics (or there are none)."""
    return metrics[0] if metrics and all(m == metrics[0] for m in metrics) else None


def _metric_note(columns: pd.Series) -> str:
    used: dict[compare.Metric, list[str]] = {}
    for c in columns.unique():
        m = compare.metric_named(c)
        used.setdefault(m, []).append("best (" + _SELECTED[m.kind] + ")" if c == m.best else "final")
    used = used or {compare.ACCURACY: ["final"]}
    return " ".join(f"{m.name.capitalize()}: {', '.join(w)} {_MEANING[m.kind]}, mean ± sd over seeds (n runs)."
                    for m, w in used.items())


def _gain_note(metrics: Sequence[compare.Metric], arm: str = "treatment", baseline: str = "baseline") -> str:
    """What a gain is, for each metric among `metrics`."""
    ms = list(dict.fromkeys(metrics)) or [compare.ACCURACY]
    parts = []
    for m in ms:
        asides = [m.task] * (len(ms) > 1) + [f"positive: the {arm} is better"] * (not m.higher_is_better)
        parts.append(f"{m.gain_text(arm, baseline)} in {m.gain_words}" + (f" ({'; '.join(asides)})" if asides else ""))
    return "Gain paired by seed: " + "; ".join(parts)


def _reach_words(m: compare.Metric) -> str:
    """'first epoch whose test accuracy is at or above'."""
    return (f"first {'evaluation ' * (m.x == 'step')}{m.x} whose {m.name} is at or "
            f"{'above' if m.higher_is_better else 'below'}")


def _claimed(v: float, direction: str = "") -> str:
    if direction:
        return "> 0" if SIGNS[direction] > 0 else "< 0"
    return DASH if math.isnan(v) else f"{v:+g}".replace("-", render.MINUS)


def summary_table(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str,
                  treatment: str = compare.TREATMENT) -> Table:
    data = compare.ablation(runs, baseline, treatment)
    reach = compare.time_to_accuracy(compare.reach(runs, epochs, compare.targets(runs, baseline, [])), baseline,
                                     treatment).set_index(["experiment", "arm"])
    keys = list(zip(data["experiment"], data["arm"]))
    data = data.assign(to_baseline_final=[reach["at_mean"].get(k, math.nan) for k in keys],
                       reached_baseline=[f"{int(reach.loc[k, 'reached'])}/{int(reach.loc[k, 'n'])}" if k in reach.index
                                         else DASH for k in keys])
    ms = _metrics(data["metric"])
    one = _shared(ms)
    display = pd.DataFrame({
        "experiment": data["experiment"], "arm": data["arm"],
        **({} if one else {"metric": [m.label_of(c) for m, c in zip(ms, data["metric"])]}),
        "seeds": [f"{n} ({seeds})" for n, seeds in data[["n", "seeds"]].values],
        f"final {one.short} ({one.unit})" if one else "final": [
            mean_sd(mean, sd, digits=m.digits) for m, mean, sd in zip(ms, data["mean"], data["sd"])],
        "min – max": [f"{render.num(lo, m.digits)} – {render.num(hi, m.digits)}"
                      for m, lo, hi in zip(ms, data["min"], data["max"])],
        "gain": [signed(g, m.digits) for m, g in zip(ms, data["gain_mean"])],
        "95% t-interval": [interval(lo, hi, m.digits) for m, lo, hi in zip(ms, data["gain_t_lo"], data["gain_t_hi"])],
        "p": data["gain_p"].map(pvalue),
        f"{one.xs if one else 'epochs / steps'} to {baseline} final": [
            f"{render.num(e, 1)} ({r})" for e, r in data[["to_baseline_final", "reached_baseline"]].values]})
    notes = [_metric_note(data["metric"]),
             f"{_gain_note(ms, 'arm', baseline)}; {stats.INTERVAL_METHOD}; p: {stats.TEST_METHOD}.",
             *(f"{m.xs.capitalize()} to {baseline} final: mean {_reach_words(m)} the {baseline} arm's mean final "
               f"{m.name}, over the runs that reach it (runs that do / runs)." for m in dict.fromkeys(ms))]
    what = f"Final {one.name}" if one else "Final accuracy or loss"
    return Table("summary", data, display, f"{what} over seeds and the gain over {baseline}", notes)


def main_table(runs: pd.DataFrame, baseline: str, claims: Sequence[Claim] = (),
               references: Sequence[Reference] = (), treatment: str = compare.TREATMENT) -> Table:
    data = compare.main(runs, baseline, claims, references, treatment)
    ms = _metrics(data["metric"])
    one = _shared(ms)
    unit = f" ({one.unit})" if one else ""
    # One comparison throughout: the arm names head the columns. Several (claims on other arms):
    # generic headers and a column naming each row's comparison.
    several = data["baseline"].nunique() > 1 or data["treatment"].nunique() > 1
    base_name, treat_name = ("baseline", "treatment") if several or data.empty else (
        data["baseline"].iloc[0], data["treatment"].iloc[0])
    columns = {
        "experiment": data["experiment"],
        "claim": [c or DASH for c in data["claim"]],
        "comparison": [f"{t} vs {b}" for t, b in data[["treatment", "baseline"]].values],
        "metric": [m.label_of(c) for m, c in zip(ms, data["metric"])],
        f"{base_name}{unit}": [mean_sd(*r, digits=m.digits) for m, r in
                               zip(ms, data[["baseline_mean", "baseline_sd", "baseline_n"]].values)],
        f"{treat_name}{unit}": [mean_sd(*r, digits=m.digits) for m, r in
                                zip(ms, data[["treatment_mean", "treatment_sd", "treatment_n"]].values)],
        f"gain ({one.gain_unit})" if one else "gain": [signed(g, m.digits) for m, g in zip(ms, data["gain_mean"])],
        "95% t-interval": [interval(lo, hi, m.digits) for m, lo, hi in zip(ms, data["gain_t_lo"], data["gain_t_hi"])],
        "95% bootstrap": [interval(lo, hi, m.digits)
                          for m, lo, hi in zip(ms, data["gain_boot_lo"], data["gain_boot_hi"])],
        "p": data["gain_p"].map(pvalue),
        "claimed": [_claimed(v, d) for v, d in data[["claimed_gain", "claimed_direction"]].values],
        "verdict": data["verdict"],
        f"published ({base_name} → {treat_name})": [
            compare.published(references, e, [b, t], compact=True) or DASH
            for e, b, t in data[["experiment", "baseline", "treatment"]].values],
    }
    if not several:
        del columns["comparison"]
    if one:
        del columns["metric"]
    display = pd.DataFrame(columns)
    notes = [_metric_note(data["metric"]),
             f"{_gain_note(ms)}; {stats.INTERVAL_METHOD}; p: {stats.TEST_METHOD}.",
             _VERDICT_RULE, _PUBLISHED]
    align = ["l", "l"] + ["l"] * several + ["l"] * (one is None) + ["r"] * 7 + ["l", "p{4.2cm}"]
    what = f"final {one.name}" if one else "final accuracy or loss"
    return Table("main", data, display, f"{treat_name} vs {base_name}: {what}, paired gain and verdict on each claim",
                 notes, align)


def verdicts_table(runs: pd.DataFrame, baseline: str, claims: Sequence[Claim]) -> Table:
    """Per claim: claimed vs measured gain and the verdict. Claims often quote one sentence (the
    abstract's, for CIFAR-10 and ImageNet): each quote and its source is printed once, in the
    notes, and the claims point at it by number (the CSV keeps every claim's own quote)."""
    data = compare.verdicts(compare.main(runs, baseline, claims), claims)
    ms = _metrics(data["metric"])
    sources = {}  # (quote, source) -> its number, in order of first use
    for key in zip(data["quote"], [s + (f" ({u})" if u else "") for s, u in data[["source", "url"]].values]):
        sources.setdefault(key, len(sources) + 1)
    display = pd.DataFrame({
        "claim": data["claim"],
        "comparison": [f"{e}: {t} vs {b}" for e, t, b in data[["experiment", "treatment", "baseline"]].values],
        "claimed": [_claimed(v, d) for v, d in data[["claimed_gain", "claimed_direction"]].values],
        "measured (95% t-interval)": [f"{signed(g, m.digits)} {interval(lo, hi, m.digits)}" if not math.isnan(g)
                                      else DASH for m, g, lo, hi in
                                      zip(ms, data["gain_mean"], data["gain_t_lo"], data["gain_t_hi"])],
        "n": [DASH if math.isnan(n) else str(int(n)) for n in data["gain_n"]] if len(data) else [],
        "verdict": data["verdict"],
        "source": [f"[{sources[key]}]" for key in zip(data["quote"], [
            s + (f" ({u})" if u else "") for s, u in data[["source", "url"]].values])] if len(data) else [],
    }, columns=["claim", "comparison", "claimed", "measured (95% t-interval)", "n", "verdict", "source"])
    notes = [f"{_gain_note(ms)} (main table for both arms' values).", _VERDICT_RULE,
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
    ms = _metrics(data["metric"])
    one = _shared(ms)
    display = pd.DataFrame({
        "experiment": data["experiment"], "arm": data["arm"],
        **({} if one else {"metric": [m.label_of(c) for m, c in zip(ms, data["metric"])]}),
        "init": data["init"], "parameters": data["init_params"].map(_params_text),
        one.label if one else "mean ± sd": [mean_sd(*r, digits=m.digits)
                                            for m, r in zip(ms, data[["mean", "sd", "n"]].values)],
        f"gain vs {baseline}": [signed(g, m.digits) for m, g in zip(ms, data["gain_mean"])],
        "95% t-interval": [interval(lo, hi, m.digits) for m, lo, hi in zip(ms, data["gain_t_lo"], data["gain_t_hi"])],
        "95% bootstrap": [interval(lo, hi, m.digits)
                          for m, lo, hi in zip(ms, data["gain_boot_lo"], data["gain_boot_hi"])],
        "p": data["gain_p"].map(pvalue), "verdict": data["verdict"]})
    notes = [_metric_note(data["metric"]),
             f"{_gain_note(ms, 'arm', baseline)}; {stats.INTERVAL_METHOD}; "
             f"p: {stats.TEST_METHOD}, not corrected for multiple comparisons.", _VERDICT_RULE]
    return Table("ablation", data, display, f"Every arm against {baseline}, paired by seed", notes,
                 ["l", "l"] + ["l"] * (one is None) + ["l", "l", "r", "r", "r", "r", "r", "l"])


def initialization_table(runs: pd.DataFrame, baseline: str, treatment: str = compare.TREATMENT) -> Table:
    """Per experiment and arm: the init, what it declares it touches (everything else is the
    model's own init of the same seed, bit for bit) and layer 1's products at initialization."""
    from mimetic.report.records import INIT_STATS

    cols = ["touches", *(f"init_{k}" for k in INIT_STATS)]
    df = runs.assign(**{c: runs[c] if c in runs.columns else math.nan for c in cols})
    df["touches"] = df["touches"].astype(object).fillna(DASH).astype(str)  # all-NaN reads as float
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
    ms = _metrics(data["metric"])
    data["cell"] = [f"{mean_sd(v, s, None if uniform_n else n, m.digits)}, Δ {signed(g, m.digits)} "
                    f"{interval(lo, hi, m.digits)}" for m, (v, s, n, g, lo, hi) in
                    zip(ms, data[["mean", "sd", "n", "gain_mean", "gain_t_lo", "gain_t_hi"]].values)]
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
    labels = " or ".join(dict.fromkeys(m.label_of(c) for m, c in zip(ms, data["metric"])))
    notes = [f"Cells: {labels}, mean ± sd over seeds, and Δ: the gain over {baseline} paired by seed with its 95% "
             f"t-interval ({_gain_note(ms, 'arm', baseline)}). {n_note}α and β: Q/K value / V/Proj value (one value "
             "where the init sets only one product).",
             "Arms form a grid when they share an init and every parameter but α and β."]
    return Table(outputs.GRID_TABLE, data, display, f"(α, β) grid against {baseline}", notes,
                 ["l", "l", "l"] + ["r"] * len(betas))


def time_table(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str, treatment: str = compare.TREATMENT,
               levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None) -> Table:
    goals = compare.targets(runs, baseline, levels)
    data = compare.time_to_accuracy(compare.reach(runs, epochs, goals), baseline, treatment)
    ms = [compare.metric_of(runs, e) for e in data["experiment"]]
    one = _shared(ms)
    xs = one.xs if one else "epochs / steps"
    unit, scale = time_unit(pd.concat([data["wall_time_mean"], data["d_wall_time_mean"].abs()]).max())
    base_rows = data["arm"] == baseline
    display = pd.DataFrame({
        "experiment": data["experiment"],
        "target": [f"{t} ({m.text(v)})" if t == f"{baseline} final" else t
                   for m, t, v in zip(ms, data["target"], data["target_value"])],
        "arm": data["arm"],
        "reached": [f"{r}/{n}" for r, n in data[["reached", "n"]].values],
        xs: [mean_sd(m, s, digits=1) for m, s in data[["at_mean", "at_sd"]].values],
        f"Δ {xs} vs {baseline}": [DASH if b else f"{signed(m, 1)} {interval(lo, hi, 1)}".replace(f" {DASH}", "")
                                  for b, m, lo, hi in zip(base_rows, data["d_at_mean"], data["d_at_t_lo"],
                                                          data["d_at_t_hi"])],
        f"wall time ({unit})": [mean_sd(m / scale, s / scale) for m, s in
                                data[["wall_time_mean", "wall_time_sd"]].values],
        f"Δ wall time ({unit})": [DASH if b else f"{signed(m / scale)} {interval(lo / scale, hi / scale)}".replace(
            f" {DASH}", "") for b, m, lo, hi in zip(base_rows, data["d_wall_time_mean"], data["d_wall_time_t_lo"],
                                                   data["d_wall_time_t_hi"])],
        "speed-up": [DASH if b or math.isnan(v) else f"{v:.2f}×" for b, v in zip(base_rows, data["speedup"])],
    })
    leveled = {m for m, t in zip(ms, data["target"]) if t != f"{baseline} final"}
    notes = [*(f"{_reach_words(m).capitalize()} the target, and the cumulative wall time then; mean ± sd over the "
               f"runs that reach it (reached: runs that do / runs). Targets: the {baseline} arm's mean final "
               f"{m.name}{' and fixed levels' * (m in leveled)}." for m in dict.fromkeys(ms)),
             f"Δ: arm − {baseline} in {xs} and seconds, paired by seed over the seeds where both reach the target "
             f"(negative: faster), mean and 95% t-interval; speed-up: mean {baseline} {xs} / mean arm {xs} over "
             "those seeds.",
             "Wall time depends on the device and on other jobs sharing it (runs record their device)."]
    what = f"a target {one.name}" if one else "a target value"
    return Table("time_to_accuracy", data, display, f"Time to {what}, paired by seed", notes,
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
