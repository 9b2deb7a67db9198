"""Failed runs become records: SIGTERM under SLURM, a run past max_run_s (real llem runs)."""

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


def test_sigterm_from_slurm_in_the_window_leaves_a_timeout_record(
    tmp_path, campaign, embedded_model
):
    # SLURM's time limit sends SIGTERM (then SIGKILL after KillWait); the job id in the
    # environment is how a run knows it is a SLURM job (no such job here: no time left known).
    proc = start(long_run(campaign), tmp_path, {"SLURM_JOB_ID": "999999"})
    wait_for_window(proc)
    time.sleep(1.0)  # into the window (no bound on when: a later signal is as good)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=HANG_GUARD_S)[0]
    assert proc.returncode == 0, output[-3000:]
    out = tmp_path / "r"
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "failed" and record["failure_class"] == "timeout"
    assert record["phase"] == "window"
    assert record["message"].startswith("SIGTERM from SLURM")
    assert record["timings"]["model_load_s"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["result.json", "timeseries.parquet"]


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
