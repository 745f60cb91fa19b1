rule train_run:
    input:
        get_data,
    output:
        metrics=f"{RUN}/metrics.csv",
        weights=f"{RUN}/final.safetensors",
        summary=f"{RUN}/summary.json",
    log:
        "logs/train/{experiment}/{arm}/seed{seed}.log",
    conda:
        "../envs/train.yaml"
    threads: config["threads_per_run"]
    resources:
        # `--resources gpu=N` bounds the runs started at once, and the SLURM executor asks for
        # this many (--gpus); each run locks its own device(s) (mimetic.train.gpu).
        gpu=get_gpus,
    params:
        recipe=get_recipe,
        execution=get_execution,
        run=RUN,  # the run's folder, which the trainer owns
        # Outside the declared outputs, so Snakemake never deletes it: a re-run resumes.
        checkpoint="results/checkpoints/{experiment}/{arm}/seed{seed}.pt",
    shell:
        "mimetic train --recipe {params.recipe:q} --experiment {wildcards.experiment:q} --arm {wildcards.arm:q}"
        " --seed {wildcards.seed} --out {params.run:q} --checkpoint {params.checkpoint:q} {params.execution:q}"
        " --threads {threads} > {log:q} 2>&1"
