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

# Rules run the package from this checkout, installed or not, inside any conda env.
MIMETIC = f"PYTHONPATH={shlex.quote(str(Path(workflow.basedir) / 'src'))}${{PYTHONPATH:+:$PYTHONPATH}} python -m mimetic"

RUNS = "results/runs/{experiment}/{arm}/seed{seed}"

STRUCTURE = "results/structure/{experiment}/{arm}/seed{seed}/{stage}"
# The runs whose attention structure is analysed: one seed of every experiment x arm.
STRUCTURE_SEED = config["structure"]["seed"] if config["structure"]["seed"] is not None else config["seeds"][0]

wildcard_constraints:
    experiment="|".join(map(str, config["experiments"])),
    arm="|".join(map(str, config["arms"])),
    seed=r"\d+",
    stage="init|final",
    pretrained="|".join(map(str, config["pretrained"])) or "(?!)",  # (?!) matches nothing


def run_dirs(experiment=None):
    """Every run folder of the grid (of one experiment, if given)."""
    return [
        RUNS.format(experiment=e, arm=a, seed=s)
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
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            args += [flag, str(value)]
    args += ["--arm", arm["init"], "--seed", wildcards.seed]
    for key, value in arm["params"].items():
        args += ["--init-param", f"{key}={value}"]
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
