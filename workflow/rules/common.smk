import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.0")


# The jobs run `mimetic`, the package of this workflow, from their environment: the conda envs
# install it from this folder (workflow/envs/*.yaml), and without conda it is the one `pip
# install -e` put into the current environment. Every job checks that what it imported is this
# workflow's code (mimetic.provenance), so another checkout's package never runs silently.
SOURCE = workflow.current_basedir.join("../../src/mimetic").get_path_or_uri(
    secret_free=True
)
if not os.path.isdir(SOURCE):
    raise WorkflowError(
        f"the workflow's package must be on this machine, but {SOURCE} is no folder here; "
        "clone the repository and use the workflow from the clone (README, 'Deployment')"
    )
shell.prefix(f"export MIMETIC_WORKFLOW_SOURCE={shlex.quote(os.path.abspath(SOURCE))}; ")

# Planning checks use the package's own code (one implementation with the trainer's).
sys.path.insert(0, os.path.dirname(os.path.abspath(SOURCE)))
try:
    from mimetic import checks
except ImportError as e:
    raise WorkflowError(
        f"the workflow checks its config with its own package, which needs {e.name!r} in Snakemake's "
        "environment: pip install -e <this repository> (or conda env create -f environment.yml)"
    )

from mimetic import claims, compare, plots, recipe, tables

# The claims and published numbers: the config's files, or the workflow's own.
CLAIMS = config.get("claims") or os.path.relpath(
    os.path.join(SOURCE, "../../config/claims.yaml")
)
REFERENCES = config.get("references") or os.path.relpath(
    os.path.join(SOURCE, "../../config/references.yaml")
)
CLAIMS_SCHEMA = workflow.source_path("../schemas/claims.schema.yaml")
REFERENCES_SCHEMA = workflow.source_path("../schemas/references.schema.yaml")

try:
    checks.check_files(workflow.configfiles)
    checks.yaml12_numbers(config)
    validate(config, schema="../schemas/config.schema.yaml")
    checks.check(config)
    claims.load_claims(CLAIMS, CLAIMS_SCHEMA)
    claims.load_references(REFERENCES, REFERENCES_SCHEMA)
except (checks.ConfigError, claims.SpecError) as e:
    raise WorkflowError(f"config: {e}")


def package_code(*modules):
    """Source files of the package: inputs of the rules whose output they shape (tables,
    figures), so that editing them re-makes those outputs. Relative, like every path here.
    """
    return [os.path.relpath(os.path.join(SOURCE, f"{m}.py")) for m in modules]


PLOT_CODE = package_code("plots")
TABLE_CODE = package_code("aggregate", "stats", "compare", "render", "tables", "claims")
PROVENANCE_CODE = package_code("provenance")

# The grid in one canonical order (the baseline arm first, the rest sorted): a config whose
# keys are reordered plans the same jobs with the same parameters, figures included.
EXPERIMENTS = sorted(config["experiments"])
ARMS = [
    config["baseline"],
    *sorted(a for a in config["arms"] if a != config["baseline"]),
]
SEEDS = sorted(config["seeds"])
PRETRAINED = sorted(config["pretrained"])

RUN = "results/runs/{experiment}/{arm}/seed{seed}"
STRUCTURE = "results/structure/{experiment}/{arm}/seed{seed}/{stage}"
# The runs whose attention structure is analysed: one seed of every experiment x arm.
STRUCTURE_SEED = (
    config["structure"]["seed"]
    if config["structure"]["seed"] is not None
    else config["seeds"][0]
)
# Datasets the data stage downloads and converts (the schema's `data` section, less ImageNet,
# which is indexed in place and read by worker processes).
PREPARED_DATASETS = [name for name in config["data"] if name != "imagenet"]
# Recipe keys that say how a run executes, not what it computes (mimetic.recipe.TrainConfig
# .EXECUTION, and `gpus`): they reach `mimetic train` outside its tracked recipe, so changing
# them never re-runs a finished run.
TRAIN_OPTIONS = recipe.TrainConfig.EXECUTION
EXECUTION = (*TRAIN_OPTIONS, "gpus")

# What `aggregate` writes from the run records, and what the result tables and figures read.
RUNS_CSV = "results/tables/runs.csv"
EPOCHS_CSV = "results/tables/epochs.csv"
SUMMARY_CSV = "results/tables/summary.csv"
SUMMARY_MD = "results/tables/summary.md"


wildcard_constraints:
    experiment="|".join(map(str, config["experiments"])),
    arm="|".join(map(str, config["arms"])),
    seed=r"\d{1,9}",
    stage="init|final",
    pretrained="|".join(map(str, config["pretrained"])) or "(?!)",  # (?!) matches nothing


def run_records(filename="summary.json"):
    """`filename` of every run of the grid (experiment x arm x seed), in one fixed order."""
    return [
        f"{RUN.format(experiment=e, arm=a, seed=s)}/{filename}"
        for e in EXPERIMENTS
        for a in ARMS
        for s in SEEDS
    ]


# The trainer's defaults, which a run recipe leaves out (see run_recipe).
RECIPE_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(recipe.TrainConfig)
    if f.name not in EXECUTION
}


def run_recipe(wildcards):
    """What one run computes, as canonical JSON (sorted keys, one encoding): its experiment's
    recipe less the execution keys and the keys at the trainer's default, and its arm's init.
    Snakemake tracks this parameter, so a real recipe change re-runs the run, and neither a
    reordered config file nor a recipe key added to the trainer later (at a default that keeps
    what runs compute) does. summary.json records every key."""
    recipe = {
        k: v
        for k, v in config["experiments"][wildcards.experiment].items()
        if k not in EXECUTION and not (k in RECIPE_DEFAULTS and v == RECIPE_DEFAULTS[k])
    }
    arm = config["arms"][wildcards.arm]
    recipe.update(init=arm["init"], init_params=arm["params"])
    return json.dumps(recipe, sort_keys=True)


def execution_options(wildcards, resources):
    """How one run executes: `mimetic train` options from its experiment's execution keys.

    Taking `resources` makes this a parameter derived from the job's execution, which
    Snakemake does not track for re-runs (tests/test_workflow.py holds it to that)."""
    recipe = config["experiments"][wildcards.experiment]
    args = [
        "--gpus",
        str(recipe["gpus"]),
        "--runs-per-gpu",
        str(config["runs_per_gpu"]),
    ]
    for key in TRAIN_OPTIONS:
        value, option = recipe.get(key), f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            args.append(option if value else f"--no-{option[2:]}")
        elif value is not None:
            args += [option, str(value)]
    return args


def run_gpus(wildcards):
    """GPUs a run takes: what `--resources gpu=N` counts, and the SLURM executor asks for."""
    return config["experiments"][wildcards.experiment]["gpus"]


def data_inputs(wildcards):
    """The prepared dataset a run reads (ImageNet: its index): none for the built-in datasets
    (digits, synthetic) or where the recipe's `data_root` names a prepared folder of its own.
    """
    recipe = config["experiments"][wildcards.experiment]
    if recipe.get("data_root"):
        return []
    if recipe["dataset"] == "imagenet":
        return expand(
            "resources/data/imagenet/{file}", file=["train.csv", "val.csv", "meta.json"]
        )
    if recipe["dataset"] not in PREPARED_DATASETS:
        return []
    return expand(
        "resources/data/{dataset}/{file}",
        dataset=recipe["dataset"],
        file=["train.npz", "test.npz", "meta.json"],
    )


def dataset_root(wildcards):
    return config["data"][wildcards.dataset]["root"]


def imagenet_args(wildcards):
    """`mimetic prepare imagenet` options from config `data.imagenet` (unset root: the
    command fails with a message naming the key)."""
    cfg = config["data"]["imagenet"]
    args = [] if cfg["root"] is None else ["--root", cfg["root"]]
    classes = cfg["classes"]
    if classes is not None:
        args += [
            "--classes",
            *map(str, classes if isinstance(classes, list) else [classes]),
        ]
    for key in ("train_per_class", "val_per_class"):
        if cfg[key] is not None:
            args += [f"--{key.replace('_', '-')}", str(cfg[key])]
    return args


def pretrained_file(wildcards):
    """A local checkpoint is an input (its changes re-run the extraction); hub weights are not."""
    return config["pretrained"][wildcards.pretrained]["file"] or []


def pretrained_args(wildcards):
    """The `mimetic extract` options of one `pretrained` entry."""
    entry = config["pretrained"][wildcards.pretrained]
    args = ["--model", entry["model"], "--label", wildcards.pretrained]
    if entry["file"]:
        args += ["--file", entry["file"]]
    if entry["num_heads"]:
        args += ["--num-heads", str(entry["num_heads"])]
    return args


def structure_sources(experiment, filename):
    """label -> `filename` of every source of one experiment's structure figures, in column
    order: its pretrained reference (if any), then each arm initialized, then each arm trained.
    """
    sources = {}
    reference = config["structure"]["reference"].get(experiment)
    if reference:
        sources[f"pretrained {reference}"] = (
            f"results/pretrained/{reference}/{filename}"
        )
    for stage, name in (("init", "init"), ("final", "trained")):
        for arm in ARMS:
            path = STRUCTURE.format(
                experiment=experiment, arm=arm, seed=STRUCTURE_SEED, stage=stage
            )
            sources[f"{arm} {name}"] = f"{path}/{filename}"
    return sources


def structure_products(wildcards):
    return list(
        structure_sources(wildcards.experiment, "products.safetensors").values()
    )


def structure_metrics(wildcards):
    return list(structure_sources(wildcards.experiment, "structure.csv").values())


def labelled(sources):
    """LABEL=PATH arguments."""
    return [f"{label}={path}" for label, path in sources.items()]


def labelled_products(wildcards):
    return labelled(structure_sources(wildcards.experiment, "products.safetensors"))


def labelled_metrics(wildcards):
    return labelled(structure_sources(wildcards.experiment, "structure.csv"))


def pretrained_metrics():
    return labelled({p: f"results/pretrained/{p}/structure.csv" for p in PRETRAINED})


def run_figure_title(wildcards):
    return f"{wildcards.experiment}, {wildcards.arm}, seed {wildcards.seed}, {wildcards.stage}"


def compare_title(wildcards):
    return f"{wildcards.experiment}, seed {STRUCTURE_SEED}"


def both(path):
    """A figure's PNG and PDF."""
    return [f"{path}.png", f"{path}.pdf"]


def structure_figures():
    targets = []
    for e in EXPERIMENTS:
        targets += both(f"results/figures/structure_{e}") + both(
            f"results/figures/structure_profile_{e}"
        )
        for a in ARMS:
            targets += both(
                f"results/figures/structure/{e}/{a}_seed{STRUCTURE_SEED}_final_heatmaps"
            )
    return targets


def pretrained_figures():
    targets = []
    for p in PRETRAINED:
        targets += both(f"results/figures/pretrained/{p}_heatmaps")
    if config["pretrained"]:
        targets += both("results/figures/pretrained_profile")
    return targets


GRID = compare.has_grid(config["arms"], config["baseline"])


def tables_():
    """Every table: the aggregate's and the result tables (CSV, Markdown, LaTeX, HTML)."""
    return [
        RUNS_CSV,
        EPOCHS_CSV,
        SUMMARY_CSV,
        SUMMARY_MD,
        *result_tables(),
        *result_tables_html().values(),
    ]


def result_tables():
    """The result tables as CSV, Markdown and LaTeX (their HTML: result_tables_html)."""
    names = [*tables.TABLES, *([tables.GRID] if GRID else [])]
    return [f"results/tables/{n}.{ext}" for n in names for ext in ("csv", "md", "tex")]


def result_tables_html():
    names = [*tables.TABLES, *([tables.GRID] if GRID else [])]
    return {n: f"results/tables/{n}.html" for n in names}


def paper_figures():
    """The result figures, each as PNG and PDF (mimetic.plots)."""
    names = [*plots.FIGURES, *([plots.GRID_FIGURE] if GRID else [])]
    return {n: f"results/figures/{n}.png" for n in names}


def figures():
    return (
        [
            *paper_figures().values(),
            *(p.replace(".png", ".pdf") for p in paper_figures().values()),
        ]
        + both("results/figures/test_accuracy")
        + structure_figures()
        + pretrained_figures()
    )
