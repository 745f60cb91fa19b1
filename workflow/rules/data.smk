# The data stage: every dataset under resources/data/<name>/ (docs/datasets.md).
# The upstream files are read from (or downloaded into) config `data.<name>.root`.


rule prepare_data:
    output:
        train="resources/data/{dataset}/train.npz",
        test="resources/data/{dataset}/test.npz",
        meta="resources/data/{dataset}/meta.json",
    log:
        "logs/data/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(PREPARED_DATASETS),
    params:
        src=SRC,
        root=lambda wc: config["data"][wc.dataset]["root"],
        out=lambda wc, output: Path(output.meta).parent,
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic prepare {wildcards.dataset} --root {params.root:q} --out {params.out:q} > {log} 2>&1"


rule prepare_imagenet:
    output:
        train="resources/data/imagenet/train.csv",
        val="resources/data/imagenet/val.csv",
        meta="resources/data/imagenet/meta.json",
    log:
        "logs/data/imagenet.log",
    params:
        src=SRC,
        args=imagenet_args,
        out=lambda wc, output: Path(output.meta).parent,
    conda:
        "../envs/mimetic.yaml"
    shell:
        "PYTHONPATH={params.src:q} python -m mimetic prepare imagenet {params.args} --out {params.out:q} > {log} 2>&1"
