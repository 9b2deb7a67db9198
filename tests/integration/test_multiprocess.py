"""A 2-process CPU run (gloo) of the embedded model, metered through the fake NVML."""

from __future__ import annotations

import json

import pytest

from llenergymeasure.config import plan_campaign
from tests.fakes.nvml import FakeDevice, FakeScenario
from tests.llem import llem_run

pytest_plugins = ["tests.fakes.nvml.fixtures"]
pytestmark = pytest.mark.slow


def test_two_ranks_aggregate_tokens_wall_span_and_each_device_once(
    tmp_path, campaign, embedded_model, fake_nvml_env
):
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
            "baseline_s": 0.5,
            "cooldown_max_s": 0,
            "warmup_batches": 1,
        },
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    scenario = FakeScenario(
        devices=[
            FakeDevice(power_w=[(0, 100.0), (60, 250.0)]),
            FakeDevice(power_w=150.0),
        ]
    )
    result = llem_run(config, tmp_path, fake_nvml_env(scenario))
    out = tmp_path / "run"
    ranks = [json.loads((out / f"process_{r}.json").read_text()) for r in (0, 1)]

    assert [p["rank"] for p in result["processes"]] == [0, 1]
    assert result["tokens"]["output_tokens"] == sum(r["tokens"]["output_tokens"] for r in ranks)
    assert result["tokens"]["output_tokens"] == 4 * 16
    assert sorted(q["index"] for q in result["requests"]) == [0, 1, 2, 3]
    start = min(r["timing"]["window_start_unix_s"] for r in ranks)
    end = max(r["timing"]["window_end_unix_s"] for r in ranks)
    assert result["timing"]["window_s"] == pytest.approx(end - start)
    assert result["throughput"]["output_tokens_per_s"] == pytest.approx(64 / (end - start))
    assert result["latency"]["ttft_s"]["n"] == 4  # samples pooled before percentiles

    devices = {d["device"]: d for d in result["energy"]["per_device"]}
    assert set(devices) == {"gpu:0", "gpu:1"}  # both ranks metered both GPUs
    for index, name in enumerate(("gpu:0", "gpu:1")):
        device = devices[name]
        truth = scenario.energy_j(index, device["window_start_unix_s"], device["window_end_unix_s"])
        assert device["energy_j"] == pytest.approx(truth, rel=0.005)
        summed = sum(
            d["energy_j"] for r in ranks for d in r["energy"]["per_device"] if d["device"] == name
        )
        assert device["energy_j"] < 0.75 * summed, "a device shared by ranks is counted once"
    assert result["energy"]["energy_j"] == pytest.approx(
        devices["gpu:0"]["energy_j"] + devices["gpu:1"]["energy_j"]
    )
    assert not any("overlap only" in w for w in result["warnings"])
    assert ranks[1]["energy"]["baseline"] is None and result["energy"]["baseline"] is not None
