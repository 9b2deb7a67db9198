"""The sensor budget of real runs against a fake GPU whose power and counter period are known.

Real transformers inference on the embedded model; the fake NVML's power is a scripted
sinusoid, so the true energy of any interval is its integral (`FakeScenario.energy_j`). The
budget must cover the distance between what the run reports and that truth, figure by
figure: the window (a counter updating every 0.25 s, slower than the probe can time, and,
on another GPU, polled ~1 s averaged power without a counter), its phases and its requests.
"""

from __future__ import annotations

import pandas as pd
import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.results.tables import build_tables
from tests.fakes.nvml import NVML_FI_DEV_POWER_INSTANT, POWER_USAGE_AVERAGED
from tests.integration.test_phase_energy import MEASUREMENT, sinusoid_gpu, truth_j
from tests.llem import llem_run

pytest_plugins = ["tests.fakes.nvml.fixtures"]
pytestmark = pytest.mark.slow

PERIOD_S = 0.25


def run(tmp_path, env) -> dict:
    campaign = {
        "name": "budget",
        "models": ["smollm2-135m"],
        "settings": {"batch_size": 2, "num_prompts": 4, "max_new_tokens": 8, "threads": 1},
        "measurement": MEASUREMENT,
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    return llem_run(config, tmp_path, env)


def window_truth_j(device: dict, scenario) -> float:
    return scenario.energy_j(0, device["window_start_unix_s"], device["window_end_unix_s"])


def test_a_slow_counters_budget_covers_its_error_figure_by_figure(
    tmp_path, embedded_model, fake_nvml_env
):
    scenario = sinusoid_gpu()
    scenario.counter_period_s = PERIOD_S
    result = run(tmp_path, fake_nvml_env(scenario))
    energy = result["energy"]
    (device,) = energy["per_device"]
    assert device["method"] == "nvml_counter"
    parts = {p["name"]: p for p in device["uncertainty_parts"]}
    assert set(parts) == {"counter_resolution", "sensor_accuracy"}
    # The probe (0.6 s) sees 2 or 3 updates of a 0.25 s counter: whatever it concluded, the
    # period budgeted is never below the true one (the nominal 0.1 s would be).
    (probe,) = energy["counter_update_periods"]
    budgeted_s = parts["counter_resolution"]["bound_j"] / (2 * device["max_power_w"])
    assert budgeted_s >= PERIOD_S * 0.95, probe
    span_s = device["window_end_unix_s"] - device["window_start_unix_s"]
    assert parts["sensor_accuracy"]["bound_j"] == pytest.approx(5.0 * span_s)
    # The counter's own error (its steps at the window's ends) lies inside its part.
    error_j = abs(device["energy_j"] - window_truth_j(device, scenario))
    assert error_j <= parts["counter_resolution"]["bound_j"]
    assert energy["energy_uncertainty_j"] == pytest.approx(
        sum(p["bound_j"] for p in parts.values())
    )
    assert result["energy_per_output_token_uncertainty_j"] == pytest.approx(
        energy["energy_uncertainty_j"] / result["tokens"]["output_tokens"]
    )
    # Phases: cut out of the timeline, each within its own budget of its truth.
    for phase in ("prefill", "decode"):
        figure = result["phases"][phase]
        names = {p["name"] for p in figure["uncertainty_parts"]}
        assert names == {"boundary_alignment", "sensor_accuracy"}, phase
        assert (
            abs(figure["energy_j"] - truth_j(result, scenario, phase))
            <= figure["energy_uncertainty_j"]
        ), phase
    # Requests share the window's budget as they share its energy.
    shares = [r["energy_uncertainty_j"] for r in result["requests"]]
    assert sum(shares) == pytest.approx(energy["energy_uncertainty_j"], rel=1e-6)
    # The tables carry every budget, with its parts.
    tables = build_tables([tmp_path / "run" / "result.json"], tmp_path / "tables")
    runs = pd.read_parquet(tables["runs"])
    assert runs["energy_uncertainty_j"].iloc[0] == pytest.approx(energy["energy_uncertainty_j"])
    assert runs["energy_uncertainty_parts"].iloc[0].startswith("counter_resolution=")
    assert runs["decode_energy_uncertainty_j"].iloc[0] == pytest.approx(
        result["phases"]["decode"]["energy_uncertainty_j"]
    )
    latency = pd.read_parquet(tables["latency"])
    assert latency["energy_uncertainty_j"].sum() == pytest.approx(energy["energy_uncertainty_j"])
    stretches = pd.read_parquet(tables["phases"])
    assert stretches["energy_uncertainty_j"].notna().all()
    assert stretches["uncertainty_parts"].str.contains("sensor_accuracy=").all()


def test_averaged_polled_power_without_a_counter_is_budgeted_for_its_lag(
    tmp_path, embedded_model, fake_nvml_env
):
    scenario = sinusoid_gpu()
    gpu = scenario.devices[0]
    gpu.energy_counter = False
    gpu.power_usage = POWER_USAGE_AVERAGED
    gpu.unsupported_fields = [NVML_FI_DEV_POWER_INSTANT]
    result = run(tmp_path, fake_nvml_env(scenario))
    (device,) = result["energy"]["per_device"]
    assert device["method"] == "nvml_power_polling"
    parts = {p["name"]: p["bound_j"] for p in device["uncertainty_parts"]}
    assert set(parts) == {"polling_coverage", "averaging_lag", "sensor_accuracy"}
    assert parts["averaging_lag"] == pytest.approx(0.5 * device["max_power_w"])
    error_j = abs(device["energy_j"] - window_truth_j(device, scenario))
    # The lag dominates the error of a trailing average; the budget covers it.
    assert error_j <= device["energy_uncertainty_j"]
    assert error_j <= parts["averaging_lag"] + parts["polling_coverage"]
