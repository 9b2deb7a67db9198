"""SLURM's SIGTERM on real jobs: a cancelled run leaves nothing, a run at its limit a timeout.

scancel, a preemption and the time limit all send SIGTERM (then SIGKILL after KillWait); the
run tells them apart by its job's time left at the signal. Needs the CI cluster
(tests/slurm/cluster.sh), as test_slurm.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.measure.slurm_time import duration_s
from llenergymeasure.results.io import read_result
from llenergymeasure.results.tables import run_row
from tests.slurm.test_slurm import (
    job_id,
    max_job_id,
    run_on_slurm,
    slurm_jobs,
    slurm_running,
    snakemake_on_slurm,
)
from tests.workflow.test_snakemake import planned_jobs, write_campaign

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

HANG_GUARD_S = 300
"""Fails a wait that never ends (a job that never starts); never a check of this machine's speed."""
# A window of ten minutes by configuration: passes until min_window_s, with no cap on passes
# that a fast machine could reach first. Only a signal from outside ends it.
LONG_WINDOW = {
    "meter": "none",
    "warmup_batches": 0,
    "min_window_s": 600,
    "max_window_passes": 1_000_000,
}


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_running()
    if reason:
        pytest.skip(reason)


def job_state(job: int) -> str:
    line = next((j for j in slurm_jobs() if job_id(j) == job), "")
    return next((f[9:] for f in line.split() if f.startswith("JobState=")), "")


def wait_until(done: Callable[[], bool], alive: Callable[[], bool], what: str, log: Path) -> None:
    deadline_s = time.monotonic() + HANG_GUARD_S
    while not done():
        if not alive() or time.monotonic() > deadline_s:
            text = log.read_text() if log.exists() else "(no log)"
            pytest.fail(f"never saw {what}:\n{text[-3000:]}")
        time.sleep(1)


def in_window(log: Path) -> bool:
    return log.exists() and "window:" in log.read_text()


def measure_jobs(after: int) -> list[int]:
    return [job_id(j) for j in slurm_jobs() if job_id(j) > after and "rule_measure" in j]


def cancel_in_window(workdir: Path, campaign: Path, log: Path, after: int) -> tuple[int, int]:
    """Run the campaign's snakemake command; scancel its measure job once its window began.

    Returns:
        (the SLURM job cancelled, snakemake's exit status).
    """
    out = workdir / f"snakemake-after-{after}.out"
    with out.open("w") as stream:
        proc = snakemake_on_slurm(workdir, campaign, stdout=stream, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: bool(measure_jobs(after)) and in_window(log),
            lambda: proc.poll() is None,
            "the measure job's window",
            log if log.exists() else out,
        )
        (job,) = measure_jobs(after)
        subprocess.run(["scancel", str(job)], check=True)
        proc.wait(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return job, proc.returncode


def test_a_cancelled_job_leaves_no_result_and_the_same_command_measures_it_again(
    tmp_path, cluster, embedded_model
):
    campaign = write_campaign(
        tmp_path / "campaign.yaml", name="slurm-cancel", grid={}, measurement=LONG_WINDOW
    )
    (run_id,) = plan_campaign(
        {
            "name": "slurm-cancel",
            "models": ["smollm2-135m"],
            "grid": {},
            "settings": {"max_new_tokens": 4, "num_prompts": 2, "threads": 1},
            "measurement": LONG_WINDOW,
        },
        str(campaign),
    ).runs
    out = tmp_path / "results/slurm-cancel"
    log = out / f"logs/measure/{run_id}.log"

    first, returncode = cancel_in_window(tmp_path, campaign, log, max_job_id())
    assert job_state(first) == "CANCELLED"
    assert returncode != 0, "snakemake marks the job failed"
    assert not (out / f"runs/{run_id}/result.json").exists()
    said = log.read_text()
    assert "cancelled or preempted" in said and "not recorded" in said, said[-3000:]

    code, plan = run_on_slurm(tmp_path, campaign, "-n")
    assert code == 0, plan[-3000:]
    assert planned_jobs(plan)["measure"] == 1, "the same command plans the run again"
    log.unlink()  # the first job's; the second job writes its own
    second, _ = cancel_in_window(tmp_path, campaign, log, first)
    assert second > first, "a new SLURM job measured it (its window began)"


def test_a_job_at_its_time_limit_records_a_timeout(tmp_path, cluster, embedded_model):
    (config,) = plan_campaign(
        {
            "name": "slurm-limit",
            "models": [str(embedded_model)],
            "grid": {},
            "settings": {"max_new_tokens": 4, "num_prompts": 2, "threads": 1},
            "measurement": LONG_WINDOW,
        },
        str(tmp_path / "campaign.yaml"),
    ).runs.values()
    (tmp_path / "config.json").write_text(config.model_dump_json())
    log = tmp_path / "job.log"
    job = int(
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--time=10",
                f"--chdir={tmp_path}",
                f"--output={log}",
                "--export=ALL,OMP_NUM_THREADS=1",
                "--wrap",
                f"exec {sys.executable} -m llenergymeasure run config.json --out r",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split(";")[0]
    )
    try:
        running = lambda: job_state(job) in ("PENDING", "RUNNING")  # noqa: E731
        wait_until(lambda: in_window(log), running, "the job's window", log)
        # The run bounded itself by the ten minutes it saw at its start. Now the limit moves
        # to the next whole minute of the job, so SLURM's own SIGTERM ends it, not the bound.
        used = subprocess.run(
            ["squeue", "-h", "-j", str(job), "-o", "%M"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        limit_min = int((duration_s(used) or 0) // 60) + 1
        subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={limit_min}"], check=True)
        wait_until(
            lambda: job_state(job) not in ("PENDING", "RUNNING", "COMPLETING"),
            lambda: True,
            "the job's end",
            log,
        )
    finally:
        subprocess.run(["scancel", str(job)], check=False)
    assert job_state(job) == "TIMEOUT", log.read_text()[-3000:]
    row = run_row(read_result(tmp_path / "r/result.json"))
    assert row["status"] == "failed" and row["failure_class"] == "timeout", row
    assert row["failure_phase"] == "window"
    assert row["failure_message"].startswith("SIGTERM from SLURM at the job's time limit")
