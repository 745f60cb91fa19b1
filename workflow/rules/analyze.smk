# A bad run record stops the workflow here, before `aggregate`, whose old tables Snakemake
# would delete on starting it: they stay until good records replace them.
rule check_records:
    input:
        summaries=run_records("summary.json"),
        metrics=run_records("metrics.csv"),
    output:
        touch("results/tables/records.checked"),
    log:
        "logs/check_records.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "mimetic check-records --summaries {input.summaries:q} --metrics {input.metrics:q} > {log:q} 2>&1"


rule aggregate:
    input:
        summaries=run_records("summary.json"),
        metrics=run_records("metrics.csv"),
        checked="results/tables/records.checked",
        code=TABLE_CODE,
    output:
        runs=TABLES[0],
        epochs=TABLES[1],
        summary=TABLES[2],
        markdown=report(TABLES[3], caption="../report/summary.rst", category="Results"),
    log:
        "logs/aggregate.log",
    conda:
        "../envs/analysis.yaml"
    params:
        baseline=config["baseline"],
    shell:
        "mimetic aggregate --summaries {input.summaries:q} --metrics {input.metrics:q} --baseline {params.baseline:q}"
        " --runs-csv {output.runs:q} --epochs-csv {output.epochs:q} --summary-csv {output.summary:q}"
        " --summary-md {output.markdown:q} > {log:q} 2>&1"


rule plot_curves:
    input:
        epochs=TABLES[1],
        code=PLOT_CODE,
    output:
        png=report(
            "results/figures/test_accuracy.png",
            caption="../report/test_accuracy.rst",
            category="Results",
        ),
        pdf="results/figures/test_accuracy.pdf",
    log:
        "logs/plot_curves.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "mimetic plot-curves --epochs {input.epochs:q} --out {output:q} > {log:q} 2>&1"
