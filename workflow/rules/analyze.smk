rule aggregate:
    input:
        expand("{run}/summary.json", run=run_dirs()),
    output:
        runs="results/tables/runs.csv",
        epochs="results/tables/epochs.csv",
        summary="results/tables/summary.csv",
        markdown=report("results/tables/summary.md", caption="../report/summary.rst", category="Results"),
    log:
        "logs/aggregate.log",
    params:
        src=SRC,
        runs=lambda wc, input: [str(Path(p).parent) for p in input],
        baseline=config["baseline"],
        out_dir=lambda wc, output: Path(output.summary).parent,
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic aggregate --runs {params.runs} --baseline {params.baseline}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule plot_curves:
    input:
        "results/tables/epochs.csv",
    output:
        png=report("results/figures/test_accuracy.png", caption="../report/test_accuracy.rst", category="Results"),
        pdf="results/figures/test_accuracy.pdf",
    log:
        "logs/plot_curves.log",
    params:
        src=SRC,
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic plot-curves --epochs {input} --out {output.png} > {log} 2>&1"
