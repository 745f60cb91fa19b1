"""The Snakemake DAG end to end, its config validation, and the files that describe it."""

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mimetic.data import DATASETS
from mimetic.init import INITS, NOISE, init_params
from mimetic.models import MODELS, POOLS, POS_EMBEDS
from mimetic.train import FLIPS, TrainConfig

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]

TINY = {
    "seeds": [0, 1],
    "arms": {"default": {"init": "default"}, "mimetic": {"init": "mimetic"}},
    "experiments": {"digits": {"dataset": "digits", "model": "vit_digits", "epochs": 2, "batch_size": 256,
                               "warmup_epochs": 1, "lr": 0.002, "gpus": 0}},
}


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run([*SNAKEMAKE, "-d", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    proc = snakemake(work, TINY, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_dag_trains_every_run_and_aggregates_them(pipeline):
    runs = pd.read_csv(pipeline / "results/tables/runs.csv")
    assert sorted(zip(runs["arm"], runs["seed"])) == [("default", 0), ("default", 1), ("mimetic", 0), ("mimetic", 1)]
    for run in runs.itertuples():
        folder = pipeline / f"results/runs/digits/{run.arm}/seed{run.seed}"
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["arm"] == run.arm and summary["seed"] == run.seed
        assert summary["config"]["epochs"] == 2 and summary["config"]["lr"] == 0.002
        assert summary["config"]["opt_eps"] == 0.001  # a schema default reached the run
        metrics = pd.read_csv(folder / "metrics.csv")
        assert metrics["epoch"].tolist() == [1, 2]
        assert metrics["test_acc"].iloc[-1] == pytest.approx(run.final_test_acc)
        assert (folder / "final.safetensors").stat().st_size > 10_000
    assert not (pipeline / "results/checkpoints/digits/default/seed0.pt").exists()

    summary = pd.read_csv(pipeline / "results/tables/summary.csv").set_index("arm")
    for arm in ("default", "mimetic"):
        accs = runs[runs["arm"] == arm].set_index("seed")["final_test_acc"]
        assert summary.loc[arm, "n_seeds"] == 2
        assert summary.loc[arm, "final_acc_mean"] == pytest.approx(accs.mean())
        assert summary.loc[arm, "final_acc_std"] == pytest.approx(accs.std())
    gains = (runs[runs["arm"] == "mimetic"].set_index("seed")["final_test_acc"]
             - runs[runs["arm"] == "default"].set_index("seed")["final_test_acc"])
    assert summary.loc["mimetic", "gain_mean"] == pytest.approx(gains.mean())
    assert "| digits | mimetic | 2 (0 1) |" in (pipeline / "results/tables/summary.md").read_text()

    epochs = pd.read_csv(pipeline / "results/tables/epochs.csv")
    assert len(epochs) == 4 * 2


def test_figure_is_a_real_png_and_pdf(pipeline):
    png = (pipeline / "results/figures/test_accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert (pipeline / "results/figures/test_accuracy.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_finished_pipeline_has_nothing_left_to_do(pipeline):
    proc = snakemake(pipeline, TINY, "-n", "--cores", "1")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize("change, message", [
    (lambda c: c["experiments"]["digits"].update(epoch=3), "epoch"),
    (lambda c: c["experiments"]["digits"].update(dataset="cifar11"), "cifar11"),
    (lambda c: c["arms"]["mimetic"].update(params={"beta1": -1}), "-1"),
    (lambda c: c.update(baseline="random"), "baseline='random' is not one of arms"),
    (lambda c: c.update(seeds=[]), "seeds"),
])
def test_bad_config_fails_before_any_job(tmp_path, change, message):
    config = json.loads(json.dumps(TINY))
    change(config)
    proc = snakemake(tmp_path, config, "-n", "--cores", "1")
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_lint_is_clean():
    for args in ([], ["--configfile", str(REPO / "config/quickstart.yaml")]):
        proc = subprocess.run([*SNAKEMAKE, "--lint", *args], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Lints for" not in proc.stdout + proc.stderr


def test_shipped_configs_are_complete_dry_runs(tmp_path):
    for path in sorted((REPO / "config").glob("*.yaml")):
        proc = snakemake(tmp_path, yaml.safe_load(path.read_text()), "-n", "--cores", "1")
        assert proc.returncode == 0, (path.name, proc.stdout[-2000:])


def test_schema_mirrors_the_train_options():
    """Every experiment key is a `mimetic train` option with the same default, and the
    enums are the registries, so neither can drift from the other."""
    props = SCHEMA["$defs"]["experiment"]["properties"]
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    per_run = {"arm", "init_params", "seed"}  # set by the arms and seeds, not per experiment
    assert set(props) - {"gpus"} == set(fields) - per_run  # gpus: the rule's resource
    for name, prop in props.items():
        if name == "gpus":
            continue
        if "default" in prop:
            assert prop["default"] == fields[name].default, name
        else:
            assert fields[name].metadata.get("required"), name
    assert set(props["dataset"]["enum"]) == set(DATASETS)
    assert set(props["model"]["enum"]) == set(MODELS)
    assert tuple(props["pool"]["enum"]) == POOLS
    assert tuple(props["pos_embed"]["enum"]) == POS_EMBEDS
    assert tuple(props["flip"]["enum"]) == FLIPS
    arm = SCHEMA["$defs"]["arm"]["properties"]
    assert set(arm["init"]["enum"]) == set(INITS)
    assert set(arm["params"]["properties"]) == {p for a in INITS for p in init_params(a)}
    assert tuple(arm["params"]["properties"]["dist"]["enum"]) == NOISE


# Import name -> conda-forge package, for the imports of src/mimetic.
CONDA_NAMES = {"torch": "pytorch", "PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml", "matplotlib": "matplotlib-base",
               "seaborn": "seaborn-base"}
STDLIB = set(sys.stdlib_module_names) | {"mimetic"}


def third_party_imports() -> set[str]:
    names = set()
    for path in (REPO / "src/mimetic").rglob("*.py"):
        for m in re.finditer(r"^\s*(?:from|import) ([a-zA-Z_]\w*)", path.read_text(), re.M):
            names.add(m.group(1))
    return {CONDA_NAMES.get(n, n) for n in names - STDLIB - {"__future__"}}


def conda_packages(path: Path) -> set[str]:
    env = yaml.safe_load(path.read_text())
    assert "conda-forge" in env["channels"] and "defaults" not in env["channels"], path
    return {re.split(r"[<>=! ]", d)[0] for d in env["dependencies"] if isinstance(d, str)}


def test_every_rule_env_exists_and_holds_what_the_package_imports():
    needed = third_party_imports()
    assert {"pytorch", "timm", "pandas", "seaborn-base"} <= needed  # the scan finds imports
    envs = set()
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        for m in re.finditer(r'conda:\s*\n\s*"([^"]+)"', rules.read_text()):
            envs.add((rules.parent / m.group(1)).resolve())
    assert envs, "no rule declares a conda env"
    for env in envs:
        assert env.is_file(), env
        assert needed <= conda_packages(env), (env, needed - conda_packages(env))


def test_environment_yml_runs_the_pipeline_and_the_tests():
    packages = conda_packages(REPO / "environment.yml")
    assert third_party_imports() | {"snakemake", "pytest", "torchvision"} <= packages


def test_every_rule_has_a_log_and_a_conda_env():
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        for body in re.split(r"^rule ", rules.read_text(), flags=re.M)[1:]:
            assert "\n    log:" in body and "\n    conda:" in body, (rules.name, body.split(":")[0])


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_results_folder_is_ignored_but_documented():
    assert (REPO / "results/README.md").is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/runs/x/summary.json"], cwd=REPO)
    assert ignored.returncode == 0


def test_rules_set_pythonpath_in_the_command_itself():
    """Snakemake drops PYTHONPATH from a job's environment under --use-conda, so a rule that
    relied on an inherited one would not find the package there."""
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        for command in re.findall(r'"([^"\n]*python -m mimetic[^"\n]*)"', rules.read_text()):
            assert command.startswith("PYTHONPATH={params.src:q} python -m mimetic"), (rules.name, command)


def test_slurm_profile_is_valid_for_snakemake(tmp_path):
    """Dry-run the workflow through the SLURM profile (conda swapped out: not on CI)."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["software-deployment-method"] == "conda"
    assert profile["retries"] >= 1 and profile["rerun-incomplete"]  # pre-empted runs come back
    del profile["software-deployment-method"]
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm/config.yaml").write_text(yaml.safe_dump(profile))
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    proc = snakemake(tmp_path, config, "-n", "--profile", str(tmp_path / "slurm"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "train" in proc.stdout


def test_train_jobs_ask_for_the_experiments_gpus(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["experiments"]["cifar10"]["gpus"] = 4
    proc = snakemake(tmp_path, config, "-n", "-p", "--cores", "1")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "gpu=4" in proc.stdout and "--gpus 4" in proc.stdout
