rule extract_pretrained:
    input:
        pretrained_file,
    output:
        products="results/pretrained/{pretrained}/products.safetensors",
        metrics="results/pretrained/{pretrained}/structure.csv",
    log:
        "logs/pretrained/{pretrained}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        args=pretrained_args,
    shell:
        "mimetic extract {params.args:q} --products {output.products:q} --metrics {output.metrics:q} > {log:q} 2>&1"


rule plot_pretrained_heatmaps:
    input:
        products="results/pretrained/{pretrained}/products.safetensors",
        code=PLOT_CODE,
    output:
        png=report(
            "results/figures/pretrained/{pretrained}_heatmaps.png",
            caption="../report/heatmaps.rst",
            category="3. Attention structure",
            subcategory="Pretrained",
            labels={"model": "{pretrained}", "figure": "heatmaps"},
        ),
        pdf="results/figures/pretrained/{pretrained}_heatmaps.pdf",
    log:
        "logs/plot_pretrained_heatmaps/{pretrained}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        crop=config["structure"]["crop"],
    shell:
        "mimetic plot-heatmaps --products {input.products:q} --title {wildcards.pretrained:q} --crop {params.crop}"
        " --out {output:q} > {log:q} 2>&1"


rule plot_pretrained_profile:
    input:
        expand(
            "results/pretrained/{pretrained}/structure.csv",
            pretrained=PRETRAINED,
        ),
    output:
        png=report(
            "results/figures/pretrained_profile.png",
            caption="../report/profile.rst",
            category="3. Attention structure",
            subcategory="Pretrained",
            labels={"model": "all pretrained", "figure": "diagonal profile"},
        ),
        pdf="results/figures/pretrained_profile.pdf",
    log:
        "logs/plot_pretrained_profile.log",
    conda:
        "../envs/analysis.yaml"
    params:
        metrics=pretrained_metrics(),
    shell:
        "mimetic plot-profile --metrics {params.metrics:q} --out {output:q} > {log:q} 2>&1"
