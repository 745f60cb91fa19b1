from mimetic import provenance


# A bad run record stops the workflow here, before `aggregate`, whose old tables Snakemake
# would delete on starting it: they stay until good records replace them.
rule check_records:
    input:
        summaries=run_records("summary.json"),
        metrics=run_records("metrics.csv"),
        inits=run_records("init.json"),
        data=run_data_metas(),  # the records are held to these data's fingerprints
    output:
        touch("results/tables/records.checked"),
    log:
        "logs/check_records.log",
    conda:
        "../envs/analysis.yaml"
    params:
        recipes=run_recipes(),
    shell:
        "python -m mimetic check-records --summaries {input.summaries:q} --metrics {input.metrics:q}"
        " --inits {input.inits:q} --recipes {params.recipes:q} > {log:q} 2>&1"


rule aggregate:
    input:
        summaries=run_records("summary.json"),
        metrics=run_records("metrics.csv"),
        inits=run_records("init.json"),
        checked="results/tables/records.checked",
        code=repo_file("src/mimetic/report/records.py"),
    output:
        runs=RECORDS["runs"],
        epochs=RECORDS["epochs"],
    log:
        "logs/aggregate.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "python -m mimetic aggregate --summaries {input.summaries:q} --metrics {input.metrics:q}"
        " --inits {input.inits:q} --runs-csv {output.runs:q} --epochs-csv {output.epochs:q} > {log:q} 2>&1"


rule result_tables:
    input:
        runs=RECORDS["runs"],
        epochs=RECORDS["epochs"],
        claims=CLAIMS,
        claims_schema=CLAIMS_SCHEMA,
        references=REFERENCES,
        references_schema=REFERENCES_SCHEMA,
        code=code("tables"),
    output:
        [path for name, path in TABLES.items() if not name.endswith(".html")],
        **{
            name.removesuffix(".html"): report(
                path,
                caption=f"../report/table_{name.removesuffix('.html')}.rst",
                category=(
                    "1. Claims"
                    if name in ("verdicts.html", "main.html", "references.html")
                    else "2. Results"
                ),
                labels={"table": name.removesuffix(".html").replace("_", " ")},
            )
            for name, path in TABLES.items()
            if name.endswith(".html")
        },
    log:
        "logs/result_tables.log",
    conda:
        "../envs/analysis.yaml"
    params:
        baseline=config["baseline"],
    shell:
        "python -m mimetic tables --runs-csv {input.runs:q} --epochs-csv {input.epochs:q} --claims {input.claims:q}"
        " --claims-schema {input.claims_schema:q} --references {input.references:q}"
        " --references-schema {input.references_schema:q} --baseline {params.baseline:q}"
        " --out {output:q} > {log:q} 2>&1"


rule paper_figures:
    input:
        runs=RECORDS["runs"],
        epochs=RECORDS["epochs"],
        claims=CLAIMS,
        claims_schema=CLAIMS_SCHEMA,
        code=code("figures"),
    output:
        [path for name, path in FIGURES.items() if not name.endswith(".png")],
        **{
            name.removesuffix(".png"): report(
                path,
                caption=f"../report/figure_{name.removesuffix('.png')}.rst",
                category="1. Claims" if name == "gain_forest.png" else "2. Results",
                labels={
                    "figure": name.removesuffix(".png").replace("_", " "),
                    "experiment": "all",
                },
            )
            for name, path in FIGURES.items()
            if name.endswith(".png")
        },
    log:
        "logs/paper_figures.log",
    conda:
        "../envs/analysis.yaml"
    params:
        baseline=config["baseline"],
    shell:
        "python -m mimetic figures --runs-csv {input.runs:q} --epochs-csv {input.epochs:q} --claims {input.claims:q}"
        " --claims-schema {input.claims_schema:q} --baseline {params.baseline:q} --out {output:q}"
        " > {log:q} 2>&1"


rule provenance:
    input:
        summaries=run_records("summary.json"),
        code=code("provenance"),
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
        config=provenance.config_param(config),
    shell:
        "python -m mimetic provenance --summaries {input.summaries:q} --config {params.config:q} --out {output:q}"
        " > {log:q} 2>&1"
