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
        runs=RUNS_CSV,
        epochs=EPOCHS_CSV,
        summary=SUMMARY_CSV,
        markdown=SUMMARY_MD,
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
        epochs=EPOCHS_CSV,
        code=PLOT_CODE,
    output:
        png=report(
            "results/figures/test_accuracy.png",
            caption="../report/test_accuracy.rst",
            category="2. Results",
            labels={"figure": "learning curves", "experiment": "all"},
        ),
        pdf="results/figures/test_accuracy.pdf",
    log:
        "logs/plot_curves.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "mimetic plot-curves --epochs {input.epochs:q} --out {output:q} > {log:q} 2>&1"


rule result_tables:
    input:
        runs=RUNS_CSV,
        epochs=EPOCHS_CSV,
        claims=CLAIMS,
        claims_schema=CLAIMS_SCHEMA,
        references=REFERENCES,
        references_schema=REFERENCES_SCHEMA,
        code=TABLE_CODE,
    output:
        result_tables(),
        **{
            name: report(
                path,
                caption=f"../report/table_{name}.rst",
                category=(
                    "1. Claims"
                    if name in ("verdicts", "main", "references")
                    else "2. Results"
                ),
                labels={"table": name.replace("_", " ")},
            )
            for name, path in result_tables_html().items()
        },
    log:
        "logs/result_tables.log",
    conda:
        "../envs/analysis.yaml"
    params:
        baseline=config["baseline"],
    shell:
        "mimetic tables --runs-csv {input.runs:q} --epochs-csv {input.epochs:q} --claims {input.claims:q}"
        " --claims-schema {input.claims_schema:q} --references {input.references:q}"
        " --references-schema {input.references_schema:q} --baseline {params.baseline:q}"
        " --out {output:q} > {log:q} 2>&1"


rule paper_figures:
    input:
        runs=RUNS_CSV,
        epochs=EPOCHS_CSV,
        claims=CLAIMS,
        claims_schema=CLAIMS_SCHEMA,
        code=PLOT_CODE,
    output:
        **{
            name: report(
                png,
                caption=f"../report/figure_{name}.rst",
                category="1. Claims" if name == "gain_forest" else "2. Results",
                labels={"figure": name.replace("_", " "), "experiment": "all"},
            )
            for name, png in paper_figures().items()
        },
        pdfs=[png.replace(".png", ".pdf") for png in paper_figures().values()],
    log:
        "logs/paper_figures.log",
    conda:
        "../envs/analysis.yaml"
    params:
        baseline=config["baseline"],
    shell:
        "mimetic figures --runs-csv {input.runs:q} --epochs-csv {input.epochs:q} --claims {input.claims:q}"
        " --claims-schema {input.claims_schema:q} --baseline {params.baseline:q} --out {output:q}"
        " > {log:q} 2>&1"


rule provenance:
    input:
        summaries=run_records("summary.json"),
        code=PROVENANCE_CODE,
    output:
        report(
            "results/provenance.html",
            caption="../report/provenance.rst",
            category="4. Provenance",
            labels={"page": "provenance"},
        ),
    log:
        "logs/provenance.log",
    conda:
        "../envs/analysis.yaml"
    params:
        config=json.dumps(config, sort_keys=True),
    shell:
        "mimetic provenance --summaries {input.summaries:q} --config {params.config:q} --out {output:q}"
        " > {log:q} 2>&1"
