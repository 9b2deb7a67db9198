"""2-process CPU runs (gloo) of the embedded model, metered through the fake NVML."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from llenergymeasure.config import plan_campaign
from tests.fakes.nvml import FakeDevice, FakeScenario
from tests.llem import llem_run

pytest_plugins = ["tests.fakes.nvml.fixtures"]
pytestmark = pytest.mark.slow

PUE = 1.5
INTENSITY_G_PER_KWH = 400.0


def two_rank_config(campaign, **measurement):
    campaign = {
        **campaign,
        "grid": {},
        "settings": {
            "processes": 2,
            "batch_size": 2,
            "num_prompts": 4,
            "max_new_tokens": 16,
            "min_new_tokens": 16,
            "max_input_tokens": 64,
        },
        "measurement": {
            "meter": "nvml",
            "baseline_s": 1.0,
            "cooldown_max_s": 1,
            "warmup_batches": 1,
            "warmup_max_batches": 1,
            **measurement,
        },
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    return config


def test_each_rank_meters_its_own_gpu_against_its_own_baseline(
    tmp_path, campaign, embedded_model, fake_nvml_env
):
    # 3 s windows: a few ms between a sample's timestamp and its counter read stay << 0.5 %
    config = two_rank_config(
        campaign, pue=PUE, carbon_intensity_g_per_kwh=INTENSITY_G_PER_KWH, min_window_s=3
    )
    # Power climbs steadily, so idle (measured first) is below the window's mean power.
    scenario = FakeScenario(
        devices=[
            FakeDevice(power_w=[(0, 100.0), (300, 700.0)]),
            FakeDevice(power_w=[(0, 150.0), (300, 450.0)]),
        ]
    )
    env = {**fake_nvml_env(scenario), "CUDA_VISIBLE_DEVICES": "0,1"}
    result = llem_run(config, tmp_path, env)
    out = tmp_path / "run"
    ranks = [json.loads((out / f"process_{r}.json").read_text()) for r in (0, 1)]

    names = (scenario.uuid(0), scenario.uuid(1))
    for rank, name in enumerate(names):
        mine = ranks[rank]["energy"]
        assert [d["device"] for d in mine["per_device"]] == [name]
        assert mine["per_device"][0]["cuda_index"] == 0, "each rank sees its GPU as index 0"
        baseline = mine["baseline"]
        assert list(baseline["per_device_w"]) == [name], "each rank baselines its own GPU"
        b0, b1 = baseline["start_unix_s"], baseline["end_unix_s"]
        idle_truth_w = scenario.energy_j(rank, b0, b1) / (b1 - b0)
        assert baseline["per_device_w"][name] == pytest.approx(idle_truth_w, rel=0.01)
        assert ranks[rank]["timing"]["cooldown"]["max_s"] == 1

    energy = result["energy"]
    devices = {d["device"]: d for d in energy["per_device"]}
    assert set(devices) == set(names)
    adjusted_truth_j = 0.0
    for index, name in enumerate(names):
        device = devices[name]
        t0, t1 = device["window_start_unix_s"], device["window_end_unix_s"]
        truth_j = scenario.energy_j(index, t0, t1)
        assert device["energy_j"] == pytest.approx(truth_j, rel=0.005)
        idle_w = ranks[index]["energy"]["baseline"]["per_device_w"][name]
        assert device["idle_power_w"] == pytest.approx(idle_w)
        adjusted_truth_j += truth_j - idle_w * (t1 - t0)
    total_truth_j = sum(
        scenario.energy_j(i, devices[n]["window_start_unix_s"], devices[n]["window_end_unix_s"])
        for i, n in enumerate(names)
    )
    assert energy["energy_j"] == pytest.approx(total_truth_j, rel=0.005)
    assert energy["adjusted_energy_j"] == pytest.approx(adjusted_truth_j, rel=0.01)
    assert 0 < energy["adjusted_energy_j"] < energy["energy_j"]
    assert energy["facility_energy_j"] == pytest.approx(PUE * total_truth_j, rel=0.005)
    emissions_truth_kg = PUE * total_truth_j / 3.6e6 * INTENSITY_G_PER_KWH / 1000
    assert energy["emissions_kg"] == pytest.approx(emissions_truth_kg, rel=0.005)
    assert result["adjusted_energy_per_output_token_j"] == pytest.approx(
        energy["adjusted_energy_j"] / result["tokens"]["output_tokens"]
    )
    cooled = result["timing"]["cooldown"]  # one for the run: both ranks' GPUs, 1 s < a window
    assert cooled["settled"] is False
    assert [d["device"] for d in cooled["devices"]] == sorted(names)


def test_two_ranks_sharing_a_gpu_count_it_once(tmp_path, campaign, embedded_model, fake_nvml_env):
    config = two_rank_config(campaign, baseline_s=0.5, cooldown_max_s=0, min_window_s=3)
    scenario = FakeScenario(devices=[FakeDevice(power_w=[(0, 100.0), (60, 250.0)])])
    result = llem_run(config, tmp_path, fake_nvml_env(scenario))
    out = tmp_path / "run"
    ranks = [json.loads((out / f"process_{r}.json").read_text()) for r in (0, 1)]

    assert [p["rank"] for p in result["processes"]] == [0, 1]
    assert result["tokens"]["output_tokens"] == sum(r["tokens"]["output_tokens"] for r in ranks)
    passes = [r["timing"]["window_passes"] for r in ranks]  # each rank: 2 prompts a pass
    assert result["tokens"]["output_tokens"] == 16 * 2 * sum(passes)
    assert sorted({q["index"] for q in result["requests"]}) == [0, 1, 2, 3]
    start = min(r["timing"]["window_start_unix_s"] for r in ranks)
    end = max(r["timing"]["window_end_unix_s"] for r in ranks)
    assert result["timing"]["window_s"] == pytest.approx(end - start)
    tokens = result["tokens"]["output_tokens"]
    assert result["throughput"]["output_tokens_per_s"] == pytest.approx(tokens / (end - start))
    assert result["latency"]["ttft_s"]["n"] == 2 * sum(passes)  # pooled before percentiles

    (device,) = result["energy"]["per_device"]
    truth = scenario.energy_j(0, device["window_start_unix_s"], device["window_end_unix_s"])
    assert device["energy_j"] == pytest.approx(truth, rel=0.005)
    summed = sum(r["energy"]["per_device"][0]["energy_j"] for r in ranks)
    assert device["energy_j"] < 0.75 * summed, "a device shared by ranks is counted once"
    assert not any("overlap only" in w for w in result["warnings"])
    assert all(r["energy"]["baseline"] is not None for r in ranks)
    assert result["timing"]["cooldown"]["null_reason"] == "disabled (cooldown_max_s 0)"
    # Each rank splits its own window; the ranks share the GPU, so nothing is combined.
    assert result["phases"] is None and "multi-process run" in result["phases_null_reason"]
    assert all(q["energy_j"] is None and q["energy_null_reason"] for q in result["requests"])
    for rank in ranks:
        assert rank["phases"]["conservation_error_j"] == pytest.approx(0.0, abs=1e-6)
        shares = sum(q["energy_j"] for q in rank["requests"])
        assert shares == pytest.approx(rank["energy"]["energy_j"], rel=1e-6)


def test_two_ranks_sharing_a_gpu_without_a_counter_integrate_its_power_over_the_union(
    tmp_path, campaign, embedded_model, fake_nvml_env
):
    # No energy counter: each rank only polls the GPU's (instantaneous) power. The power is
    # linear in time, so the trapezoid of all the ranks' samples is exact whatever instants
    # they fall on and however fast this machine ran: the truth is the script's integral over
    # the union of the windows the ranks recorded, minus idle over that same union. (The
    # ramp outlasts llem_run's own time limit, so idle, measured first, is below it.)
    config = two_rank_config(campaign, baseline_s=0.5, cooldown_max_s=0, min_window_s=2)
    scenario = FakeScenario(
        devices=[FakeDevice(energy_counter=False, power_w=[(0, 100.0), (1200, 400.0)])]
    )
    result = llem_run(config, tmp_path, fake_nvml_env(scenario))
    out = tmp_path / "run"
    ranks = [json.loads((out / f"process_{r}.json").read_text()) for r in (0, 1)]
    assert ranks[1]["timeseries"]["path"] == "process_1.timeseries.parquet"

    own = [r["energy"]["per_device"][0] for r in ranks]
    assert all(d["method"] == "nvml_power_polling" and d["counter_end_j"] is None for d in own)
    (device,) = result["energy"]["per_device"]
    t0 = min(d["window_start_unix_s"] for d in own)
    t1 = max(d["window_end_unix_s"] for d in own)
    assert (device["window_start_unix_s"], device["window_end_unix_s"]) == (t0, t1)
    truth_j = scenario.energy_j(0, t0, t1)
    assert device["energy_j"] == pytest.approx(truth_j, rel=0.001)
    assert "the power every rank polled" in device["notes"][-1]
    assert "interpolated" not in device["notes"][-1], "each end is a rank's own boundary sample"
    assert device["samples"] > max(d["samples"] for d in own), "both ranks' samples, merged"
    idle_w = ranks[0]["energy"]["baseline"]["per_device_w"][scenario.uuid(0)]
    assert device["idle_power_w"] == pytest.approx(idle_w)
    assert device["adjusted_energy_j"] == pytest.approx(
        device["energy_j"] - idle_w * (t1 - t0), rel=1e-9
    ), "idle is subtracted over the span the power was integrated over"
    adjusted_truth_j = truth_j - idle_w * (t1 - t0)
    assert result["energy"]["adjusted_energy_j"] == pytest.approx(
        adjusted_truth_j, abs=0.001 * truth_j
    )


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


HANG_GUARD_S = 300
"""Fails a run that hangs (gloo would wait 30 minutes); never a check of this machine's speed."""


def launch_two_ranks(config, tmp_path) -> tuple[subprocess.Popen, int, int]:
    """`llem run` of a 2-rank config in the background, and both ranks' pids once they exist."""
    path = tmp_path / "config.json"
    path.write_text(config.model_dump_json())
    launcher = subprocess.Popen(
        [sys.executable, "-m", "llenergymeasure", "run", str(path), "--out", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        children = _children(launcher.pid)
        rank0, rank1 = (
            next((p for p in children if f"--rank {r}" in _cmdline(p)), None) for r in (0, 1)
        )
        if rank0 is not None and rank1 is not None:
            return launcher, rank0, rank1
        time.sleep(0.2)
    launcher.kill()
    pytest.fail("the ranks never started")


def test_a_killed_rank_stops_the_others_and_fails_the_run_with_its_error(
    tmp_path, campaign, embedded_model
):
    # Without the launcher's watch, rank 0 would wait for the dead rank at its next barrier
    # (gloo's default timeout is 30 minutes).
    # Whenever rank 1 dies, rank 0 can never finish (it needs rank 1 at its first barrier):
    # kill it as soon as it exists, so no machine is fast enough to finish first.
    config = two_rank_config(campaign, meter="none", baseline_s=0, rank_grace_s=5)
    launcher, rank0, rank1 = launch_two_ranks(config, tmp_path)
    os.kill(rank1, signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=HANG_GUARD_S)
    assert launcher.returncode == 0, "a recorded failure lets the campaign go on"
    record = json.loads((tmp_path / "r" / "result.json").read_text())
    assert record["status"] == "failed" and record["failure_class"] == "killed"
    assert record["message"] == "rank 1 was killed by SIGKILL; the other ranks (0) were stopped"
    assert "failed (killed)" in stderr
    assert not (tmp_path / "r" / "process_0.json").exists(), "rank 0 never finished"
    with pytest.raises(ProcessLookupError):
        os.kill(rank0, 0)  # the waiting rank was stopped and reaped, not left behind


def test_a_rank_that_never_reaches_its_barrier_is_stopped_at_max_run_s(
    tmp_path, campaign, embedded_model
):
    config = two_rank_config(campaign, meter="none", baseline_s=0, max_run_s=25)
    launcher, _, rank1 = launch_two_ranks(config, tmp_path)
    os.kill(rank1, signal.SIGSTOP)  # hangs: alive, but never reaches the barrier
    _, stderr = launcher.communicate(timeout=HANG_GUARD_S)
    assert launcher.returncode == 0, stderr[-3000:]
    record = json.loads((tmp_path / "r" / "result.json").read_text())
    assert record["failure_class"] == "timeout" and record["phase"] == "ranks"
    assert record["message"] == "stopped after 25 s by measurement.max_run_s = 25 s"
    with pytest.raises(ProcessLookupError):
        os.kill(rank1, 0)  # the hung rank was killed and reaped, not left behind
