# Figures, the paper table (summary.md) and provenance.json; all registered for --report.


rule provenance:
    input:
        campaign=CAMPAIGN_FILE,
        results=expand(f"{OUT}/runs/{{run_id}}/result.json", run_id=RUNS),
    output:
        f"{OUT}/provenance.json",
    log:
        f"{OUT}/logs/provenance.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "llem provenance {input.campaign} {input.results} --out {output} > {log} 2>&1"


rule figures:
    input:
        summary=f"{OUT}/tables/summary.parquet",
        runs=f"{OUT}/tables/runs.parquet",
        latency=f"{OUT}/tables/latency.parquet",
        timeseries=f"{OUT}/tables/timeseries.parquet",
        phases=f"{OUT}/tables/phases.parquet",
    output:
        **{
            name: report(
                f"{OUT}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in FIGURES
        },
    log:
        f"{OUT}/logs/figures.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "llem figures $(dirname {input.summary}) --out-dir $(dirname {output.energy_vs_batch})"
        " > {log} 2>&1"


rule summary_md:
    input:
        summary=f"{OUT}/tables/summary.parquet",
        runs=f"{OUT}/tables/runs.parquet",
        provenance=f"{OUT}/provenance.json",
    output:
        report(f"{OUT}/summary.md", caption="../report/summary_md.rst", category="Tables"),
    log:
        f"{OUT}/logs/summary_md.log",
    conda:
        "../../envs/analysis.yaml"
    shell:
        "llem summary-md $(dirname {input.summary}) --provenance {input.provenance}"
        " --out {output} > {log} 2>&1"
