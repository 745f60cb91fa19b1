# Mimetic initialization of self-attention layers: the whole benchmark as one DAG.
#   snakemake --cores all --configfile config/quickstart.yaml   (offline, CPU, minutes)
#   snakemake --cores all --use-conda                            (config/config.yaml)
# Layout follows the Snakemake workflow template: the rules live in workflow/rules/.

report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/pretrained.smk"
include: "workflow/rules/structure.smk"


rule all:
    input:
        all_targets(),
    default_target: True
