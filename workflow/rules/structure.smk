rule extract_run:
    input:
        summary="results/runs/{experiment}/{arm}/seed{seed}/summary.json",
        weights="results/runs/{experiment}/{arm}/seed{seed}/final.safetensors",
    output:
        products=f"{STRUCTURE}/products.safetensors",
        metrics=f"{STRUCTURE}/structure.csv",
    log:
        "logs/extract_run/{experiment}/{arm}/seed{seed}/{stage}.log",
    params:
        src=SRC,
        run=lambda wc, input: Path(input.summary).parent,
        out_dir=lambda wc, output: Path(output.metrics).parent,
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic extract-run --run {params.run} --stage {wildcards.stage} --out-dir {params.out_dir} > {log} 2>&1"


rule plot_run_heatmaps:
    input:
        f"{STRUCTURE}/products.safetensors",
    output:
        png=report(
            "results/figures/structure/{experiment}/{arm}_seed{seed}_{stage}_heatmaps.png",
            caption="../report/heatmaps.rst",
            category="Attention structure",
            subcategory="{experiment}",
        ),
        pdf="results/figures/structure/{experiment}/{arm}_seed{seed}_{stage}_heatmaps.pdf",
    log:
        "logs/plot_run_heatmaps/{experiment}/{arm}/seed{seed}/{stage}.log",
    params:
        src=SRC,
        crop=config["structure"]["crop"],
        title=lambda wc: shlex.quote(f"{wc.experiment}, {wc.arm}, seed {wc.seed}, {wc.stage}"),
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic plot-heatmaps --products {input} --title {params.title} --crop {params.crop}"
        " --out {output.png} > {log} 2>&1"


rule plot_structure_compare:
    input:
        lambda wc: structure_sources(wc.experiment, "products.safetensors").values(),
    output:
        png=report(
            "results/figures/structure_{experiment}.png",
            caption="../report/structure_compare.rst",
            category="Attention structure",
            subcategory="{experiment}",
        ),
        pdf="results/figures/structure_{experiment}.pdf",
    log:
        "logs/plot_structure_compare/{experiment}.log",
    params:
        src=SRC,
        products=lambda wc: labelled(structure_sources(wc.experiment, "products.safetensors")),
        crop=config["structure"]["compare_crop"],
        title=lambda wc: shlex.quote(f"{wc.experiment}, seed {STRUCTURE_SEED}"),
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic plot-compare --products {params.products} --title {params.title} --crop {params.crop}"
        " --out {output.png} > {log} 2>&1"


rule plot_structure_profile:
    input:
        lambda wc: structure_sources(wc.experiment, "structure.csv").values(),
    output:
        png=report(
            "results/figures/structure_profile_{experiment}.png",
            caption="../report/profile.rst",
            category="Attention structure",
            subcategory="{experiment}",
        ),
        pdf="results/figures/structure_profile_{experiment}.pdf",
    log:
        "logs/plot_structure_profile/{experiment}.log",
    params:
        src=SRC,
        metrics=lambda wc: labelled(structure_sources(wc.experiment, "structure.csv")),
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic plot-profile --metrics {params.metrics} --out {output.png} > {log} 2>&1"
