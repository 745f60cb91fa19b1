rule train:
    input:
        data_inputs,
    output:
        metrics="results/runs/{experiment}/{arm}/seed{seed}/metrics.csv",
        weights="results/runs/{experiment}/{arm}/seed{seed}/final.safetensors",
        summary="results/runs/{experiment}/{arm}/seed{seed}/summary.json",
    log:
        "logs/train/{experiment}/{arm}/seed{seed}.log",
    params:
        src=SRC,
        args=train_args,
        out=lambda wc, output: Path(output.summary).parent,
        # Outside the declared outputs, so Snakemake never deletes it: a re-run resumes.
        checkpoint="results/checkpoints/{experiment}/{arm}/seed{seed}.pt",
        runs_per_gpu=config["runs_per_gpu"],
    threads: config["threads_per_run"]
    resources:
        # `--resources gpu=N` bounds the runs started at once; each run then locks its own
        # device(s) (mimetic.gpu). The SLURM executor turns this into --gpus.
        gpu=lambda wc: config["experiments"][wc.experiment]["gpus"],
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic train {params.args} --out {params.out} --checkpoint {params.checkpoint}"
        " --gpus {resources.gpu} --runs-per-gpu {params.runs_per_gpu} --threads {threads} > {log} 2>&1"
