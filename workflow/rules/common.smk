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

for _exp, _label in config["structure"]["reference"].items():
    if _exp not in config["experiments"] or _label not in config["pretrained"]:
        raise ValueError(
            f"config: structure.reference maps {_exp!r} -> {_label!r}; keys must be experiments "
            f"{sorted(config['experiments'])} and values `pretrained` labels {sorted(config['pretrained'])}"
        )

# Rules run `PYTHONPATH={params.src} python -m mimetic ...`: the package of this checkout,
# installed or not. The variable is set in the command itself because Snakemake removes
# PYTHONPATH from a job's environment when it activates the job's conda env. Relative to the
# working directory, so that moving a checkout with its results does not change the rules'
# parameters (which would make Snakemake re-run every job).
SRC = os.path.relpath(Path(workflow.basedir) / "src")

# Datasets the data stage downloads and converts (the schema's `data` section, less ImageNet,
# which is indexed in place and read by worker processes).
PREPARED_DATASETS = [name for name in config["data"] if name != "imagenet"]

STRUCTURE = "results/structure/{experiment}/{arm}/seed{seed}/{stage}"
# The runs whose attention structure is analysed: one seed of every experiment x arm.
STRUCTURE_SEED = config["structure"]["seed"] if config["structure"]["seed"] is not None else config["seeds"][0]

wildcard_constraints:
    experiment="|".join(map(str, config["experiments"])),
    arm="|".join(map(str, config["arms"])),
    seed=r"\d{1,9}",
    stage="init|final",
    pretrained="|".join(map(str, config["pretrained"])) or "(?!)",  # (?!) matches nothing


def run_dirs():
    """Every run folder of the grid."""
    return [
        f"results/runs/{e}/{a}/seed{s}" for e in config["experiments"] for a in config["arms"] for s in config["seeds"]
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


def pretrained_args(wildcards):
    """The `mimetic extract` options of one `pretrained` entry."""
    entry = config["pretrained"][wildcards.pretrained]
    args = ["--model", entry["model"], "--label", wildcards.pretrained]
    if entry["file"]:
        args += ["--file", entry["file"]]
    if entry["num_heads"]:
        args += ["--num-heads", str(entry["num_heads"])]
    return shlex.join(args)


def structure_sources(experiment, filename):
    """label -> `filename` of every source of one experiment's structure figures, in column
    order: its pretrained reference (if any), then each arm initialized, then each arm trained."""
    sources = {}
    reference = config["structure"]["reference"].get(experiment)
    if reference:
        sources[f"pretrained {reference}"] = f"results/pretrained/{reference}/{filename}"
    for stage, name in (("init", "init"), ("final", "trained")):
        for arm in config["arms"]:
            path = STRUCTURE.format(experiment=experiment, arm=arm, seed=STRUCTURE_SEED, stage=stage)
            sources[f"{arm} {name}"] = f"{path}/{filename}"
    return sources


def labelled(sources):
    """LABEL=PATH arguments, quoted for the shell."""
    return shlex.join(f"{label}={path}" for label, path in sources.items())


def structure_targets():
    targets = []
    for e in config["experiments"]:
        targets += [f"results/figures/structure_{e}.png", f"results/figures/structure_profile_{e}.png"]
        targets += [
            f"results/figures/structure/{e}/{a}_seed{STRUCTURE_SEED}_final_heatmaps.png" for a in config["arms"]
        ]
    if config["pretrained"]:
        targets += [f"results/figures/pretrained/{p}_heatmaps.png" for p in config["pretrained"]]
        targets.append("results/figures/pretrained_profile.png")
    return targets


def all_targets():
    return [
        "results/tables/summary.csv",
        "results/tables/summary.md",
        "results/figures/test_accuracy.png",
    ] + structure_targets()
