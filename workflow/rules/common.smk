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

# Rules run `PYTHONPATH={params.src} python -m mimetic ...`: the package of this checkout,
# installed or not. The variable is set in the command itself because Snakemake removes
# PYTHONPATH from a job's environment when it activates the job's conda env.
SRC = str(Path(workflow.basedir) / "src")

# Datasets the data stage downloads and converts (the schema's `data` section, less ImageNet,
# which is indexed in place and read by worker processes).
PREPARED_DATASETS = [name for name in config["data"] if name != "imagenet"]

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
        if value is None or key == "gpus":  # gpus: a resource of the rule, not a recipe key
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


def data_inputs(wildcards):
    """The prepared dataset a run reads: none for the built-in datasets (digits, synthetic)
    or where the recipe's `data_root` names a prepared folder of its own."""
    recipe = config["experiments"][wildcards.experiment]
    if recipe["dataset"] not in PREPARED_DATASETS or recipe.get("data_root"):
        return []
    return expand("resources/data/{dataset}/{file}", dataset=recipe["dataset"],
                  file=["train.npz", "test.npz", "meta.json"])


def imagenet_args(wildcards):
    """`mimetic prepare imagenet` options from config `data.imagenet` (unset root: the
    command fails with a message naming the key)."""
    cfg = config["data"]["imagenet"]
    args = [] if cfg["root"] is None else ["--root", cfg["root"]]
    args += ["--image-size", str(cfg["image_size"])]
    for key in ("train_per_class", "val_per_class"):
        if cfg[key] is not None:
            args += [f"--{key.replace('_', '-')}", str(cfg[key])]
    return shlex.join(args)


def all_targets():
    return [
        "results/tables/summary.csv",
        "results/tables/summary.md",
        "results/figures/test_accuracy.png",
    ]
