rule train:
    input:
        data_inputs,
    output:
        metrics=RUNS + "/metrics.csv",
        weights=RUNS + "/final.safetensors",
        summary=RUNS + "/summary.json",
    log:
        "logs/train/{experiment}/{arm}/seed{seed}.log",
    params:
        args=train_args,
        out=lambda wc, output: Path(output.summary).parent,
        # Outside the declared outputs, so Snakemake never deletes it: a re-run resumes.
        checkpoint="results/checkpoints/{experiment}/{arm}/seed{seed}.pt",
    threads: config["threads_per_run"]
    conda:
        "../envs/mimetic.yaml"
    shell:
        "{MIMETIC} train {params.args} --out {params.out} --checkpoint {params.checkpoint}"
        " --threads {threads} > {log} 2>&1"
