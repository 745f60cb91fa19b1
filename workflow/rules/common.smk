import json
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("8.0")


# The jobs run `python -m mimetic`, the package of this workflow, from this clone's src/ (on
# PYTHONPATH, ahead of anything installed): the same code wherever Snakemake runs from
# (--directory, --conda-prefix, a module deployment), and the rule envs install only its
# requirements. Snakemake drops an inherited PYTHONPATH in conda envs; the prefix sets it inside.
SOURCE = workflow.current_basedir.join("../../src/mimetic").get_path_or_uri(
    secret_free=True
)
if not os.path.isdir(SOURCE):
    raise WorkflowError(
        f"the workflow's package must be on this machine, but {SOURCE} is no folder here; "
        "clone the repository and use the workflow from the clone (README, 'Deployment')"
    )
shell.prefix(
    f"export PYTHONPATH={shlex.quote(os.path.dirname(os.path.abspath(SOURCE)))}"
    "${{PYTHONPATH:+:$PYTHONPATH}}; "  # braces doubled: the prefix is formatted
)

# Planning uses the package's own code (one implementation with the jobs'), and none of its
# heavy parts: no torch, timm, matplotlib or seaborn (tests/test_layout.py holds it to that).
sys.path.insert(0, os.path.dirname(os.path.abspath(SOURCE)))
try:
    from mimetic import checks
    from mimetic.attention.init import init_files
    from mimetic.data import PREPARED_NAMES, stage_args, stage_files
    from mimetic.data.text import TEXT_DATASETS, TOKENIZERS, text_stage_files
    from mimetic.report import claims, outputs
    from mimetic.train import recipe
except ImportError as e:
    raise WorkflowError(
        f"the workflow checks its config with its own package, which needs {e.name!r} in Snakemake's "
        "environment: pip install -e <this repository> (or conda env create -f environment.yml)"
    )


def repo_file(path):
    """A file of this repository, relative to the working directory like every path here."""
    return os.path.relpath(os.path.join(SOURCE, "../..", path))


# The claims and published numbers: the config's files, or the workflow's own.
CLAIMS = config.get("claims") or repo_file("config/claims.yaml")
REFERENCES = config.get("references") or repo_file("config/references.yaml")
CLAIMS_SCHEMA = workflow.source_path("../schemas/claims.schema.yaml")
REFERENCES_SCHEMA = workflow.source_path("../schemas/references.schema.yaml")

try:
    checks.check_config(
        config,
        workflow.configfiles,
        workflow.source_path("../schemas/config.schema.yaml"),
        validate,
    )
    claims.load_claims(CLAIMS, CLAIMS_SCHEMA)
    claims.load_references(REFERENCES, REFERENCES_SCHEMA)
except (checks.ConfigError, claims.SpecError) as e:
    raise WorkflowError(f"config: {e}")


def code(kind):
    """The package's code behind one kind of output (mimetic.report.outputs.CODE): an input of
    its rules, so that editing it re-makes what it shapes and nothing else."""
    return [repo_file(f"src/mimetic/{m}") for m in outputs.CODE[kind]]


# The grid in one canonical order (the baseline arm first, the rest sorted): a config whose
# keys are reordered plans the same jobs with the same parameters, figures included.
EXPERIMENTS = sorted(config["experiments"])
ARMS = [config["baseline"], *sorted(set(config["arms"]) - {config["baseline"]})]
SEEDS = sorted(config["seeds"])
PRETRAINED = sorted(config["pretrained"])
# The runs whose attention structure is analysed: one seed of every experiment x arm.
STRUCTURE_SEED = (
    config["structure"]["seed"]
    if config["structure"]["seed"] is not None
    else config["seeds"][0]
)
PREPARED_DATASETS = [name for name in config["data"] if name in PREPARED_NAMES]
GRID = outputs.has_grid(config["arms"], config["baseline"])
TABLES = outputs.table_files("results/tables", GRID)
FIGURES = outputs.figure_files("results/figures", GRID)
RECORDS = outputs.record_files("results/tables")
STRUCTURE_FIGURES = outputs.structure_stems(
    "results/figures", "{experiment}", ARMS, STRUCTURE_SEED
)
PRETRAINED_FIGURES = outputs.pretrained_stems("results/figures", PRETRAINED)

RUN = "results/runs/{experiment}/{arm}/seed{seed}"
STRUCTURE = "results/structure/{experiment}/{arm}/seed{seed}/{stage}"
STAGES = ["init", "final"]
STAGE_LABELS = {"init": "init", "final": "trained"}  # in the figures' labels


wildcard_constraints:
    experiment="|".join(map(str, config["experiments"])),
    arm="|".join(map(str, config["arms"])),
    seed=r"\d{1,9}",
    stage="init|final",
    pretrained="|".join(map(str, config["pretrained"])) or "(?!)",  # (?!) matches nothing


def run_records(filename):
    """`filename` of every run of the grid (experiment x arm x seed), in one fixed order."""
    return [
        f"{RUN.format(experiment=e, arm=a, seed=s)}/{filename}"
        for e in EXPERIMENTS
        for a in ARMS
        for s in SEEDS
    ]


def run_configs():
    """Every run's recipe (mimetic.train.recipe.run_config), in run_records' order."""
    return [
        recipe.run_config(
            config["experiments"][e],
            config["arms"][a]["init"],
            config["arms"][a]["params"],
            s,
        )
        for e in EXPERIMENTS
        for a in ARMS
        for s in SEEDS
    ]


def run_data_metas():
    """The data stage's meta files the runs read (each holds the data's fingerprint)."""
    metas = {c.data_meta() for c in run_configs() if not c.data_root}
    return sorted(str(m) for m in metas if m is not None)


def run_recipes():
    """run_configs() as the JSON list `mimetic check-records --recipes` reads."""
    # data_root too: where the run's data stage meta.json is, whose fingerprint it is held to
    return json.dumps(
        [c.computed() | {"data_root": c.data_root} for c in run_configs()],
        sort_keys=True,
    )


# A finished run is never trained over, nor counted, under another recipe: planning stops at the
# first one, before any training (check_records holds every record to its recipe again).
try:
    for summary, run_config in zip(run_records("summary.json"), run_configs()):
        checks.check_finished_run(summary, run_config)
except checks.RunMismatch as e:
    raise WorkflowError(f"results: {e}")


def get_recipe(wildcards):
    arm = config["arms"][wildcards.arm]
    return recipe.run_recipe(
        config["experiments"][wildcards.experiment], arm["init"], arm["params"]
    )


def get_execution(wildcards, resources):
    """`mimetic train` options from the experiment's execution keys. Taking `resources` makes this
    a parameter of the job's execution, which Snakemake does not track for re-runs."""
    return recipe.execution_args(
        config["experiments"][wildcards.experiment], config["runs_per_gpu"]
    )


def get_gpus(wildcards):
    return config["experiments"][wildcards.experiment]["gpus"]


def get_gres(wildcards):
    gpus = get_gpus(wildcards)
    return f"gpu:{gpus}" if gpus else ""


def get_cpus_per_task(wildcards):
    gpus = get_gpus(wildcards)
    return config["cpus_per_gpu"] * gpus if gpus else config["threads_per_run"]


def get_data(wildcards):
    """The prepared dataset a run reads (ImageNet: its index; a corpus: its tokens); none for the
    built-in datasets or where the recipe's `data_root` names a prepared folder of its own.
    """
    exp = config["experiments"][wildcards.experiment]
    if exp.get("data_root"):
        return []
    if exp["dataset"] in TEXT_DATASETS:
        files = text_stage_files(exp["dataset"], exp["tokenizer"])
    elif exp["dataset"] in [*PREPARED_DATASETS, "imagenet"]:
        files = stage_files(exp["dataset"])
    else:
        return []
    # ancient: a data stage re-run (a new root of the same data) re-trains nothing by itself; the
    # content's fingerprint, checked at planning and by check_records, tells other data apart.
    return [ancient(f) for f in files.values()]


def get_init_files(wildcards):
    """The local files an arm's init reads (a weight-selection teacher): a new one retrains the arm."""
    arm = config["arms"][wildcards.arm]
    return init_files(arm["init"], arm["params"])


def get_text_source(wildcards):
    """A local corpus file is an input of its tokens (an edited text re-tokenizes); the others are
    found or downloaded by the data stage."""
    root = config["data"][wildcards.corpus]["root"]
    return [root] if wildcards.corpus == "text" and root else []


def get_text_args(wildcards):
    root = config["data"][wildcards.corpus]["root"]
    tokenizer_root = config["data"]["gpt2_tokenizer"]["root"]
    args = ["--root", root] if root else []
    if wildcards.tokenizer == "gpt2" and tokenizer_root:
        args += ["--tokenizer-root", tokenizer_root]
    return args


def get_stage_args(wildcards):
    return stage_args(config["data"][wildcards.get("dataset", "imagenet")])


def get_pretrained_file(wildcards):
    """A local checkpoint is an input (its changes re-run the extraction): the file, or a
    model folder's weights (every shard) and config.json; hub weights are not."""
    from mimetic.attention.pretrained import checkpoint_files

    file = config["pretrained"][wildcards.pretrained]["file"]
    return checkpoint_files(file) if file else []


def get_pretrained_args(wildcards):
    entry = config["pretrained"][wildcards.pretrained]
    # An entry of the earlier keys gets the same arguments as before: its extraction is not re-run.
    args = ["--model", entry["model"]] if entry["model"] else []
    args += ["--label", wildcards.pretrained]
    if entry["file"]:
        args += ["--file", entry["file"]]
    if entry["num_heads"]:
        args += ["--num-heads", str(entry["num_heads"])]
    if entry["mapping"]:
        args += ["--mapping", json.dumps(entry["mapping"], sort_keys=True)]
    return args


def structure_sources(experiment):
    """(label, folder, arm, stage) of every source of one experiment's structure figures, in
    column order: its pretrained reference (if any; arm and stage "-"), then each arm
    initialized, then each arm trained."""
    reference = config["structure"]["reference"].get(experiment)
    sources = (
        [(f"pretrained {reference}", f"results/pretrained/{reference}", "-", "-")]
        if reference
        else []
    )
    for stage in STAGES:
        for arm in ARMS:
            folder = STRUCTURE.format(
                experiment=experiment, arm=arm, seed=STRUCTURE_SEED, stage=stage
            )
            sources.append((f"{arm} {STAGE_LABELS[stage]}", folder, arm, stage))
    return sources


def get_structure_products(wildcards):
    return [
        f"{d}/products.safetensors"
        for _, d, _, _ in structure_sources(wildcards.experiment)
    ]


def get_structure_metrics(wildcards):
    return [
        f"{d}/structure.csv" for _, d, _, _ in structure_sources(wildcards.experiment)
    ]


def get_structure_labels(wildcards):
    return [label for label, _, _, _ in structure_sources(wildcards.experiment)]


def get_structure_arms(wildcards):
    return [arm for _, _, arm, _ in structure_sources(wildcards.experiment)]


def get_structure_stages(wildcards):
    return [stage for _, _, _, stage in structure_sources(wildcards.experiment)]


def get_structure_title(wildcards):
    return f"{wildcards.experiment}, seed {STRUCTURE_SEED}"


def figure_files(stems, caption, subcategory, labels):
    """Each figure's files: the PNG in the report, with its caption and labels; the other formats."""
    files = []
    for stem, label in zip(stems, labels):
        for file in outputs.with_formats([stem]):
            if file.endswith(".png"):
                file = report(
                    file,
                    caption=f"../report/{caption}.rst",
                    category="3. Attention structure",
                    subcategory=subcategory,
                    labels=label,
                )
            files.append(file)
    return files


def structure_figures():
    stems = [s for group in STRUCTURE_FIGURES.values() for s in group]
    return expand(outputs.with_formats(stems), experiment=EXPERIMENTS)


def pretrained_figures():
    return outputs.with_formats(
        [s for group in PRETRAINED_FIGURES.values() for s in group]
    )


def figures():
    return [*FIGURES.values(), *structure_figures(), *pretrained_figures()]


def tables():
    return [*RECORDS.values(), *TABLES.values()]
