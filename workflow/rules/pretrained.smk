rule extract_pretrained:
    input:
        get_pretrained_file,
    output:
        products="results/pretrained/{pretrained}/products.safetensors",
        metrics="results/pretrained/{pretrained}/structure.csv",
    log:
        "logs/pretrained/{pretrained}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        args=get_pretrained_args,
    shell:
        "python -m mimetic extract {params.args:q} --products {output.products:q} --metrics {output.metrics:q} > {log:q} 2>&1"


# Every pretrained model's heatmaps, and their diagonal profiles side by side (any layout; a
# relative-depth axis where depths differ), in one job.
rule plot_pretrained:
    input:
        products=expand("results/pretrained/{p}/products.safetensors", p=PRETRAINED),
        metrics=expand("results/pretrained/{p}/structure.csv", p=PRETRAINED),
        code=code("structure_figures"),
    output:
        heatmaps=figure_files(
            PRETRAINED_FIGURES["heatmaps"],
            caption="heatmaps",
            subcategory="Pretrained",
            labels=[{"model": p, "figure": "heatmaps"} for p in PRETRAINED],
        ),
        profile=figure_files(
            PRETRAINED_FIGURES["profile"],
            caption="profile",
            subcategory="Pretrained",
            labels=[{"model": "all pretrained", "figure": "diagonal profile"}],
        ),
    log:
        "logs/plot_pretrained.log",
    conda:
        "../envs/analysis.yaml"
    params:
        labels=PRETRAINED,
        title="pretrained models",
        crop=config["structure"]["crop"],
    shell:
        "python -m mimetic plot-structure --labels {params.labels:q} --products {input.products:q} --metrics {input.metrics:q}"
        " --heatmaps-of {params.labels:q} --heatmaps {output.heatmaps:q} --profile {output.profile:q}"
        " --title {params.title:q} --crop {params.crop} > {log:q} 2>&1"
