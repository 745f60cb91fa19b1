rule extract_pretrained:
    input:
        # A local checkpoint is an input (its changes re-run the rule); hub weights are not.
        lambda wc: config["pretrained"][wc.pretrained]["file"] or [],
    output:
        products="results/pretrained/{pretrained}/products.safetensors",
        metrics="results/pretrained/{pretrained}/structure.csv",
    log:
        "logs/pretrained/{pretrained}.log",
    params:
        src=SRC,
        args=pretrained_args,
        out_dir=lambda wc, output: Path(output.metrics).parent,
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic extract {params.args} --out-dir {params.out_dir} > {log} 2>&1"


rule plot_pretrained_heatmaps:
    input:
        "results/pretrained/{pretrained}/products.safetensors",
    output:
        png=report(
            "results/figures/pretrained/{pretrained}_heatmaps.png",
            caption="../report/heatmaps.rst",
            category="Attention structure",
            subcategory="Pretrained",
        ),
        pdf="results/figures/pretrained/{pretrained}_heatmaps.pdf",
    log:
        "logs/plot_pretrained_heatmaps/{pretrained}.log",
    params:
        src=SRC,
        crop=config["structure"]["crop"],
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic plot-heatmaps --products {input} --title {wildcards.pretrained} --crop {params.crop}"
        " --out {output.png} > {log} 2>&1"


rule plot_pretrained_profile:
    input:
        expand("results/pretrained/{pretrained}/structure.csv", pretrained=config["pretrained"]),
    output:
        png=report(
            "results/figures/pretrained_profile.png",
            caption="../report/profile.rst",
            category="Attention structure",
            subcategory="Pretrained",
        ),
        pdf="results/figures/pretrained_profile.pdf",
    log:
        "logs/plot_pretrained_profile.log",
    params:
        src=SRC,
        metrics=labelled({p: f"results/pretrained/{p}/structure.csv" for p in config["pretrained"]}),
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic plot-profile --metrics {params.metrics} --out {output.png} > {log} 2>&1"
