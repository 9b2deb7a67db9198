# One run: resolve its configuration, then measure it on its own device slot.


rule resolve:
    output:
        f"{OUT}/runs/{{run_id}}/config.json",
    params:
        campaign=CAMPAIGN_FILE,
    log:
        f"{OUT}/logs/resolve/{{run_id}}.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "llem resolve {params.campaign} {wildcards.run_id} {output} > {log} 2>&1"


rule flops_profile:
    input:
        model_by_slug,
    output:
        f"{OUT}/flops/{{model_slug}}.json",
    params:
        model=lambda wildcards: MODELS[wildcards.model_slug].path,
    log:
        f"{OUT}/logs/flops/{{model_slug}}.log",
    conda:
        "../../envs/transformers.yaml"
    shell:
        "llem flops-profile {params.model} {output} > {log} 2>&1"


rule measure:
    input:
        config=f"{OUT}/runs/{{run_id}}/config.json",
        flops=FLOPS_INPUT,
    output:
        result=f"{OUT}/runs/{{run_id}}/result.json",
        timeseries=f"{OUT}/runs/{{run_id}}/timeseries.parquet",
    params:
        cache=f"{OUT}/cache",
        llem=LLEM,
    log:
        f"{OUT}/logs/measure/{{run_id}}.log",
    priority: lambda wildcards: PRIORITY[wildcards.run_id]
    resources:
        device_slot=1,
        gpu=GPUS,
    conda:
        CONDA_ENV
    container:
        APPTAINER_IMAGE
    shell:
        "{params.llem} run {input.config} --out $(dirname {output.result})"
        " --campaign-cache {params.cache} --flops-profile {input.flops} --log {log}"
        " > {log} 2>&1"
