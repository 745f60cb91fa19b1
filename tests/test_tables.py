"""Result tables on hand-made run records: every number against an independent computation,
every verdict, and the four file formats (LaTeX compiled where pdflatex exists)."""

import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

import analysis_data as data
from mimetic.report import outputs, render, tables
from mimetic.report.records import load_runs
from mimetic.report.claims import load_claims, load_references

REPO = Path(__file__).resolve().parents[1]
CLAIMS_SCHEMA = REPO / "workflow/schemas/claims.schema.yaml"
REFERENCES_SCHEMA = REPO / "workflow/schemas/references.schema.yaml"


@pytest.fixture(scope="module")
def records():
    return data.make()


def t_ci(d):
    d = np.asarray(d, float)
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return d.mean() - half, d.mean() + half


def boot_ci(d):
    d = np.asarray(d, float)
    rng = np.random.default_rng(0)
    means = [d[rng.integers(0, len(d), size=len(d))].mean() for _ in range(10_000)]
    return tuple(np.percentile(means, [2.5, 97.5]))


def test_main_table_numbers_and_verdicts(records):
    runs, _ = records
    t = tables.main_table(runs, "default", data.CLAIMS, data.REFERENCES)
    df = t.data.set_index("claim")
    base, mim = np.array(data.FINAL["cifar10"]["default"]), np.array(data.FINAL["cifar10"]["mimetic"])
    r = df.loc["paper-cifar10"]
    assert (r["baseline_n"], r["treatment_n"], r["gain_n"]) == (5, 5, 5)
    assert r["baseline_mean"] == pytest.approx(80.5) and r["treatment_mean"] == pytest.approx(85.7)
    assert r["baseline_sd"] == pytest.approx(np.std(base, ddof=1))
    assert r["treatment_sd"] == pytest.approx(math.sqrt(sum((x - 85.7) ** 2 for x in mim) / 4))
    assert r["gain_mean"] == pytest.approx(5.2)  # differences 5, 6, 5, 4, 6
    assert r["gain_sd"] == pytest.approx(np.std([5, 6, 5, 4, 6], ddof=1))
    assert (r["gain_t_lo"], r["gain_t_hi"]) == pytest.approx(t_ci(mim - base))
    assert (r["gain_boot_lo"], r["gain_boot_hi"]) == pytest.approx(boot_ci(mim - base))
    assert r["gain_p"] == pytest.approx(sps.ttest_rel(mim, base).pvalue)
    assert r["seeds"] == "0 1 2 3 4"
    lo, hi = t_ci(mim - base)
    assert lo > 0 and hi >= 5 and hi < 8  # so:
    verdicts = df["verdict"].to_dict()
    assert verdicts["paper-cifar10"] == "reproduced"
    assert verdicts["big-cifar10"] == "smaller gain"
    assert verdicts["svhn"] == "no significant gain"
    assert verdicts["c100"] == "reversed"
    assert verdicts["digits"] == "too few seeds"
    assert verdicts["paper-imagenet"] == "not run"   # experiment not configured
    assert verdicts["qk-svhn"] == "not run"          # arm not run in that experiment
    # n < 5: t-interval only; n < 2: no interval at all
    svhn = df.loc["svhn"]
    assert not math.isnan(svhn["gain_t_lo"]) and math.isnan(svhn["gain_boot_lo"])
    d = np.array(data.FINAL["svhn"]["mimetic"]) - np.array(data.FINAL["svhn"]["default"])
    assert (svhn["gain_t_lo"], svhn["gain_t_hi"]) == pytest.approx(t_ci(d))
    assert all(math.isnan(df.loc["digits", k]) for k in ("gain_t_lo", "gain_t_hi", "gain_p"))
    assert df.loc["digits", "gain_mean"] == 2.0
    imagenet = df.loc["paper-imagenet"]
    assert imagenet["baseline_n"] == 0 and math.isnan(imagenet["gain_mean"])


def test_main_table_display_and_published_column(records):
    runs, _ = records
    t = tables.main_table(runs, "default", [c for c in data.CLAIMS if c.treatment == "mimetic"], data.REFERENCES)
    assert "comparison" not in t.display.columns  # one comparison: named in the headers
    row = t.display[t.display["claim"] == "paper-cifar10"].iloc[0]
    assert row["default (%)"] == "80.50 ± 1.12 (n=5)"  # sd = sqrt(5 / 4)
    assert row["mimetic (%)"] == f"85.70 ± {np.std(data.FINAL['cifar10']['mimetic'], ddof=1):.2f} (n=5)"
    assert row["gain (points)"] == "+5.20" and row["claimed"] == "+5" and row["verdict"] == "reproduced"
    assert row["published (default → mimetic)"] == "87.79 → 90.92 (cs5782)"
    c100 = t.display[t.display["claim"] == "c100"].iloc[0]
    assert c100["gain (points)"] == "\u22129.75" and c100["95% bootstrap"] == "\u2013"
    svhn = t.display[t.display["claim"] == "svhn"].iloc[0]
    assert svhn["published (default → mimetic)"] == "\u2013 → 97.53 (zheng2024)"
    # rows: run experiments sorted (claims in file order), then claims on experiments not run
    assert list(t.display["experiment"]) == ["cifar10", "cifar10", "cifar100", "digits", "svhn", "imagenet"]
    several = tables.main_table(runs, "default", data.CLAIMS, data.REFERENCES).display.set_index("claim")
    assert several.loc["qk-svhn", "comparison"] == "mimetic-qk vs default"
    assert several.loc["qk-svhn", "treatment (%)"] == "\u2013" and several.loc["qk-svhn", "verdict"] == "not run"


def test_published_numbers_never_enter_our_statistics(records):
    runs, _ = records
    numeric = [c for c in tables.main_table(runs, "default", data.CLAIMS).data.columns if c != "published"]
    with_refs = tables.main_table(runs, "default", data.CLAIMS, data.REFERENCES).data
    without = tables.main_table(runs, "default", data.CLAIMS).data
    pd.testing.assert_frame_equal(with_refs[numeric], without[numeric])
    assert (without["published"] == "").all()


def test_experiments_without_claims_get_a_row(records):
    runs, _ = records
    df = tables.main_table(runs, "default").data
    assert list(df["experiment"]) == ["cifar10", "cifar100", "digits", "svhn"]
    assert dict(zip(df["experiment"], df["verdict"])) == {
        "cifar10": "significant gain", "cifar100": "reversed", "digits": "too few seeds",
        "svhn": "no significant gain"}


def test_verdicts_table_quotes_sources(records):
    runs, _ = records
    t = tables.verdicts_table(runs, "default", data.CLAIMS)
    assert list(t.data["claim"]) == [c.id for c in data.CLAIMS]
    row = t.display.set_index("claim").loc["paper-imagenet"]
    assert row["verdict"] == "not run" and row["measured (95% t-interval)"] == "\u2013"
    assert f"{row['source']} “and 4%” paper, abstract." in t.notes
    lo, hi = t_ci(np.array(data.FINAL["cifar10"]["mimetic"]) - np.array(data.FINAL["cifar10"]["default"]))
    assert t.display.set_index("claim").loc["paper-cifar10", "measured (95% t-interval)"] == \
        f"+5.20 [{lo:.2f}, {hi:.2f}]"


def test_verdicts_table_prints_a_shared_quote_once(records):
    """The shipped claims quote the abstract's one sentence twice (CIFAR-10, ImageNet), as the
    impulse claims quote theirs (CIFAR-10, CIFAR-100): each is in the notes once, and both claims
    point at it."""
    from mimetic.report.claims import load_claims

    runs, _ = records
    root = Path(__file__).resolve().parents[1]
    claims = load_claims(root / "config/claims.yaml", root / "workflow/schemas/claims.schema.yaml")
    t = tables.verdicts_table(runs, "default", claims)
    by_claim = t.display.set_index("claim")["source"]
    assert by_claim["trockman2023-cifar10"] == by_claim["trockman2023-imagenet"] != by_claim[
        "trockman2025-thesis-cifar10"]
    abstract = next(c.quote for c in claims if c.id == "trockman2023-cifar10")
    assert sum(abstract in note for note in t.notes) == 1
    assert len(set(t.data["quote"])) == len(set(t.display["source"])) == 5  # two quoted twice, three once


def test_ablation_every_arm_paired(records):
    runs, _ = records
    df = tables.ablation_table(runs, "default").data
    c10 = df[df["experiment"] == "cifar10"].set_index("arm")
    assert list(c10.index) == ["default", "mimetic", "mimetic-a0.35", "mimetic-b0.35", "mimetic-qk",
                               "mimetic-uniform"]
    assert c10.loc["default", "verdict"] == "baseline" and math.isnan(c10.loc["default", "gain_mean"])
    for arm in c10.index[1:]:
        d = np.array(data.FINAL["cifar10"][arm]) - np.array(data.FINAL["cifar10"]["default"])
        assert c10.loc[arm, "gain_mean"] == pytest.approx(d.mean())
        assert (c10.loc[arm, "gain_t_lo"], c10.loc[arm, "gain_t_hi"]) == pytest.approx(t_ci(d))
        assert c10.loc[arm, "gain_p"] == pytest.approx(
            sps.ttest_rel(data.FINAL["cifar10"][arm], data.FINAL["cifar10"]["default"]).pvalue)
        assert c10.loc[arm, "mean"] == pytest.approx(np.mean(data.FINAL["cifar10"][arm]))
    display = tables.ablation_table(runs, "default").display.set_index("arm")
    assert "β1=0.35" in display.loc["mimetic-b0.35", "parameters"]


def test_grid_arms_and_layout(records):
    runs, _ = records
    t = tables.grid_table(runs, "default")
    assert sorted(t.data["arm"]) == ["mimetic", "mimetic-a0.35", "mimetic-b0.35"]  # not uniform, qk, baseline
    cells = t.display.set_index("α (Q/K / V/Proj)")
    assert list(cells.columns) == ["experiment", "init", "β = 0.35 / 0.2", "β = 0.7 / 0.4"]
    assert cells.loc["0.35 / 0.2", "β = 0.35 / 0.2"] == "\u2013"  # not run: no arm there
    d = np.array(data.FINAL["cifar10"]["mimetic-b0.35"]) - np.array(data.FINAL["cifar10"]["default"])
    lo, hi = t_ci(d)
    assert cells.loc["0.7 / 0.4", "β = 0.35 / 0.2"] == (
        f"82.10 ± {np.std(data.FINAL['cifar10']['mimetic-b0.35'], ddof=1):.2f}, Δ +{d.mean():.2f} "
        f"[{lo:.2f}, {hi:.2f}]")
    assert cells["init"].unique().tolist() == ["mimetic (dist=normal)"]


def test_no_grid_without_varied_alpha_beta(records):
    runs, _ = records
    assert tables.grid_table(runs[runs["arm"].isin(["default", "mimetic", "mimetic-uniform"])], "default") is None


def test_has_grid_on_shipped_configs():
    def arms(name):
        return yaml.safe_load((REPO / "config" / name).read_text())["arms"]
    assert outputs.has_grid(arms("ablations.yaml"))  # beta 0.35/0.2, 0.7/0.4, 1.0/0.6 with dist normal
    assert not outputs.has_grid(arms("config.yaml"))
    assert not outputs.has_grid(arms("quickstart.yaml"))
    assert not outputs.has_grid({"default": {"init": "default"}, "mimetic": {"init": "mimetic"},
                                 "u": {"init": "mimetic", "params": {"dist": "uniform"}}})
    # the baseline is no grid cell: a mimetic baseline and one variant are no grid
    two = {"mimetic": {"init": "mimetic"}, "b": {"init": "mimetic", "params": {"beta1": 0.5}}}
    assert outputs.has_grid(two, baseline="default") and not outputs.has_grid(two, baseline="mimetic")


def test_time_to_accuracy_by_hand(records):
    runs, epochs = records
    df = tables.time_table(runs, epochs, "default").data
    c10 = df[df["experiment"] == "cifar10"]
    assert list(c10["target"].unique()) == ["default final", "70%", "80%"]  # default levels below 80.5
    for target, acc in (("default final", 80.5), ("70%", 70.0), ("80%", 80.0)):
        rows = c10[c10["target"] == target].set_index("arm")
        assert rows["target_value"].iloc[0] == pytest.approx(acc)
        hit = {arm: [data.first_epoch(data.curve(arm, s, f), acc) for s, f in enumerate(data.FINAL["cifar10"][arm])]
               for arm in ("default", "mimetic")}
        for arm, sec in (("default", 2.0), ("mimetic", 3.0)):
            e = np.array(hit[arm])
            ok = e[~np.isnan(e)]
            assert rows.loc[arm, "reached"] == len(ok) and rows.loc[arm, "n"] == 5
            assert rows.loc[arm, "at_mean"] == pytest.approx(ok.mean())
            assert rows.loc[arm, "wall_time_mean"] == pytest.approx(sec * ok.mean())
        both = [s for s in range(5) if not np.isnan(hit["default"][s]) and not np.isnan(hit["mimetic"][s])]
        de = np.array([hit["mimetic"][s] - hit["default"][s] for s in both])
        assert rows.loc["mimetic", "pairs"] == len(both)
        assert rows.loc["mimetic", "d_at_mean"] == pytest.approx(de.mean())
        dw = np.array([3.0 * hit["mimetic"][s] - 2.0 * hit["default"][s] for s in both])
        assert rows.loc["mimetic", "d_wall_time_mean"] == pytest.approx(dw.mean())
        if de.std() > 0:
            assert (rows.loc["mimetic", "d_wall_time_t_lo"], rows.loc["mimetic", "d_wall_time_t_hi"]) == \
                pytest.approx(t_ci(dw))
        base_e = np.array([hit["default"][s] for s in both])
        assert rows.loc["mimetic", "speedup"] == pytest.approx(base_e.mean() / (base_e + de).mean())
    # default reaches its own mean final (80.5) only in the seeds ending at or above it: 81, 82, 80.5
    assert c10[(c10["target"] == "default final") & (c10["arm"] == "default")]["reached"].item() == 3


def test_time_to_accuracy_explicit_levels(records):
    runs, epochs = records
    df = tables.time_table(runs, epochs, "default", levels={"svhn": [50.0]}).data
    assert set(df[df["experiment"] == "svhn"]["target"]) == {"default final", "50%"}
    assert set(df[df["experiment"] == "cifar10"]["target"]) == {"default final"}
    never = tables.time_table(runs, epochs, "default", levels=[99.0]).data
    assert (never[never["target"] == "99%"]["reached"] == 0).all()


def test_runs_without_init_params(records):
    runs, epochs = data.make(init_params=False)
    t = tables.ablation_table(runs, "default")
    assert (t.data["init_params"] == "{}").all()
    assert tables.grid_table(runs, "default") is None


def test_duplicate_runs_are_an_error(records):
    runs, _ = records
    with pytest.raises(ValueError, match="repeat"):
        tables.main_table(pd.concat([runs, runs.iloc[:1]]), "default")


# --- Formats ----------------------------------------------------------------------------------

def unescaped(line, char):
    return len(re.findall(r"(?<!\\)" + re.escape(char), line))


def check_latex(text, ncols):
    lines = [ln for ln in text.splitlines() if not ln.startswith("%")]
    assert lines[0].startswith(r"\begin{tabular}{") and lines[-1] == r"\end{tabular}"
    assert [ln for ln in lines if ln in (r"\toprule", r"\midrule", r"\bottomrule")] == [
        r"\toprule", r"\midrule", r"\bottomrule"]
    assert lines[1] == r"\toprule" and lines[3] == r"\midrule" and lines[-2] == r"\bottomrule"
    rows = lines[2:3] + lines[4:-2]
    for row in rows:
        assert row.endswith(r" \\") and unescaped(row, "&") == ncols - 1, row
        assert unescaped(row, "%") == 0 and unescaped(row, "_") == 0 and unescaped(row, "#") == 0, row
        assert "±" not in row and "−" not in row and "→" not in row and "–" not in row, row
        assert row.count("$") % 2 == 0, row
    return rows


def test_latex_structure_and_escaping(records):
    runs, _ = records
    t = tables.main_table(runs, "default", [c for c in data.CLAIMS if c.treatment == "mimetic"], data.REFERENCES)
    tex = render.latex(t)
    rows = check_latex(tex, len(t.display.columns))
    assert r"default (\%)" in rows[0] and r"95\% t-interval" in rows[0]
    assert r"80.50 $\pm$ 1.12 (n=5)" in tex and r"$-$9.75" in tex
    assert r"\begin{tabular}{llrrrrrrrlp{4.2cm}}" in tex
    v = tables.verdicts_table(runs, "default", data.CLAIMS)
    vtex = render.latex(v)
    check_latex(vtex, len(v.display.columns))
    assert "\n% [6] “CIFAR-100 gains_50%” nobody.\n" in vtex  # quotes and sources: the caption's, in comments


def test_tex_escape_specials():
    assert render.tex_escape(r'50% a_b #1 $x & {y} ~ ^ \ "q"') == (
        r"50\% a\_b \#1 \$x \& \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{} ``q''")
    assert render.tex_escape("1 ± 2 → −3 – α≥β") == r"1 $\pm$ 2 $\rightarrow$ $-$3 -- $\alpha$$\geq$$\beta$"


class Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.classes, self.tags, self.styled = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.styled += "style" in dict(attrs)
        if tag == "table":
            self.classes.append(dict(attrs).get("class"))
        if tag == "tr":
            self.rows.append(0)
        if tag in ("td", "th"):
            self.rows[-1] += 1


def test_html_and_markdown(records):
    runs, epochs = records
    for t in tables.build_all(runs, epochs, "default", data.CLAIMS, data.REFERENCES):
        p = Cells()
        p.feed(render.html(t))
        n = len(t.display.columns)
        # Styled inline, element by element: no stylesheet that could reach the page around it.
        assert p.classes == [render.HTML_CLASS] and "link" not in p.tags and "style" not in p.tags
        assert "'" not in render.html(t)  # the report's landing page breaks on one (workflow/report/workflow.rst)
        assert p.styled == p.tags.count("td") + p.tags.count("th") + p.tags.count("table") + p.tags.count("caption") \
            + len(t.display) // 2
        assert p.rows[: 1 + len(t.display)] == [n] * (1 + len(t.display))
        md = [ln for ln in render.markdown(t).splitlines() if ln.startswith("|")]
        assert len(md) == 2 + len(t.display)
        assert all(unescaped(ln, "|") == n + 1 for ln in md), t.name
        check_latex(render.latex(t), n)


def test_write_all_files(records, tmp_path):
    runs, epochs = records
    paths = tables.write_all(runs, epochs, "default", data.CLAIMS, data.REFERENCES, tmp_path)
    assert paths == [Path(f) for f in outputs.table_files(tmp_path, grid=True).values()]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporaries left
    main = pd.read_csv(tmp_path / "main.csv")
    assert main.loc[main["claim"] == "paper-cifar10", "gain_mean"].item() == pytest.approx(5.2)
    # no grid among these arms: no grid files
    two = runs[runs["arm"].isin(["default", "mimetic"])]
    out = tmp_path / "two"
    paths = tables.write_all(two, epochs, "default", [], [], out)
    assert {p.stem for p in paths} == set(outputs.TABLES)


def test_shipped_claims_and_references_render(records):
    runs, epochs = records
    claims = load_claims(REPO / "config" / "claims.yaml", CLAIMS_SCHEMA)
    refs = load_references(REPO / "config" / "references.yaml", REFERENCES_SCHEMA)
    for t in tables.build_all(runs, epochs, "default", claims, refs):
        check_latex(render.latex(t), len(t.display.columns))
    main = tables.main_table(runs, "default", claims, refs).data.set_index("claim")
    assert main.loc["trockman2023-imagenet", "verdict"] == "not run"
    assert main.loc["zheng2025-cifar10-impulse", "verdict"] == "not run"  # no impulse arm in these records
    origin = tables.references_table(refs).display.set_index("id")["origin"]
    assert origin["zheng2025-cifar10"] == "third party, secondary" and origin["xu2024-cifar100"] == "third party"
    lo, hi = t_ci(np.array(data.FINAL["cifar10"]["mimetic"]) - np.array(data.FINAL["cifar10"]["default"]))
    assert lo > 0 and 6 <= hi < 8
    assert main.loc["trockman2023-cifar10", "verdict"] == "reproduced"
    assert main.loc["trockman2025-thesis-cifar10", "verdict"] == "reproduced"
    big = [c for c in data.CLAIMS if c.id == "big-cifar10"]
    assert tables.main_table(runs, "default", big).data.set_index("claim").loc["big-cifar10", "verdict"] == \
        "smaller gain"  # hi < 8


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_fragments_compile(records, tmp_path):
    runs, epochs = records
    claims = load_claims(REPO / "config" / "claims.yaml", CLAIMS_SCHEMA)
    refs = load_references(REPO / "config" / "references.yaml", REFERENCES_SCHEMA)
    paths = tables.write_all(runs, epochs, "default", [*claims, *data.CLAIMS], refs, tmp_path)
    inputs = "\n".join(rf"\input{{{p.name}}}\par" for p in paths if p.suffix == ".tex")
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                      f"{inputs}\n\\end{{document}}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_from_load_runs_records(tmp_path):
    """The tables of what aggregate.load_runs reads from run records."""

    dirs = []
    for arm, finals in data.FINAL["svhn"].items():
        for seed, final in enumerate(finals):
            d = tmp_path / "runs" / "svhn" / arm / f"seed{seed}"
            d.mkdir(parents=True)
            accs = data.curve(arm, seed, final)
            pd.DataFrame({"epoch": range(1, data.EPOCHS + 1), "lr": 1e-3, "train_loss": 1.0, "train_acc": accs,
                          "test_loss": 1.0, "test_acc": accs, "images_per_s": 1.0,
                          "wall_time": np.arange(1, data.EPOCHS + 1) * 2.0}).to_csv(d / "metrics.csv", index=False)
            (d / "summary.json").write_text(json.dumps({
                "experiment": "svhn", "arm": arm, "seed": seed, "init": arm, "init_params": {},
                "config": {"dataset": "svhn", "model": "vit"},
                "final_test_acc": final, "best_test_acc": max(accs), "best_epoch": data.EPOCHS,
                "epochs": data.EPOCHS, "wall_time": 20.0, "device": "cpu"}))
            dirs.append(d)
    runs, epochs = load_runs([(d / "summary.json", d / "metrics.csv") for d in dirs])
    paths = tables.write_all(runs, epochs, "default", data.CLAIMS, data.REFERENCES, tmp_path / "tables")
    main = pd.read_csv(tmp_path / "tables" / "main.csv").set_index("claim")
    assert main.loc["svhn", "verdict"] == "no significant gain" and main.loc["svhn", "gain_n"] == 3
    assert main.loc["paper-cifar10", "verdict"] == "not run"
    assert len(paths) == len(outputs.table_files(tmp_path, grid=False))


def test_init_params_as_dicts(records):
    runs, _ = records
    as_dicts = runs.assign(init_params=runs["init_params"].map(json.loads))
    pd.testing.assert_frame_equal(tables.grid_table(as_dicts, "default").data, tables.grid_table(runs, "default").data)


def test_write_all_writes_exactly_the_files_it_is_given(records, tmp_path):
    """The workflow passes every output file its rule declares; one left out is an error."""
    runs, epochs = records
    # the records' arms form a grid
    files = {name: tmp_path / "given" / f"x_{name}" for name in outputs.table_files(tmp_path, grid=True)}
    paths = tables.write_all(runs, epochs, "default", data.CLAIMS, data.REFERENCES, files)
    assert sorted(paths) == sorted(files.values()) and all(p.is_file() for p in paths)
    del files["main.tex"]
    with pytest.raises(ValueError, match=r"no output file given for \['main.tex'\]"):
        tables.write_all(runs, epochs, "default", data.CLAIMS, data.REFERENCES, files)


def test_initialization_table_says_what_each_arm_writes_beyond_attention():
    from mimetic.report.records import INIT_STATS

    touches = {"default": "", "mimetic": "q k v proj", "impulse": "q k v proj pos_embed",
               "weight-selection": r"q k v proj patch_embed\..* pos_embed blocks\.\d+\..*"}
    runs = pd.DataFrame([{"experiment": "digits", "arm": arm, "seed": seed, "init": arm, "final_test_acc": 50.0 + seed,
                          "touches": t or "nothing", **{f"init_{k}": 0.1 * seed for k in INIT_STATS}}
                         for arm, t in touches.items() for seed in (0, 1)])
    t = tables.initialization_table(runs, "default")
    shown = t.display.set_index("arm")["touches"]
    assert shown["weight-selection"] == "q k v proj patch_embed.* pos_embed blocks.N.*"
    assert shown["default"] == "nothing"
    assert t.notes[-1] == ("Beyond attention: impulse also writes pos_embed; weight-selection also writes "
                           "patch_embed.* pos_embed blocks.N.*.")
    assert t.data.set_index("arm").loc["mimetic", "qk_diag_mean"] == pytest.approx(0.05)


# --- Language models: a lower-is-better metric, alone and beside image classification -----------

@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return data.make_mixed(tmp_path_factory.mktemp("lm"))


def lm_final(arm):
    return np.array(data.LM_FINAL["wikitext103"][arm])


def test_lm_gain_is_the_baseline_loss_minus_the_arm_loss(mixed):
    runs, _ = mixed
    claims = [*data.CLAIMS, *data.LM_CLAIMS]
    df = tables.main_table(runs, "default", claims).data.set_index("claim")
    d = lm_final("default") - lm_final("mimetic")  # lower loss, positive gain
    assert (d > 0).all()
    r = df.loc["lm-gain"]
    assert r["metric"] == "final_val_loss" and r["gain_mean"] == pytest.approx(d.mean())
    assert (r["gain_t_lo"], r["gain_t_hi"]) == pytest.approx(t_ci(d))
    assert r["gain_p"] == pytest.approx(sps.ttest_rel(lm_final("mimetic"), lm_final("default")).pvalue)
    assert r["baseline_mean"] == pytest.approx(lm_final("default").mean())
    assert (r["verdict"], df.loc["lm-worse", "verdict"]) == ("reproduced", "reversed")  # direction claims
    assert math.isnan(r["claimed_gain"]) and r["claimed_direction"] == "positive"
    shipped = load_claims(REPO / "config" / "claims.yaml", CLAIMS_SCHEMA)
    assert tables.main_table(runs, "default", shipped).data.set_index("claim").loc[
        "paper-wikitext103", "verdict"] == "reproduced"
    # the image-classification rows are those of the vision-only set
    vision = tables.main_table(data.make()[0], "default", data.CLAIMS).data.set_index("claim")
    pd.testing.assert_frame_equal(df.loc[vision.index, vision.columns], vision)
    abl = tables.ablation_table(runs, "default").data.set_index(["experiment", "arm"]).loc["wikitext103"]
    assert abl.loc["mimetic", "gain_mean"] == pytest.approx(d.mean()) and abl.loc["mimetic", "verdict"] == \
        "significant gain"
    best = [min(data.lm_curve("mimetic", f)) for f in lm_final("mimetic")]
    assert abl.loc["mimetic", "best_mean"] == pytest.approx(np.mean(best))


def test_direction_claim_without_significance_and_on_a_metric_its_runs_lack(mixed):
    runs, _ = mixed
    noisy = runs.copy()
    sel = (noisy["experiment"] == "wikitext103") & (noisy["arm"] == "mimetic") & (noisy["seed"] == 3)
    noisy.loc[sel, "final_val_loss"] = 3.6  # one seed much worse: the interval contains 0
    assert tables.main_table(noisy, "default", data.LM_CLAIMS).data.set_index("claim").loc[
        "lm-gain", "verdict"] == "no significant gain"
    wrong = data.Claim("acc-on-lm", "wikitext103", "default", "mimetic", 1.0, "q", "s")  # final_test_acc by default
    with pytest.raises(ValueError, match="claim acc-on-lm: experiment 'wikitext103' .* not measured by "
                                         "'final_test_acc'"):
        tables.main_table(runs, "default", [wrong])


def test_lm_tables_speak_loss(mixed):
    runs, epochs = mixed
    lm_runs = runs[runs["kind"] == "lm"]
    t = tables.main_table(lm_runs, "default", data.LM_CLAIMS)
    row = t.display.set_index("claim").loc["lm-gain"]
    d = lm_final("default") - lm_final("mimetic")
    base = lm_final("default")
    assert row["default (nats/token)"] == f"{base.mean():.3f} ± {base.std(ddof=1):.3f} (n=4)"
    assert row["gain (nats/token)"] == f"+{d.mean():.3f}" and row["claimed"] == "> 0"
    assert "metric" not in t.display.columns
    assert any("baseline loss − treatment loss in nats per token" in n and "positive: the treatment is better" in n
               for n in t.notes)
    both = tables.main_table(runs, "default", data.LM_CLAIMS).display.set_index("experiment")
    assert "gain" in both.columns and "default" in both.columns  # mixed units: no unit in the headers ...
    assert both.loc["wikitext103", "metric"].iloc[0] == "final validation loss (nats/token; lower is better)"
    assert both.loc["cifar10", "metric"] == "final test accuracy (%)"  # ... each row names its metric
    for t in tables.build_all(runs, epochs, "default", [*data.CLAIMS, *data.LM_CLAIMS], data.REFERENCES):
        check_latex(render.latex(t), len(t.display.columns))


def test_lm_steps_to_the_baseline_final_loss(mixed):
    runs, epochs = mixed
    t = tables.time_table(runs, epochs, "default", levels={"wikitext103": [3.5]})
    df = t.data[t.data["experiment"] == "wikitext103"]
    target = lm_final("default").mean()
    assert list(df["target"].unique()) == ["default final", "3.5 nats/token"] and set(df["x"]) == {"step"}
    for goal in (target, 3.5):
        rows = df[df["target_value"] == goal].set_index("arm")
        hit = {arm: np.array([data.first_step(data.lm_curve(arm, f), goal) for f in lm_final(arm)])
               for arm in ("default", "mimetic")}
        for arm, sec in (("default", 10.0), ("mimetic", 12.0)):
            ok = hit[arm][~np.isnan(hit[arm])]
            assert rows.loc[arm, "reached"] == len(ok) and rows.loc[arm, "at_mean"] == pytest.approx(ok.mean())
            assert rows.loc[arm, "wall_time_mean"] == pytest.approx(sec * ok.mean() / 100)
        both = ~np.isnan(hit["default"]) & ~np.isnan(hit["mimetic"])
        assert rows.loc["mimetic", "d_at_mean"] == pytest.approx((hit["mimetic"] - hit["default"])[both].mean())
    # seeds 1 and 3 of the baseline end above its own mean final loss: they never reach it
    assert df[(df["target_value"] == target) & (df["arm"] == "default")]["reached"].item() == 2
    shown = t.display[t.display["experiment"] == "wikitext103"]
    assert f"default final ({target:.3f} nats/token)" in set(shown["target"]) and "epochs / steps" in t.display
    assert "steps" in tables.time_table(runs[runs["kind"] == "lm"], epochs, "default").display.columns
    with pytest.raises(ValueError, match="give levels per experiment"):
        tables.time_table(runs, epochs, "default", levels=[50.0])


def test_every_caption_says_what_a_language_model_gain_is():
    folder = REPO / "workflow/report"
    captions = sorted([*folder.glob("figure_*.rst"), *folder.glob("table_*.rst")])
    # every figure and table the report shows (the summary is for the folder, not the report)
    assert {c.stem for c in captions} == {f"figure_{n}" for n in outputs.figure_names(grid=True)} | {
        f"table_{n}" for n in outputs.table_names(grid=True) if n != "summary"}
    for caption in captions:
        text = " ".join(caption.read_text().split())
        assert "baseline's validation loss minus the arm's" in text and "positive = the arm is better" in text, \
            caption.name
