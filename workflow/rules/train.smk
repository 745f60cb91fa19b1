# A run's identity is its recipe (planning refuses a finished run of another one: common.smk), not
# the text of this command: Snakemake re-runs a rule whose shell text changed, so the command is
# kept in one normalized spacing, and an edit of spaces or line breaks re-trains nothing.
# exec: the run takes the shell's place, so SIGTERM (pre-emption) reaches it and no shell dies of
# it first, leaving the run behind.
TRAIN_COMMAND = " ".join("""
    exec python -m mimetic train --recipe {params.recipe:q} --experiment {wildcards.experiment:q}
        --arm {wildcards.arm:q} --seed {wildcards.seed} --out {params.run:q}
        --checkpoint {params.checkpoint:q} {params.execution:q} --threads {threads} > {log:q} 2>&1
    """.split())


rule train_run:
    input:
        get_data,
        get_init_files,
    output:
        metrics=f"{RUN}/metrics.csv",
        weights=f"{RUN}/final.safetensors",
        summary=f"{RUN}/summary.json",
        init=f"{RUN}/init.json",
    log:
        "logs/train/{experiment}/{arm}/seed{seed}.log",
    conda:
        "../envs/train.yaml"
    threads: config["threads_per_run"]
    resources:
        # `--resources gpu=N` bounds the runs started at once; each run locks its own device(s)
        # (mimetic.train.gpu). On SLURM the job asks for the run's GPUs as --gpus=N
        # (profiles/slurm) or --gres=gpu:N (profiles/slurm-gres: each profile blanks the other)
        # and for CPU cores in proportion (cpus_per_gpu); outside SLURM the last two do nothing.
        gpu=get_gpus,
        gres=get_gres,
        cpus_per_task=get_cpus_per_task,
    params:
        recipe=get_recipe,
        execution=get_execution,
        run=RUN,  # the run's folder, which the trainer owns
        # Outside the declared outputs, so Snakemake never deletes it: a re-run resumes.
        checkpoint="results/checkpoints/{experiment}/{arm}/seed{seed}.pt",
    shell:
        TRAIN_COMMAND
