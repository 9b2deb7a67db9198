"""GPU power limit and locked clocks through the fake NVML: applied, read back, restored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.results.tables import build_tables
from tests.fakes.nvml import FakeDevice, FakeScenario, read_state, write_state
from tests.llem import llem_run

pytest_plugins = ["tests.fakes.nvml.fixtures"]
pytestmark = pytest.mark.slow

SW_POWER_CAP = 0x4


def gpu_run(campaign, gpu, **measurement):
    campaign = {
        **campaign,
        "grid": {},
        "settings": {
            "batch_size": 2,
            "num_prompts": 2,
            "max_new_tokens": 8,
            "max_input_tokens": 64,
            **({"gpu": gpu} if gpu else {}),
        },
        "measurement": {
            "meter": "nvml",
            "baseline_s": 0.5,
            "cooldown_max_s": 0,
            "warmup_batches": 0,
            "min_window_s": 2,
            **measurement,
        },
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    return config


@pytest.fixture
def gpu_env(fake_nvml_env, tmp_path):
    # 350 W of load under a 400 W limit (range 100-400 W): a 250 W cap binds
    scenario = FakeScenario(devices=[FakeDevice(power_w=350.0)])
    env = fake_nvml_env(scenario)
    env["LLEM_RESTORE_DIR"] = str(tmp_path / "restore")
    return env


def test_a_run_applies_reads_back_and_restores(tmp_path, campaign, embedded_model, gpu_env):
    config = gpu_run(campaign, {"power_limit_w": 250, "sm_clocks_mhz": [900, 1200]})
    result = llem_run(config, tmp_path, gpu_env)
    after_s = time.time()
    (device,) = result["gpu_settings"]["devices"]
    assert device["power_limit_w_before"] == 400 and device["power_limit_w_applied"] == 250
    assert device["power_limit_range_w"] == [100, 400]
    assert device["sm_clocks_mhz_locked"] == [900, 1200]
    assert 900 <= device["sm_clock_mhz_read"] <= 1200
    assert device["restored"] is True
    state = read_state(gpu_env["FAKE_NVML_STATE"])[0]
    assert state["power_limit_mw"] == 400_000 and state["sm_locked"] is None, "restored"
    assert not list((tmp_path / "restore").glob("*.json"))

    timeline = pd.read_parquet(tmp_path / "run" / "timeseries.parquet")
    window = timeline[timeline.phase == "window"]
    assert (window["power_limit_w"] == 250).all()
    assert (window["sm_clock_mhz"].between(900, 1200)).all()
    assert ((window["throttle_reasons"] & SW_POWER_CAP) != 0).all(), "the cap binds"
    # capped power metered: 250 W between the boundary reads, each taken after its timestamp
    # and before the next sample's (the sampler reads one at a time), or the run's end
    energy = result["energy"]["per_device"][0]
    stamps = sorted(timeline["t_unix_s"])
    t_begin, t_end = energy["window_start_unix_s"], energy["window_end_unix_s"]
    by_begin, by_end = (next((t for t in stamps if t > s), after_s) for s in (t_begin, t_end))
    assert 250 * (t_end - by_begin) - 0.001 <= energy["energy_j"]
    assert energy["energy_j"] <= 250 * (by_end - t_begin) + 0.001

    tables = build_tables([tmp_path / "run" / "result.json"], tmp_path / "tables")
    row = pd.read_parquet(tables["runs"]).iloc[0]
    assert row["power_limit_w"] == 250 and row["sm_clocks_mhz"] == "900-1200"
    assert row["applied_power_limit_w"] == 250 and row["gpu_settings_restored"]


GPU0 = "GPU-fa4e0000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("device", "gpu", "message"),
    [
        (
            FakeDevice(),
            {"power_limit_w": 50},
            f"settings.gpu.power_limit_w: 50 W is outside {GPU0}'s range 100–400 W",
        ),
        (
            FakeDevice(),
            {"sm_clocks_mhz": 5000},
            f"settings.gpu.sm_clocks_mhz: 5000–5000 MHz is outside {GPU0}'s supported",
        ),
        (FakeDevice(settable=False), {"power_limit_w": 250}, "NVML: no permission"),
    ],
)
def test_a_setting_the_gpu_refuses_is_one_line_and_changes_nothing(
    tmp_path, campaign, embedded_model, fake_nvml_env, device, gpu, message
):
    env = fake_nvml_env(FakeScenario(devices=[device]))
    env["LLEM_RESTORE_DIR"] = str(tmp_path / "restore")
    record = llem_run(gpu_run(campaign, gpu), tmp_path, env)
    assert record["status"] == "failed" and record["failure_class"] == "unsupported_config"
    assert record["phase"] == "gpu_settings"
    assert message in record["message"]
    state = read_state(env["FAKE_NVML_STATE"]).get(0, {})
    assert state.get("power_limit_mw", 400_000) == 400_000
    assert not list((tmp_path / "restore").glob("*.json"))


def test_a_run_killed_in_its_window_is_restored_by_the_next_run(
    tmp_path, campaign, embedded_model, gpu_env
):
    config = gpu_run(campaign, {"power_limit_w": 250}, min_window_s=600)
    path = tmp_path / "config.json"
    path.write_text(config.model_dump_json())
    proc = subprocess.Popen(
        [sys.executable, "-m", "llenergymeasure", "run", str(path), "--out", str(tmp_path / "k")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**gpu_env, "OMP_NUM_THREADS": "1"},
    )
    for line in proc.stdout:
        if "window:" in line:
            break
    os.kill(proc.pid, signal.SIGKILL)  # nothing can restore now
    proc.wait()
    assert read_state(gpu_env["FAKE_NVML_STATE"])[0]["power_limit_mw"] == 250_000
    (leftover,) = (tmp_path / "restore").glob("*.json")
    assert json.loads(leftover.read_text())["power_limit_mw"] == 400_000

    result = llem_run(gpu_run(campaign, {"power_limit_w": 300}), tmp_path, gpu_env)
    settings = result["gpu_settings"]
    assert len(settings["restored_leftovers"]) == 1, "restored before it measured"
    assert settings["devices"][0]["power_limit_w_before"] == 400, "the GPU's own value"
    assert settings["devices"][0]["power_limit_w_applied"] == 300
    assert read_state(gpu_env["FAKE_NVML_STATE"])[0]["power_limit_mw"] == 400_000
    assert not list((tmp_path / "restore").glob("*.json"))


def test_doctor_restore_puts_back_what_a_killed_run_left(tmp_path, fake_nvml_env):
    env = fake_nvml_env(FakeScenario(devices=[FakeDevice()]))
    env["LLEM_RESTORE_DIR"] = str(tmp_path / "restore")
    write_state(env["FAKE_NVML_STATE"], {0: {"power_limit_mw": 250_000}})
    (tmp_path / "restore").mkdir()
    uuid = "GPU-fa4e0000-0000-0000-0000-000000000000"
    (tmp_path / "restore" / f"{uuid}.json").write_text(
        json.dumps({"uuid": uuid, "run_id": "r", "power_limit_mw": 400_000, "sm_locked": True})
    )
    out = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "doctor", "--restore"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 GPUs restored" in out.stdout
    state = read_state(env["FAKE_NVML_STATE"])[0]
    assert state["power_limit_mw"] == 400_000 and state["sm_locked"] is None
    assert not list((tmp_path / "restore").glob("*.json"))
