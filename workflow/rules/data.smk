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


# A corpus as token ids, once per tokenizer the experiments use (docs/datasets.md, "Text").
rule prepare_text:
    input:
        get_text_source,
    output:
        **text_stage_files("{corpus}", "{tokenizer}"),
    log:
        "logs/data/{corpus}-{tokenizer}.log",
    wildcard_constraints:
        corpus="|".join(TEXT_DATASETS),
        tokenizer="|".join(TOKENIZERS),
    conda:
        "../envs/analysis.yaml"
    params:
        args=get_text_args,
    shell:
        "python -m mimetic prepare {wildcards.corpus:q} --tokenizer {wildcards.tokenizer:q} {params.args:q}"
        " --tokens {output.tokens:q} --meta {output.meta:q} > {log:q} 2>&1"
