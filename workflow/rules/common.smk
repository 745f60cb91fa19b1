import os
import shlex
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("8.0")


if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, schema="../schemas/config.schema.yaml")

if config["baseline"] not in config["arms"]:
    raise ValueError(
        f"config: baseline={config['baseline']!r} is not one of arms {sorted(config['arms'])}; "
        "set `baseline` to the arm gains are measured against"
    )

# Rules run `python -m mimetic` from this checkout, installed or not, inside any conda env:
# jobs inherit this variable, and cluster jobs set it again when they load the Snakefile.
os.environ.update(PYTHONPATH=str(Path(workflow.basedir) / "src"))

wildcard_constraints:
    experiment="|".join(map(str, config["experiments"])),
    arm="|".join(map(str, config["arms"])),
    seed=r"\d{1,9}",


def run_dirs(experiment=None):
    """Every run folder of the grid (of one experiment, if given)."""
    return [
        f"results/runs/{e}/{a}/seed{s}"
        for e in config["experiments"]
        if experiment in (None, e)
        for a in config["arms"]
        for s in config["seeds"]
    ]


def train_args(wildcards):
    """The `mimetic train` options of one run: its experiment's recipe, arm and seed."""
    recipe = config["experiments"][wildcards.experiment]
    arm = config["arms"][wildcards.arm]
    args = []
    for key, value in recipe.items():
        if value is None:
            continue
        option = key.replace("_", "-")
        if isinstance(value, bool):
            args.append(f"--{option}" if value else f"--no-{option}")
        else:
            args += [f"--{option}", str(value)]
    args += ["--arm", arm["init"], "--seed", wildcards.seed]
    for key, value in arm["params"].items():
        args += ["--init-param", f"{key}={value}"]
    return shlex.join(args)


def all_targets():
    return [
        "results/tables/summary.csv",
        "results/tables/summary.md",
        "results/figures/test_accuracy.png",
    ]
