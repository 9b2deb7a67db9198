"""Failed runs become records, or not: SIGTERM under SLURM, max_run_s (real llem runs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.measure.slurm_time import MAX_STOP_MARGIN_S, SLURM_END_TIME_ENV

pytestmark = pytest.mark.slow


def long_run(campaign, **measurement):
    campaign = {
        **campaign,
        "grid": {},
        "settings": {"batch_size": 1, "num_prompts": 2, "max_new_tokens": 4},
        # a window that would last ten minutes: only a stop from outside ends it
        "measurement": {"meter": "none", "warmup_batches": 0, "min_window_s": 600, **measurement},
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    return config


HANG_GUARD_S = 300
"""Fails a run that hangs (a stop that never comes); never a check of this machine's speed."""
PHASES = {"start", "load", "cooldown", "baseline", "warmup", "window"}


def start(config, tmp_path, env):
    path = tmp_path / "config.json"
    path.write_text(config.model_dump_json())
    return subprocess.Popen(
        [sys.executable, "-m", "llenergymeasure", "run", str(path), "--out", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )


def wait_for_window(proc: subprocess.Popen) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "window:" in line:
            return lines
    pytest.fail("the run ended before its window:\n" + "".join(lines[-30:]))


@pytest.mark.parametrize(
    ("end_time", "time_left"),
    [
        # the job id is how a run knows it is a SLURM job; no such job here: no time left known
        (None, "time left not known"),
        # the host's answer for a run in a container: an hour left, so not the time limit
        (3600, r"time left (\d+) s"),
    ],
    ids=["time-left-unknown", "an-hour-left"],
)
def test_sigterm_under_slurm_before_the_time_limit_is_not_recorded(
    tmp_path, campaign, embedded_model, end_time, time_left
):
    # scancel and preemption send the SIGTERM of a time limit: only the time left tells them
    # apart; a cancelled run records nothing, so the same snakemake command measures it again.
    env = {"SLURM_JOB_ID": "999999"}
    if end_time is not None:
        env[SLURM_END_TIME_ENV] = f"{time.time() + end_time:.0f}"
    proc = start(long_run(campaign), tmp_path, env)
    wait_for_window(proc)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=HANG_GUARD_S)[0]
    assert proc.returncode == 143, output[-3000:]
    assert not (tmp_path / "r" / "result.json").exists()
    assert "cancelled or preempted" in output and "not recorded" in output, output[-3000:]
    said = re.search(time_left, output)
    assert said, output[-3000:]
    if said.groups():  # more than the grace (at most the largest stop margin) was left
        assert int(said[1]) > MAX_STOP_MARGIN_S


def test_a_run_past_max_run_s_is_stopped_and_recorded(tmp_path, campaign, embedded_model):
    proc = start(long_run(campaign, max_run_s=20), tmp_path, {})
    # The window alone would last 600 s: a record that arrives is the bound's doing, and
    # the message says which bound fired. How soon after its 20 s is this machine's speed.
    output = proc.communicate(timeout=HANG_GUARD_S)[0]
    assert proc.returncode == 0, output[-3000:]
    record = json.loads((tmp_path / "r" / "result.json").read_text())
    assert record["status"] == "failed" and record["failure_class"] == "timeout"
    assert record["message"] == "stopped after 20 s by measurement.max_run_s = 20 s"
    assert record["elapsed_s"] >= 20, "the bound counts from the run's start, never early"
    # The record names the phase the run was in: the window once it began (a slow machine
    # may still be loading at 20 s).
    reached_window = re.search(r"window: \d+ prompts", output) is not None
    assert (record["phase"] == "window") is reached_window, (record["phase"], output[-3000:])
    assert record["phase"] in PHASES


def test_outside_slurm_sigterm_interrupts_without_a_record(tmp_path, campaign, embedded_model):
    # An interrupted campaign must redo the run: no record that would count it as done.
    proc = start(long_run(campaign), tmp_path, {"SLURM_JOB_ID": ""})
    wait_for_window(proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode != 0
    assert not (tmp_path / "r" / "result.json").exists()
