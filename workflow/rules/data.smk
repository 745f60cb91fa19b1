# The data stage: every dataset under resources/data/<name>/ (docs/datasets.md).
# The upstream files are read from config `data.<name>.root` (downloaded only into the default).


rule prepare_data:
    output:
        train="resources/data/{dataset}/train.npz",
        test="resources/data/{dataset}/test.npz",
        meta="resources/data/{dataset}/meta.json",
    log:
        "logs/data/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(PREPARED_DATASETS),
    conda:
        "../envs/analysis.yaml"
    params:
        root=get_dataset_root,
    shell:
        "mimetic prepare {wildcards.dataset:q} --root {params.root:q} --train {output.train:q} --test {output.test:q}"
        " --meta {output.meta:q} > {log:q} 2>&1"


rule prepare_imagenet:
    output:
        train="resources/data/imagenet/train.csv",
        val="resources/data/imagenet/val.csv",
        meta="resources/data/imagenet/meta.json",
    log:
        "logs/data/imagenet.log",
    conda:
        "../envs/analysis.yaml"
    threads: 8  # processes that check every image can be decoded
    params:
        args=get_imagenet_args,
    shell:
        "mimetic prepare imagenet {params.args:q} --workers {threads} --train {output.train:q} --test {output.val:q}"
        " --meta {output.meta:q} > {log:q} 2>&1"
