rule extract_pretrained:
    input:
        pretrained_file,
    output:
        products="results/pretrained/{pretrained}/products.safetensors",
        metrics="results/pretrained/{pretrained}/structure.csv",
    log:
        "logs/pretrained/{pretrained}.log",
    params:
        args=pretrained_args,
    conda:
        "../envs/analysis.yaml"
    shell:
        "mimetic extract {params.args:q} --products {output.products:q} --metrics {output.metrics:q} > {log:q} 2>&1"


rule plot_pretrained_heatmaps:
    input:
        "results/pretrained/{pretrained}/products.safetensors",
    output:
        png=report(
            "results/figures/pretrained/{pretrained}_heatmaps.png",
            caption="../report/heatmaps.rst",
            category="Attention structure",
            subcategory="Pretrained",
            labels={"model": "{pretrained}", "figure": "heatmaps"},
        ),
        pdf="results/figures/pretrained/{pretrained}_heatmaps.pdf",
    log:
        "logs/plot_pretrained_heatmaps/{pretrained}.log",
    params:
        crop=config["structure"]["crop"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "mimetic plot-heatmaps --products {input:q} --title {wildcards.pretrained:q} --crop {params.crop}"
        " --out {output:q} > {log:q} 2>&1"


rule plot_pretrained_profile:
    input:
        expand("results/pretrained/{pretrained}/structure.csv", pretrained=config["pretrained"]),
    output:
        png=report(
            "results/figures/pretrained_profile.png",
            caption="../report/profile.rst",
            category="Attention structure",
            subcategory="Pretrained",
            labels={"model": "all pretrained", "figure": "diagonal profile"},
        ),
        pdf="results/figures/pretrained_profile.pdf",
    log:
        "logs/plot_pretrained_profile.log",
    params:
        metrics=pretrained_metrics(),
    conda:
        "../envs/analysis.yaml"
    shell:
        "mimetic plot-profile --metrics {params.metrics:q} --out {output:q} > {log:q} 2>&1"
