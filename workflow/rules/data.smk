# The data stage: every dataset under resources/data/<name>/ (docs/datasets.md).
# The upstream files are read from config `data.<name>.root` (downloaded only into the default).


rule prepare_data:
    output:
        **stage_files("{dataset}"),
    log:
        "logs/data/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(PREPARED_DATASETS),
    conda:
        "../envs/analysis.yaml"
    params:
        args=get_stage_args,
    shell:
        "python -m mimetic prepare {wildcards.dataset:q} {params.args:q} --train {output.train:q} --test {output.test:q}"
        " --meta {output.meta:q} > {log:q} 2>&1"


rule prepare_imagenet:
    output:
        **stage_files("imagenet"),
    log:
        "logs/data/imagenet.log",
    conda:
        "../envs/analysis.yaml"
    threads: 8  # processes that check every image can be decoded
    params:
        args=get_stage_args,
    shell:
        "python -m mimetic prepare imagenet {params.args:q} --workers {threads} --train {output.train:q} --test {output.test:q}"
        " --meta {output.meta:q} > {log:q} 2>&1"
