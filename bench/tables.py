"""Tables from 10,000 result files vs a bare orjson + pyarrow read; snakemake -n at 10,000 runs.

1. `build_tables` (pydantic validation of every result, runs/latency/timeseries Parquet with
   explicit schemas) vs a bare loop: orjson.loads of every file and one pyarrow table of the
   same run-level fields. Target: ratio <= 2 and < 10 s.
2. `snakemake -n --quiet rules` on a 10,000-run campaign through our workflow vs a bare
   Snakefile with 10,000 trivial jobs of the same shape (the same rules, input and output
   files; `touch` bodies). Target: ratio <= 1.3. The smaller resolve -> measure -> tables
   baseline of earlier measurements is reported alongside.

Usage: python bench/tables.py [N]   (N result files / runs, default 10000)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000


def template() -> dict:
    found = sorted(REPO.glob("results/*/runs/*/result.json"))
    if not found:
        sys.exit("run `make demo` first: the benchmark copies a real result.json")
    return json.loads(found[0].read_text())


def write_results(root: Path, base: dict, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        result = {**base, "run_id": f"{base['run_id'][:-6]}{i:06d}"}
        result["config"] = {**base["config"], "repeat": i}
        path = root / result["run_id"] / "result.json"
        path.parent.mkdir(parents=True)
        path.write_bytes(orjson.dumps(result))
        paths.append(path)
    return paths


def bare_read(paths: list[Path]) -> pa.Table:
    rows = []
    for path in paths:
        r = orjson.loads(path.read_bytes())
        rows.append(
            {
                "run_id": r["run_id"],
                "backend": r["config"]["backend"],
                "batch_size": r["config"]["settings"]["batch_size"],
                "output_tokens": r["tokens"]["output_tokens"],
                "output_tokens_per_s": r["throughput"]["output_tokens_per_s"],
                "energy_j": r["energy"]["energy_j"],
                "ttft_median_s": r["latency"]["ttft_s"]["median"],
                "itl_s": [x for q in r["requests"] for x in q["itl_s"]],
            }
        )
    return pa.Table.from_pylist(rows)


def tables_bench(work: Path) -> None:
    from llenergymeasure.results.tables import build_tables

    paths = write_results(work / "runs", template(), N)
    t0 = time.perf_counter()
    bare_read(paths)
    bare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_tables(paths, work / "tables")
    ours_s = time.perf_counter() - t0
    print(
        f"tables from {N} result files: llem {ours_s:.2f} s, bare orjson+pyarrow "
        f"{bare_s:.2f} s, ratio {ours_s / bare_s:.2f} (target <= 2 and < 10 s)"
    )


# The DAG of our workflow with trivial jobs: every rule, input and output file as in
# workflow/rules/*.smk (per run: resolve -> measure, which also needs its model's flops profile,
# which needs the prepared model; then tables, summary, provenance, figures, summary.md), but no
# Python planning, log, params, priority, conda or per-job values.
SAME_SHAPE_SNAKEFILE = """
RUNS = [f"r{i:05d}" for i in range(int(config["runs"]))]
RESULTS = expand("runs/{run_id}/result.json", run_id=RUNS)
FIGURES = expand("figures/{name}.png", name=["a", "b", "c", "d"])
rule all:
    input: "tables/runs.parquet", "tables/summary.parquet", "summary.md", "provenance.json", FIGURES
rule prepare_model:
    output: "models/m/config.json"
    shell: "touch {output}"
rule flops_profile:
    input: "models/m/config.json"
    output: "flops/m.json"
    shell: "touch {output}"
rule resolve:
    output: "runs/{run_id}/config.json"
    shell: "touch {output}"
rule measure:
    input: config="runs/{run_id}/config.json", flops="flops/m.json"
    output: result="runs/{run_id}/result.json", timeseries="runs/{run_id}/timeseries.parquet"
    resources: device_slot=1
    shell: "touch {output}"
rule tables:
    input: RESULTS
    output: "tables/runs.parquet", "tables/latency.parquet", "tables/timeseries.parquet"
    shell: "touch {output}"
rule summary:
    input: "tables/runs.parquet"
    output: "tables/summary.parquet"
    shell: "touch {output}"
rule provenance:
    input: RESULTS
    output: "provenance.json"
    shell: "touch {output}"
rule figures:
    input: "tables/summary.parquet", "tables/runs.parquet"
    output: FIGURES
    shell: "touch {output}"
rule summary_md:
    input: "tables/summary.parquet", "provenance.json"
    output: "summary.md"
    shell: "touch {output}"
"""

# The smaller baseline of the first measurements (BENCHMARKS.md): resolve -> measure -> tables.
MINIMAL_SNAKEFILE = """
RUNS = [f"r{i:05d}" for i in range(int(config["runs"]))]
rule all:
    input: "tables/runs.parquet"
rule resolve:
    output: "runs/{run_id}/config.json"
    shell: "touch {output}"
rule measure:
    input: "runs/{run_id}/config.json"
    output: "runs/{run_id}/result.json"
    resources: device_slot=1
    shell: "touch {output}"
rule tables:
    input: expand("runs/{run_id}/result.json", run_id=RUNS)
    output: "tables/runs.parquet"
    shell: "touch {output}"
"""


def dry_run_seconds(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def warn_if_slurm_probe_stalls() -> None:
    """The SLURM executor plugin runs `scontrol show config` when Snakemake starts; with SLURM's
    tools installed but no controller reachable that call waits ~9 s, which every timing below
    would then include (and the ratios would shrink towards 1)."""
    if shutil.which("scontrol") is None:
        return
    try:
        ping = subprocess.run(["scontrol", "ping"], check=False, capture_output=True, timeout=3)
        up = ping.returncode == 0
    except subprocess.TimeoutExpired:
        up = False
    if not up:
        print(
            "warning: scontrol is installed but no SLURM controller answers; every snakemake "
            "start waits ~9 s on it (start one: tests/slurm/cluster.sh start)"
        )


def dry_run_bench(work: Path) -> None:
    warn_if_slurm_probe_stalls()
    campaign = {
        "name": "bench",
        "models": ["smollm2-135m"],
        "grid": {
            "batch_size": list(range(1, 101)),
            "max_new_tokens": list(range(16, 16 + N // 100)),
        },
    }
    (work / "campaign.yaml").write_text(json.dumps(campaign))
    ours_args = [
        "--snakefile",
        str(REPO / "workflow/Snakefile"),
        "--configfile",
        str(work / "campaign.yaml"),
        "--directory",
        str(work / "ours"),
    ]
    (work / "ours").mkdir()
    bare_args = {}
    for name, text in (("same_shape", SAME_SHAPE_SNAKEFILE), ("minimal", MINIMAL_SNAKEFILE)):
        (work / name).mkdir()
        (work / name / "Snakefile").write_text(text)
        bare_args[name] = ["--snakefile", "Snakefile", "--config", f"runs={N}"]
    seconds: dict[str, list[float]] = {"ours": [], "same_shape": [], "minimal": []}
    for _ in range(2):  # interleaved, best of two: the machine's speed drifts
        seconds["ours"].append(dry_run_seconds(ours_args, REPO))
        for name, args in bare_args.items():
            seconds[name].append(dry_run_seconds(args, work / name))
    o, same, minimal = (min(seconds[k]) for k in ("ours", "same_shape", "minimal"))
    print(
        f"snakemake -n at {N} runs: llem workflow {o:.2f} s, bare Snakefile of the same shape "
        f"{same:.2f} s, ratio {o / same:.2f} (target <= 1.3)"
    )
    print(
        f"  for comparison, bare resolve -> measure -> tables only: {minimal:.2f} s, "
        f"ratio {o / minimal:.2f}"
    )


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="llem-bench-tables-"))
    try:
        tables_bench(work)
        dry_run_bench(work)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
