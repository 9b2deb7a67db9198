"""A campaign of the embedded model through a real SLURM cluster (tests/slurm/cluster.sh).

Needs a running single-node cluster (.ci/run starts one as root); skipped, with the reason,
where none is running. The slurm plugin's defaults (sacct) suit real clusters; this cluster
has no accounting, so the test overrides them on the command line: squeue for status, no
account, short status intervals, the `debug` partition and small jobs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.workflow.test_snakemake import write_campaign

REPO = Path(__file__).parents[2]
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CI_OVERRIDES = [
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--seconds-between-status-checks",
    "2",
    "--default-resources",
    "slurm_partition=debug",
    "runtime=10",
    "mem_mb=1000",
    "cpus_per_task=1",
    "--jobs",
    "2",
    "--latency-wait",
    "10",
    "--retries",
    "0",
]
HARD_TIMEOUT_S = 600


def slurm_running() -> str | None:
    if shutil.which("sinfo") is None:
        return "SLURM is not installed (tests/slurm/cluster.sh install)"
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    if probe.returncode != 0 or not probe.stdout.strip():
        return f"no SLURM controller answers (tests/slurm/cluster.sh start): {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_running()
    if reason:
        pytest.skip(reason)


def test_campaign_runs_as_slurm_jobs(tmp_path, cluster, embedded_model):
    campaign = write_campaign(tmp_path / "campaign.yaml", name="slurm")
    before = max_job_id()
    returncode, output = run_on_slurm(tmp_path, campaign)
    assert returncode == 0, output[-4000:]

    runs = pd.read_parquet(tmp_path / "results/slurm/tables/runs.parquet")
    assert sorted(runs["batch_size"]) == [1, 2]
    jobs = [j for j in slurm_jobs() if job_id(j) > before]
    measured = [j for j in jobs if "rule_measure" in j]
    assert len(measured) == 2, "\n".join(jobs)
    assert all("JobState=COMPLETED" in j for j in measured)
    ids = {str(job_id(j)) for j in measured}
    recorded = {
        json.loads(path.read_text())["environment"]["slurm_job_id"]
        for path in (tmp_path / "results/slurm/runs").glob("*/result.json")
    }
    assert recorded == ids, "each run knows the SLURM job it ran in"


def snakemake_on_slurm(
    workdir: Path, campaign: Path, *extra: str, **popen: Any
) -> subprocess.Popen[str]:
    """Start snakemake --profile profiles/slurm with the CI overrides (its own process group)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(REPO / "profiles/slurm"),
        "--snakefile",
        str(REPO / "workflow/Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(campaign),
        *CI_OVERRIDES,
        *extra,
    ]
    # The plugin can lose its jobs and then ignore SIGTERM: its group can be killed.
    return subprocess.Popen(command, env=env, text=True, start_new_session=True, **popen)


def run_on_slurm(workdir: Path, campaign: Path, *extra: str) -> tuple[int, str]:
    """snakemake --profile profiles/slurm with the CI overrides, under a hard timeout."""
    proc = snakemake_on_slurm(
        workdir, campaign, *extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = proc.communicate(timeout=HARD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"snakemake on SLURM exceeded {HARD_TIMEOUT_S} s:\n{output[-3000:]}")
    return proc.returncode, output


def slurm_jobs() -> list[str]:
    out = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, check=False
    ).stdout
    return [line for line in out.splitlines() if line.startswith("JobId=")]


def job_id(line: str) -> int:
    match = re.search(r"JobId=(\d+)", line)
    return int(match.group(1)) if match else -1


def max_job_id() -> int:
    return max((job_id(j) for j in slurm_jobs()), default=0)


def test_a_run_past_its_runtime_is_a_timeout_row_and_the_others_finish(
    tmp_path, cluster, embedded_model
):
    campaign = write_campaign(
        tmp_path / "campaign.yaml",
        name="slurm-timeout",
        grid={},
        experiments=[
            {"num_prompts": 2},
            # ~15 minutes of generation against a 1-minute runtime: the run watches its
            # job's time limit, stops before SLURM kills it and records a timeout.
            {"num_prompts": 240, "max_new_tokens": 64, "min_new_tokens": 64},
        ],
    )
    before = max_job_id()
    returncode, output = run_on_slurm(tmp_path, campaign, "--set-resources", "measure:runtime=1")
    assert returncode == 0, "a recorded timeout lets the campaign finish: " + output[-3000:]
    measured = [j for j in slurm_jobs() if job_id(j) > before and "rule_measure" in j]
    assert len(measured) == 2, "\n".join(measured)
    runs = pd.read_parquet(tmp_path / "results/slurm-timeout/tables/runs.parquet")
    runs = runs.set_index("num_prompts")
    assert runs.loc[2, "status"] == "succeeded" and runs.loc[2, "output_tokens"] > 0
    timed_out = runs.loc[240]
    assert timed_out["status"] == "failed" and timed_out["failure_class"] == "timeout"
    assert "SLURM" in timed_out["failure_message"], timed_out["failure_message"]
    assert pd.isna(timed_out["output_tokens"])
    summary_md = (tmp_path / "results/slurm-timeout/summary.md").read_text()
    assert "**1 of 2 runs succeeded**" in summary_md
