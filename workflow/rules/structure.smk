rule extract_run:
    input:
        summary=f"{RUN}/summary.json",
        weights=f"{RUN}/final.safetensors",
    output:
        products=f"{STRUCTURE}/products.safetensors",
        metrics=f"{STRUCTURE}/structure.csv",
    log:
        "logs/extract_run/{experiment}/{arm}/seed{seed}/{stage}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "mimetic extract-run --summary {input.summary:q} --weights {input.weights:q} --stage {wildcards.stage}"
        " --products {output.products:q} --metrics {output.metrics:q} > {log:q} 2>&1"


rule plot_run_heatmaps:
    input:
        products=f"{STRUCTURE}/products.safetensors",
        code=PLOT_CODE,
    output:
        png=report(
            "results/figures/structure/{experiment}/{arm}_seed{seed}_{stage}_heatmaps.png",
            caption="../report/heatmaps.rst",
            category="3. Attention structure",
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "arm": "{arm}",
                "figure": "heatmaps ({stage})",
            },
        ),
        pdf="results/figures/structure/{experiment}/{arm}_seed{seed}_{stage}_heatmaps.pdf",
    log:
        "logs/plot_run_heatmaps/{experiment}/{arm}/seed{seed}/{stage}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        crop=config["structure"]["crop"],
        title=run_figure_title,
    shell:
        "mimetic plot-heatmaps --products {input.products:q} --title {params.title:q} --crop {params.crop}"
        " --out {output:q} > {log:q} 2>&1"


rule plot_structure_compare:
    input:
        products=structure_products,
        code=PLOT_CODE,
    output:
        png=report(
            "results/figures/structure_{experiment}.png",
            caption="../report/structure_compare.rst",
            category="3. Attention structure",
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "arm": "all",
                "figure": "pretrained, init, trained",
            },
        ),
        pdf="results/figures/structure_{experiment}.pdf",
    log:
        "logs/plot_structure_compare/{experiment}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        products=labelled_products,
        crop=config["structure"]["compare_crop"],
        title=compare_title,
    shell:
        "mimetic plot-compare --products {params.products:q} --title {params.title:q} --crop {params.crop}"
        " --out {output:q} > {log:q} 2>&1"


rule plot_structure_profile:
    input:
        metrics=structure_metrics,
        code=PLOT_CODE,
    output:
        png=report(
            "results/figures/structure_profile_{experiment}.png",
            caption="../report/profile.rst",
            category="3. Attention structure",
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "arm": "all",
                "figure": "diagonal profile",
            },
        ),
        pdf="results/figures/structure_profile_{experiment}.pdf",
    log:
        "logs/plot_structure_profile/{experiment}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        metrics=labelled_metrics,
    shell:
        "mimetic plot-profile --metrics {params.metrics:q} --out {output:q} > {log:q} 2>&1"
