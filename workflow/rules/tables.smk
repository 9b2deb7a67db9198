# Campaign tables from every run's result.json.


rule tables:
    input:
        expand(f"{OUT}/runs/{{run_id}}/result.json", run_id=RUNS),
    output:
        runs=f"{OUT}/tables/runs.parquet",
        latency=f"{OUT}/tables/latency.parquet",
    log:
        f"{OUT}/logs/tables.log",
    shell:
        "llem tables {input} --out-dir $(dirname {output.runs}) > {log} 2>&1"
