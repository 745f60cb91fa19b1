"""The Snakemake DAG end to end, its config validation, deployment, cluster profiles, and the
files that describe it."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mimetic.data import DATASETS
from mimetic.data.core import STREAMED
from mimetic.attention.init import INITS, NOISE, init_params
from mimetic.train.models import MODELS, POOLS, POS_EMBEDS
from mimetic.train.recipe import DECODES, FLIPS, INTERPOLATIONS, TrainConfig
from teacher import TEACHER

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
# The jobs find the package through the workflow's own PYTHONPATH, not the caller's.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

TINY = {
    "seeds": [0, 1],
    "arms": {"default": {"init": "default"}, "mimetic": {"init": "mimetic"}},
    "experiments": {"digits": {"dataset": "digits", "model": "vit_digits", "epochs": 2, "batch_size": 256,
                               "warmup_epochs": 1, "lr": 0.002, "gpus": 0}},
}
# The trained pipeline: config/successors_quick.yaml (the arms of successors.yaml, 2 seeds) at 2
# epochs, less the `identity` control (an attention-only init like mimetic, the same path through
# the DAG; its construction is tests/test_init.py's), and weight selection from a planted teacher
# (tests/teacher.py), a file in its folder.
PIPELINE = yaml.safe_load((REPO / "config/successors_quick.yaml").read_text())
PIPELINE["experiments"]["digits"]["epochs"] = 2
del PIPELINE["arms"]["identity"]
PIPELINE["arms"]["weight-selection"] = {"init": "weight-selection",
                                        "params": {"teacher": TEACHER, "file": "teacher.safetensors"}}
ARMS = list(PIPELINE["arms"])


def snakemake(workdir: Path, config: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run([*SNAKEMAKE, "-d", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
                          capture_output=True, text=True, timeout=600, env=env or ENV)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from teacher import planted_teacher

    work = tmp_path_factory.mktemp("pipeline")
    planted_teacher(work / "teacher.safetensors")
    proc = snakemake(work, PIPELINE, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_dag_trains_every_run_and_aggregates_them(pipeline):
    runs = pd.read_csv(pipeline / "results/tables/runs.csv")
    assert sorted(zip(runs["arm"], runs["seed"])) == sorted((arm, seed) for arm in ARMS for seed in (0, 1))
    for run in runs.itertuples():
        folder = pipeline / f"results/runs/digits/{run.arm}/seed{run.seed}"
        summary = json.loads((folder / "summary.json").read_text())
        assert (summary["experiment"], summary["arm"], summary["seed"]) == ("digits", run.arm, run.seed)
        assert summary["init"] == run.init == run.arm
        assert summary["config"]["epochs"] == 2 and summary["config"]["lr"] == 0.001
        assert summary["config"]["drop_path"] == 0.0  # a schema default reached the run
        metrics = pd.read_csv(folder / "metrics.csv")
        assert metrics["epoch"].tolist() == [1, 2]
        assert metrics["test_acc"].iloc[-1] == pytest.approx(run.final_test_acc)
        assert (folder / "final.safetensors").stat().st_size > 10_000
    assert not (pipeline / "results/checkpoints/digits/default/seed0.pt").exists()

    summary = pd.read_csv(pipeline / "results/tables/summary.csv").set_index("arm")
    for arm in ARMS:
        accs = runs[runs["arm"] == arm].set_index("seed")["final_test_acc"]
        assert summary.loc[arm, "n"] == 2
        assert summary.loc[arm, "mean"] == pytest.approx(accs.mean())
        assert summary.loc[arm, "sd"] == pytest.approx(accs.std())
    gains = (runs[runs["arm"] == "mimetic"].set_index("seed")["final_test_acc"]
             - runs[runs["arm"] == "default"].set_index("seed")["final_test_acc"])
    assert summary.loc["mimetic", "gain_mean"] == pytest.approx(gains.mean())
    assert "| digits | mimetic | 2 (0 1) |" in (pipeline / "results/tables/summary.md").read_text()

    epochs = pd.read_csv(pipeline / "results/tables/epochs.csv")
    assert len(epochs) == len(ARMS) * 2 * 2


def test_every_arm_writes_what_its_init_changed_and_the_report_tables_it(pipeline, monkeypatch):
    """Each run's init.json, recomputed here from the run's own weights at init (rebuilt from its
    summary, as the structure figures do); the Initialization table and the ranking figure hold
    every arm."""
    import torch

    from mimetic.attention import attention_products
    from mimetic.train.models import run_model

    monkeypatch.chdir(pipeline)  # the teacher's path is relative to the workflow's folder
    table = pd.read_csv(pipeline / "results/tables/initialization.csv").set_index("arm")
    assert set(table.index) == set(ARMS) and (table["n"] == 2).all()
    assert table.loc["impulse", "touches"] == "q k v proj pos_embed" and table.loc["default", "touches"] == "nothing"
    assert "blocks" in table.loc["weight-selection", "touches"]  # every weight, not only attention
    for arm in ARMS:
        folder = pipeline / f"results/runs/digits/{arm}/seed0"
        record = json.loads((folder / "init.json").read_text())
        assert any(record["changed"].values()) == (arm != "default"), arm
        model = run_model(json.loads((folder / "summary.json").read_text()), folder / "final.safetensors", "init")
        qk = attention_products(model)["qk"].double()  # (layer, head, d, d)
        first = next(r for r in record["layers"] if r["layer"] == 0)
        assert first["qk_diag_mean"] == pytest.approx(torch.diagonal(qk[0], dim1=-2, dim2=-1).mean().item(), abs=1e-6)
    text = (pipeline / "results/tables/initialization.md").read_text()
    assert "Initialization" in text and "weight-selection also writes patch_embed.*" in text
    assert (pipeline / "results/figures/arm_ranking.png").stat().st_size > 10_000


def test_figure_is_a_real_png_and_pdf(pipeline):
    png = (pipeline / "results/figures/test_accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert (pipeline / "results/figures/test_accuracy.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_finished_pipeline_has_nothing_left_to_do(pipeline):
    proc = snakemake(pipeline, PIPELINE, "-n", "--cores", "1")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def reordered(config: dict) -> dict:
    """The same config with every mapping's keys in reverse order."""
    if isinstance(config, dict):
        return {k: reordered(config[k]) for k in reversed(list(config))}
    return config


@pytest.mark.parametrize("execution", [
    {},
    {"eval_batch_size": 64, "checkpoint_every": 2, "accum_steps": 2, "compile": True, "gpus": 0},
])
def test_reordered_keys_and_execution_keys_retrain_nothing(pipeline, execution):
    config = json.loads(json.dumps(PIPELINE))
    config["experiments"]["digits"].update(execution)
    proc = snakemake(pipeline, reordered(config), "-n", "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Only the provenance page, which shows the resolved config, is re-made when the config's
    # execution keys change; nothing else, and nothing at all for a mere reordering.
    planned = set(re.findall(r"^(\w+)\s+\d+$", proc.stdout, re.M)) - {"total", "all"}
    assert planned == ({"provenance"} if execution else set()), proc.stdout[-3000:]


def test_the_tracked_recipe_lists_only_what_differs_from_the_trainers_defaults(pipeline):
    """So a recipe key added to the trainer later, at a default that keeps what runs compute,
    re-runs no finished run; summary.json still records every key."""
    proc = snakemake(pipeline, PIPELINE, "-n", "--cores", "1", "-p", "--forcerun", "train_run")
    recipes = {r["init"]: r for r in map(json.loads, re.findall(r"--recipe '(\{.*?\})'", proc.stdout))}
    assert recipes["default"] == {"batch_size": 128, "clip_grad": 1.0, "crop_padding": 1, "dataset": "digits",
                                  "epochs": 2, "init": "default", "init_params": {}, "label_smoothing": 0.1,
                                  "model": "vit_digits", "opt_eps": 1e-08, "pos_embed": "learned",
                                  "warmup_epochs": 1, "weight_decay": 0.05}  # lr 0.001 is the trainer's
    assert set(recipes) == set(ARMS)
    summary = json.loads((pipeline / "results/runs/digits/default/seed0/summary.json").read_text())
    assert set(summary["config"]) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_another_recipe_over_finished_runs_stops_at_planning_and_keeps_them(pipeline):
    """A second config with the same experiment and arm labels in the same results folder (or an
    edited recipe): planning names the first finished run of the other recipe and trains nothing
    over it, so switching back finds every run as it was."""
    summary = pipeline / "results/runs/digits/default/seed0/summary.json"
    before = summary.read_bytes()
    config = json.loads(json.dumps(PIPELINE))
    config["experiments"]["digits"]["lr"] = 0.002
    proc = snakemake(pipeline, config, "-n", "--cores", "1")
    assert proc.returncode != 0
    assert ("results/runs/digits/default/seed0 is a finished run of another recipe (lr: 0.001 there, 0.002 in this "
            "config); it is kept as it is: to train this recipe move that folder away") in proc.stdout + proc.stderr
    assert summary.read_bytes() == before
    assert "Nothing to be done" in snakemake(pipeline, PIPELINE, "-n", "--cores", "1").stdout


def test_check_records_stops_at_a_record_of_another_recipe(pipeline):
    """Runs reused without planning's check (copied results, `--rerun-triggers mtime`): the records
    check holds each to the config's recipe before any table is made."""
    from mimetic import cli
    from mimetic.train.recipe import run_config

    run = pipeline / "results/runs/digits/default/seed0"
    recipe = run_config({**PIPELINE["experiments"]["digits"], "epochs": 3}, "default", {}, 0).computed()
    argv = ["check-records", "--summaries", str(run / "summary.json"), "--metrics", str(run / "metrics.csv"),
            "--recipes", json.dumps([recipe])]
    with pytest.raises(SystemExit, match=rf"^mimetic check-records: {run} is a finished run of another recipe "
                                         r"\(epochs: 2 there, 3 in this config\)"):
        cli.main(argv)
    recipe["epochs"] = 2
    cli.main(argv[:-1] + [json.dumps([recipe])])  # of the config: passes


def test_spacing_edits_of_the_training_command_retrain_nothing(pipeline, tmp_path):
    """A run's identity is its recipe, not its rule's text: Snakemake re-runs a rule whose shell
    text changed ("Code has changed"), so the command's spacing is normalized."""
    copy = tmp_path / "clone"
    copy.mkdir()
    for part in ("Snakefile", "workflow", "config"):
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy2)(REPO / part, copy / part)
    (copy / "src").symlink_to(REPO / "src")
    rule = copy / "workflow/rules/train.smk"
    text = rule.read_text()
    rule.write_text(text.replace("--arm {wildcards.arm:q}", "--arm   {wildcards.arm:q}\n       "))
    assert rule.read_text() != text
    (pipeline / "config.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(copy / "Snakefile"), "-d", str(pipeline),
                           "--configfile", str(pipeline / "config.yaml"), "-n", "--cores", "1"],
                          capture_output=True, text=True, timeout=600, env=ENV)
    # (The analysis rules read the package's modules through this clone's path, a set of inputs
    # of their own: they may be planned again, training may not.)
    planned = set(re.findall(r"^(\w+)\s+\d+$", proc.stdout, re.M))
    assert proc.returncode == 0 and "train_run" not in planned and "check_records" not in planned, proc.stdout[-3000:]


def test_a_new_teacher_file_retrains_only_the_arm_that_reads_it(pipeline):
    teacher = pipeline / "teacher.safetensors"
    stat = teacher.stat()
    try:
        os.utime(teacher, ns=(stat.st_atime_ns, time.time_ns() + 10**10))  # newer than the runs made from it
        proc = snakemake(pipeline, PIPELINE, "-n", "--cores", "1")
    finally:
        os.utime(teacher, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert re.search(r"^train_run\s+2$", proc.stdout, re.M), proc.stdout[-3000:]
    assert set(re.findall(r"arm=([\w.-]+), seed=\d", proc.stdout)) == {"weight-selection"}


@pytest.mark.parametrize("module, redrawn", [("report/figures.py", "paper_figures"),
                                              ("report/structure_figures.py", "plot_structure"),
                                              ("report/tables.py", "result_tables")])
def test_editing_a_figure_or_table_module_remakes_only_what_it_draws(pipeline, module, redrawn):
    code = REPO / "src/mimetic" / module
    original = code.read_bytes()
    try:
        code.write_bytes(original + b"\n# an edit\n")
        proc = snakemake(pipeline, PIPELINE, "-n", "--cores", "1")
    finally:
        code.write_bytes(original)  # same content as recorded: nothing to redo afterwards
    planned = set(re.findall(r"^(\w+)\s+\d+$", proc.stdout, re.M)) - {"total", "all"}
    assert planned == {redrawn}, proc.stdout[-3000:]


@pytest.mark.parametrize("target", ["all", "train", "tables", "figures", "report", "pretrained"])
def test_named_targets_exist_and_are_built(pipeline, target):
    proc = snakemake(pipeline, PIPELINE, "-n", "--cores", "1", target)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Nothing to do but, for `pretrained` (no models configured here), the empty target itself.
    planned = re.findall(r"^(\w+)\s+\d+$", proc.stdout, re.M)
    assert set(planned) <= {target, "total"}, planned


def test_report_of_a_finished_run_builds(pipeline):
    proc = snakemake(pipeline, PIPELINE, "--cores", "1", "--report", str(pipeline / "report.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (pipeline / "report.html").stat().st_size > 100_000
    # The landing page shows the verdicts table (workflow/report/workflow.rst reads it in).
    landing = next(ln for ln in (pipeline / "report.html").read_text().splitlines() if "workflow_desc = " in ln)
    assert "Claims and their verdicts" in landing and "mimetic-table" in landing


def test_a_config_string_cannot_end_the_reports_inline_script(tmp_path):
    """Snakemake's report embeds each rule's params unescaped in an inline <script>: the config the
    provenance rule passes holds no `<`, `>` or `&`, and the command reads back every string as it was."""
    from mimetic.provenance import config_param

    root = "resources/</script><b>x & <!-- y"
    config = json.loads(json.dumps(TINY))
    config["data"] = {"cifar10": {"root": root}}
    text = config_param(config)
    assert json.loads(text) == config and not set("<>&") & set(text)
    proc = snakemake(tmp_path, config, "-n", "-p", "--cores", "1", "results/provenance.html")
    assert proc.returncode == 0, proc.stderr[-2000:]
    command = next(line for line in proc.stdout.splitlines() if "mimetic provenance" in line)
    passed = json.loads(re.search(r"--config '([^']+)'", command).group(1))
    assert passed["data"]["cifar10"]["root"] == root and "</script" not in command


def test_an_init_that_needs_another_recipe_stops_at_planning(tmp_path):
    config = json.loads(json.dumps(TINY))
    config["arms"]["impulse"] = {"init": "impulse"}  # digits here keeps the fixed sin-cos embedding
    proc = snakemake(tmp_path, config, "-n", "--cores", "1")
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    assert "experiments.digits.pos_embed: arm 'impulse' (init 'impulse') needs pos_embed: learned" in proc.stdout


def test_execution_keys_reach_the_run_outside_its_tracked_recipe(tmp_path):
    config = json.loads(json.dumps(TINY))
    config["experiments"]["digits"].update(eval_batch_size=64, compile=True, gpus=2)
    proc = snakemake(tmp_path, config, "-n", "-p", "--cores", "1", "train")
    command = next(line for line in proc.stdout.splitlines() if "mimetic train --recipe" in line)
    recipe = json.loads(re.search(r"--recipe '([^']+)'", command).group(1))
    assert recipe["lr"] == 0.002 and recipe["init"] in ("default", "mimetic")
    assert not {"eval_batch_size", "compile", "gpus", "checkpoint_every"} & set(recipe)
    assert list(recipe) == sorted(recipe)  # canonical: one encoding whatever the config's order
    assert "--gpus 2" in command and "--eval-batch-size 64" in command and "--compile" in command


@pytest.mark.parametrize("change, message", [
    (lambda c: c["experiments"]["digits"].update(epoch=3), "epoch"),
    (lambda c: c["experiments"]["digits"].update(dataset="cifar11"), "cifar11"),
    (lambda c: c["arms"]["mimetic"].update(params={"alpha1": -1}), "-1"),
    (lambda c: c.update(baseline="random"), "baseline: 'random' is not one of arms"),
    (lambda c: c["experiments"]["digits"].update(eval_batch_size=0), "eval_batch_size"),
    (lambda c: c.update(seeds=[]), "seeds"),
])
def test_bad_config_fails_before_any_job(tmp_path, change, message):
    """The planning check (more in tests/test_config_checks.py); one of them through a dry run."""
    from snakemake.utils import validate

    from mimetic.checks import ConfigError, check_config

    config = json.loads(json.dumps(TINY))
    change(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(config, [tmp_path / "config.yaml"], REPO / "workflow/schemas/config.schema.yaml", validate)
    if "baseline" in message:
        proc = snakemake(tmp_path, config, "-n", "--cores", "1")
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr
        assert not (tmp_path / "results").exists()


# config/ holds claims and references too; imagenet.yaml needs the user's copy (tests/test_imagenet.py)
WORKFLOW_CONFIGS = ["config.yaml", "ablations.yaml", "quickstart.yaml", "successors.yaml", "successors_quick.yaml"]


def test_shipped_configs_are_complete_dry_runs(tmp_path):
    """Each shipped config plans (the dry runs side by side: each mostly waits on its imports)."""
    from concurrent.futures import ThreadPoolExecutor

    def plan(name: str) -> subprocess.CompletedProcess:
        (tmp_path / name).mkdir()
        return snakemake(tmp_path / name, yaml.safe_load((REPO / "config" / name).read_text()), "-n", "--cores", "1")

    with ThreadPoolExecutor(len(WORKFLOW_CONFIGS)) as pool:
        for name, proc in zip(WORKFLOW_CONFIGS, pool.map(plan, WORKFLOW_CONFIGS)):
            assert proc.returncode == 0, (name, proc.stdout[-2000:])


def test_schema_mirrors_the_train_options():
    """Every experiment key is a `mimetic train` option with the same default, and the
    enums are the registries, so neither can drift from the other."""
    from mimetic.data.text import TEXT_DATASETS
    from mimetic.train.recipe import LMConfig

    per_run = {"init", "init_params", "seed"}  # set by the arms and seeds, not per experiment
    for definition, cls in (("vision_experiment", TrainConfig), ("lm_experiment", LMConfig)):
        props = SCHEMA["$defs"][definition]["properties"]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(props) - {"gpus"} == set(fields) - per_run  # gpus: the rule's resource
        for name, prop in props.items():
            if name == "gpus":
                continue
            if "default" in prop:
                assert prop["default"] == fields[name].default, name
            else:
                assert fields[name].metadata.get("required"), name
    # a text corpus makes a language-model experiment, anything else an image one
    assert SCHEMA["$defs"]["experiment"]["if"]["properties"]["dataset"]["enum"] == list(TEXT_DATASETS)
    props = SCHEMA["$defs"]["vision_experiment"]["properties"]
    assert set(props["dataset"]["enum"]) == set(DATASETS) | set(STREAMED)
    assert set(props["model"]["enum"]) == set(MODELS)
    assert tuple(props["pool"]["enum"]) == POOLS
    assert tuple(props["pos_embed"]["enum"]) == POS_EMBEDS
    assert tuple(props["flip"]["enum"]) == FLIPS
    assert tuple(props["interpolation"]["enum"]) == INTERPOLATIONS
    assert tuple(props["decode"]["enum"]) == DECODES
    arm = SCHEMA["$defs"]["arm"]["properties"]
    assert set(arm["init"]["enum"]) == set(INITS)
    assert set(arm["params"]["properties"]) == {p for a in INITS for p in init_params(a)}
    assert tuple(arm["params"]["properties"]["dist"]["enum"]) == NOISE


# Import name -> conda-forge package, for the imports of src/mimetic.
CONDA_NAMES = {"torch": "pytorch", "PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml",
               "matplotlib": "matplotlib-base", "seaborn": "seaborn-base"}
STDLIB = set(sys.stdlib_module_names) | {"mimetic"}


def third_party_imports() -> set[str]:
    import ast

    names = set()
    for path in (REPO / "src/mimetic").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
    return {CONDA_NAMES.get(n, n) for n in names - STDLIB - {"__future__"}}


def conda_env(path: Path) -> tuple[dict[str, str], list[str]]:
    """(package -> its full spec, pip lines) of a conda env file."""
    env = yaml.safe_load(path.read_text())
    assert "conda-forge" in env["channels"] and "defaults" not in env["channels"], path
    specs = {re.split(r"[<>=!\[ ]", d)[0]: d for d in env["dependencies"] if isinstance(d, str)}
    pip = next((d["pip"] for d in env["dependencies"] if isinstance(d, dict)), [])
    return specs, pip


def rule_envs() -> dict[str, Path]:
    """rule name -> the env file its `conda:` names."""
    envs = {}
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        for body in re.split(r"^rule ", rules.read_text(), flags=re.M)[1:]:
            m = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
            assert m, (rules.name, body.split(":")[0])
            envs[body.split(":")[0]] = (rules.parent / m.group(1)).resolve()
    return envs


def test_every_rule_env_parses_and_holds_what_the_package_imports():
    needed = third_party_imports()
    assert {"pytorch", "timm", "pandas", "seaborn-base", "jsonschema"} <= needed  # the scan finds imports
    envs = rule_envs()
    for env in set(envs.values()):
        specs, pip = conda_env(env)
        assert needed <= set(specs), (env, needed - set(specs))
        # Nothing that depends on where the env file is read from: the package comes from PYTHONPATH.
        assert pip == [] and "pip" not in specs and "snakemake-minimal" not in specs, env
    # Training gets a CUDA build wherever the env is solved; everything else a light CPU build.
    assert "build='cuda*'" in conda_env(envs["train_run"])[0]["pytorch"]
    assert "build='cuda*'" in conda_env(envs["train_run"])[0]["torchvision"]  # GPU JPEG decoding
    assert all("build='cpu*'" in conda_env(env)[0]["pytorch"] for rule, env in envs.items() if rule != "train_run")


def test_environment_yml_is_the_launcher_of_the_conda_envs():
    """environment.yml runs Snakemake with --sdm conda; the rule envs bring PyTorch, once for
    training (CUDA) and once for the rest (CPU), not a third time in the launcher."""
    specs, pip = conda_env(REPO / "environment.yml")
    assert {"snakemake", "snakemake-executor-plugin-slurm", "pygments"} <= set(specs) and pip == []
    assert not {"pytorch", "torchvision", "timm"} & set(specs)
    # Planning imports the package's light modules only: their requirements come with Snakemake.
    assert {"pyyaml", "jsonschema"} <= set(specs)


def test_the_package_brings_what_snakemake_report_needs():
    """The README's install (`pip install -e .`) must be enough for `snakemake --report`, which
    stops without pygments; only snakemake's `reports` extra requires it."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    snakemake = [d for d in deps if re.match(r"snakemake\b", d)]
    assert len(snakemake) == 1 and re.match(r"snakemake\[([\w,]*\b)?reports\b", snakemake[0]), snakemake


def test_every_rule_has_a_log_and_a_conda_env():
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        for body in re.split(r"^rule ", rules.read_text(), flags=re.M)[1:]:
            assert "\n    log:" in body and "\n    conda:" in body, (rules.name, body.split(":")[0])


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_results_folder_is_ignored_but_documented():
    assert (REPO / "results/README.md").is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/runs/x/summary.json"], cwd=REPO)
    assert ignored.returncode == 0


# Placeholders that are numbers or fixed words, never paths: they need no quoting.
UNQUOTED = {"threads", "wildcards.seed", "wildcards.stage", "params.crop", "params.compare_crop"}


def test_rules_call_the_package_one_way_and_quote_what_they_pass():
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        text = rules.read_text()
        # PYTHONPATH is set once, in common.smk's shell prefix, for every job.
        assert "PYTHONPATH" not in text or rules.name == "common.smk", rules.name
        assert "lambda" not in text, rules.name
        for body in re.split(r"^rule ", text, flags=re.M)[1:]:
            after = body.split("shell:")[1]
            named = re.match(r"\s+([A-Z_]+)\n", after)  # a command kept in a constant (train.smk's)
            if named:
                block = re.search(rf'^{named.group(1)} = " "\.join\(\s*"""(.*?)"""', text, re.M | re.S).group(1)
                shell = " ".join(block.split()).removeprefix("exec ")  # exec: the shell steps aside for the run
            else:
                shell = "".join(re.findall(r'^\s+"(.*)"$', after, re.M))
            assert shell.startswith("python -m mimetic "), (rules.name, shell)
            for name, quoted in re.findall(r"\{([^{}:]+)(:q)?\}", shell):
                assert quoted or name in UNQUOTED, (rules.name, name)


def test_used_as_a_module_from_another_folder(tmp_path):
    """Snakemake's module system (as snakedeploy writes it), to the end, from another folder: the
    jobs run the clone's package even with another `mimetic` ahead on the caller's PYTHONPATH."""
    other = tmp_path / "elsewhere/mimetic"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("raise SystemExit('another mimetic was imported')\n")
    config = {**json.loads(json.dumps(TINY)), "seeds": [0]}
    config["experiments"]["digits"]["epochs"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""\
        configfile: "config.yaml"

        module mimetic:
            snakefile: "{REPO / 'workflow/Snakefile'}"
            config: config

        use rule * from mimetic as mimetic_*
        """))
    def snakemake_here(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=900, env={**ENV, "PYTHONPATH": str(other.parent)})

    # Every rule plans; the runs and their tables are made (every arm to the report: the pipeline fixture).
    proc = snakemake_here("mimetic_tables")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(pd.read_csv(tmp_path / "results/tables/runs.csv")["arm"]) == {"default", "mimetic"}
    proc = snakemake_here("-n")
    assert proc.returncode == 0 and "mimetic_paper_figures" in proc.stdout, proc.stderr[-3000:]


def test_ci_runs_the_readme_quickstart_then_report_from_the_readme_install_alone():
    """.ci/run runs the README's quickstart block as written; in it the report is built before
    anything but the README's own install (a fresh venv, `pip install -e .`) is in the venv."""
    import runpy

    block = runpy.run_path(str(REPO / ".ci/readme_block.py"))["block"]((REPO / "README.md").read_text())
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[0].startswith("python3 -m venv .venv") and commands[1] == "pip install -e ."
    report = next(i for i, c in enumerate(commands) if "--report results/report.html" in c)
    quickstart = next(i for i, c in enumerate(commands) if c.startswith("snakemake --cores all --configfile"))
    assert quickstart < report and not any("install" in c for c in commands[2:report])
    assert commands[-1].endswith("&& pytest")  # the README's test command
    assert '"$(python3 .ci/readme_block.py)"' in (REPO / ".ci/run").read_text()


def test_a_default_profile_is_found_at_the_top_not_in_workflow(tmp_path):
    """From the clone's root Snakemake runs the top-level Snakefile and looks for profiles/default
    next to it (and in the working directory), not in workflow/profiles/default (README)."""
    for part in ("Snakefile", "workflow", "config", "src/mimetic"):
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        copy(REPO / part, tmp_path / part, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                             if (REPO / part).is_dir() else {}))
    used = "workflow specific profile"
    for where, found in (("workflow/profiles/default", False), ("profiles/default", True)):
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / "config.yaml").write_text("printshellcmds: true\n")
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1",
                               "--configfile", "config/quickstart.yaml"], cwd=tmp_path, capture_output=True,
                              text=True, env=ENV)
        assert proc.returncode == 0 and (used in proc.stdout + proc.stderr) == found, (where, proc.stderr[-2000:])
        shutil.rmtree(tmp_path / where)


def test_the_release_version_is_the_packages_everywhere():
    import importlib.metadata

    import mimetic

    assert importlib.metadata.version("mimetic") == mimetic.__version__  # pyproject.toml reads it
    assert yaml.safe_load((REPO / "CITATION.cff").read_text())["version"] == mimetic.__version__


FAKE_SBATCH = """#!/bin/sh
echo "$@" >> "$FAKE_SLURM_LOG"
echo 4242
"""
# The executor asks sacct how its jobs are doing: they all ended (without their outputs, so the
# workflow stops there, which is all this test needs).
FAKE_SACCT = """#!/bin/sh
case "$*" in *JobIdRaw,State*) echo "4242|COMPLETED" ;; esac
"""


def slurm_profile(tmp_path: Path, name: str) -> Path:
    """A copy of workflow/profiles/<name> without conda (not on CI) and quick to give up."""
    profile = yaml.safe_load((REPO / f"workflow/profiles/{name}/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["software-deployment-method"] == "conda"
    assert profile["retries"] >= 1 and profile["rerun-incomplete"] and profile["show-failed-logs"]
    del profile["software-deployment-method"]
    profile.update({"latency-wait": 1, "retries": 0, "slurm-init-seconds-before-status-checks": 1})
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in {"sbatch": FAKE_SBATCH, "sacct": FAKE_SACCT}.items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    for name in ("squeue", "sinfo", "scontrol", "sacctmgr", "sshare"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "sbatch.log"
    return {**ENV, "PATH": f"{bin_dir}:{ENV['PATH']}", "FAKE_SLURM_LOG": str(log)}, log


@pytest.mark.parametrize("profile", ["slurm", "slurm-gres"])
def test_slurm_submits_only_training_runs_with_their_gpus(tmp_path, fake_slurm, profile):
    """A 2-GPU experiment: one job per run, its GPUs as the profile asks for them, cores in proportion."""
    env, log = fake_slurm
    gpus = 2
    config = json.loads(json.dumps(TINY))
    config["experiments"]["digits"]["gpus"] = gpus
    work = tmp_path / "work"
    work.mkdir()
    proc = snakemake(work, config, "--profile", str(slurm_profile(tmp_path, profile)), env=env)
    assert log.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    calls = log.read_text().splitlines()
    assert len(calls) == 4  # 2 arms x 2 seeds; nothing else went to the cluster
    request = {"slurm": f"--gpus={gpus}", "slurm-gres": f"--gres=gpu:{gpus}"}[profile]
    for call in calls:
        assert "--allowed-rules train_run" in call and request in call, call
        assert ("--gres" in call) == (profile == "slurm-gres") and ("--gpus=" in call) == (profile == "slurm")
        # CPU cores in proportion to the GPUs (cpus_per_gpu, default 8), and one task, not one per GPU
        # (plugin issues #316, #459).
        assert f"--cpus-per-task={8 * gpus}" in call and "--ntasks-per-gpu" not in call, call
        assert "--signal=TERM@120" in call  # pre-emption's warning before the time limit (docs/training.md)


def test_the_paper_grid_plans_through_the_slurm_profile(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    proc = snakemake(tmp_path, config, "-n", "--profile", str(slurm_profile(tmp_path, "slurm")))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(r"^train_run\s+40$", proc.stdout, re.M)


def test_local_profile_is_valid(tmp_path):
    profile = yaml.safe_load((REPO / "workflow/profiles/local/config.yaml").read_text())
    assert profile["software-deployment-method"] == "conda" and profile["show-failed-logs"]
    del profile["software-deployment-method"]
    (tmp_path / "local").mkdir()
    (tmp_path / "local/config.yaml").write_text(yaml.safe_dump(profile))
    proc = snakemake(tmp_path, TINY, "-n", "--profile", str(tmp_path / "local"), "--resources", "gpu=2")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_train_jobs_ask_for_the_experiments_gpus(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["experiments"]["cifar10"]["gpus"] = 4
    proc = snakemake(tmp_path, config, "-n", "-p", "--cores", "1")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "gpu=4" in proc.stdout and "--gpus 4" in proc.stdout
