# The analysed runs' attention products, each arm initialized and trained, in one job per experiment.
rule extract_runs:
    input:
        summaries=expand(
            f"{RUN}/summary.json", arm=ARMS, seed=STRUCTURE_SEED, allow_missing=True
        ),
        weights=expand(
            f"{RUN}/final.safetensors",
            arm=ARMS,
            seed=STRUCTURE_SEED,
            allow_missing=True,
        ),
    output:
        # runs outer, stages inner: as `mimetic extract-runs` pairs them
        products=expand(
            f"{STRUCTURE}/products.safetensors",
            arm=ARMS,
            stage=STAGES,
            seed=STRUCTURE_SEED,
            allow_missing=True,
        ),
        metrics=expand(
            f"{STRUCTURE}/structure.csv",
            arm=ARMS,
            stage=STAGES,
            seed=STRUCTURE_SEED,
            allow_missing=True,
        ),
    log:
        "logs/extract_runs/{experiment}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        stages=STAGES,
    shell:
        "python -m mimetic extract-runs --summaries {input.summaries:q} --weights {input.weights:q} --stages {params.stages:q}"
        " --products {output.products:q} --metrics {output.metrics:q} > {log:q} 2>&1"


# One experiment's structure figures in one job: each arm's trained heatmaps, the sources side by
# side, their diagonal profile.
rule plot_structure:
    input:
        products=get_structure_products,
        metrics=get_structure_metrics,
        code=code("structure_figures"),
    output:
        heatmaps=figure_files(
            STRUCTURE_FIGURES["heatmaps"],
            caption="heatmaps",
            subcategory="{experiment}",
            labels=[
                {"experiment": "{experiment}", "arm": a, "figure": "heatmaps"}
                for a in ARMS
            ],
        ),
        compare=figure_files(
            STRUCTURE_FIGURES["compare"],
            caption="structure_compare",
            subcategory="{experiment}",
            labels=[
                {
                    "experiment": "{experiment}",
                    "arm": "all",
                    "figure": "pretrained, init, trained",
                }
            ],
        ),
        profile=figure_files(
            STRUCTURE_FIGURES["profile"],
            caption="profile",
            subcategory="{experiment}",
            labels=[
                {
                    "experiment": "{experiment}",
                    "arm": "all",
                    "figure": "diagonal profile",
                }
            ],
        ),
    log:
        "logs/plot_structure/{experiment}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        labels=get_structure_labels,
        arms=get_structure_arms,
        stages=get_structure_stages,
        baseline=config["baseline"],
        heatmaps_of=[f"{a} {STAGE_LABELS['final']}" for a in ARMS],
        title=get_structure_title,
        crop=config["structure"]["crop"],
        compare_crop=config["structure"]["compare_crop"],
    shell:
        "python -m mimetic plot-structure --labels {params.labels:q} --products {input.products:q} --metrics {input.metrics:q}"
        " --heatmaps-of {params.heatmaps_of:q} --heatmaps {output.heatmaps:q} --compare {output.compare:q}"
        " --profile {output.profile:q} --arms {params.arms:q} --stages {params.stages:q} --baseline {params.baseline:q}"
        " --title {params.title:q} --crop {params.crop}"
        " --compare-crop {params.compare_crop} > {log:q} 2>&1"
