# Campaign tables from every run's result.json (and timeseries.parquet), then the summary.


rule tables:
    input:
        expand(f"{OUT}/runs/{{run_id}}/result.json", run_id=RUNS),
    output:
        runs=report(
            f"{OUT}/tables/runs.parquet", caption="../report/runs.rst", category="Tables"
        ),
        latency=f"{OUT}/tables/latency.parquet",
        timeseries=f"{OUT}/tables/timeseries.parquet",
        phases=f"{OUT}/tables/phases.parquet",
    params:
        campaign=CAMPAIGN_FILE,
    log:
        f"{OUT}/logs/tables.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "llem tables {input} --out-dir $(dirname {output.runs}) --campaign {params.campaign}"
        " > {log} 2>&1"


rule summary:
    input:
        f"{OUT}/tables/runs.parquet",
    output:
        report(
            f"{OUT}/tables/summary.parquet", caption="../report/summary.rst", category="Tables"
        ),
    params:
        campaign=CAMPAIGN_FILE,
    log:
        f"{OUT}/logs/summary.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "llem summary {input} --campaign {params.campaign} --out {output} > {log} 2>&1"
