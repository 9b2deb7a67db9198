"""The cooldown waits for rest, on fake GPUs (the fake libnvidia-ml.so.1 under the real pynvml).

Every reading is a function of time the scenario scripts, and each assertion is on what the
cooldown decided from it: constant scripts are at rest (or not) whenever this machine gets
there, and the cooling device cools at 0.3 °C/s at every instant a run can reach.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.measure.rest import NO_IDLE
from llenergymeasure.results.tables import build_tables
from tests.fakes.nvml import FakeDevice, FakeScenario, run_python
from tests.llem import llem_run

pytest_plugins = ["tests.fakes.nvml.fixtures"]
WINDOW_S = 10.0  # the shortest window a campaign accepts
BOUND_C_PER_S = 0.033  # the default temperature bound
HORIZON_S = 900


def cooling_c() -> list[tuple[float, float]]:
    """95 -> 35 °C at 0.3 °C/s, reheated every 200 s: cooling wherever a run gets to it
    (a window holding a reheat slopes steeply up: not at rest either)."""
    points: list[tuple[float, float]] = []
    for start in range(0, HORIZON_S, 200):
        points += [(float(start), 95.0), (start + 200.0, 35.0)]
    return points


COOLDOWN = """
import json
from pathlib import Path
from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices import select_meter
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.measure.baseline import cached_idle_w, cooldown, idle_baseline
cache = Path(CACHE)
measurement = MeasurementConfig(
    meter="nvml", baseline_s=1.0, cooldown_max_s=MAX_S, cooldown_window_s=WINDOW_S
)
setup = select_meter(measurement)
sampler = Sampler(setup.source, 0.1)
sampler.start()
cooled = cooldown(sampler, measurement, "nvml", cached_idle_w(setup, cache))
idle_baseline(setup, sampler, measurement, cache, store=cooled.settled is not False)
sampler.stop()
print(json.dumps({"cooled": cooled.model_dump(), "idle_w": cached_idle_w(setup, cache)}))
"""


def cool_down(env: dict[str, str], cache: Path, max_s: float) -> dict:
    code = (
        COOLDOWN.replace("CACHE", repr(str(cache)))
        .replace("MAX_S", repr(max_s))
        .replace("WINDOW_S", repr(WINDOW_S))
    )
    return run_python(code, env, timeout=600)


def test_a_device_at_rest_settles_then_waits_for_its_idle_level(fake_nvml_env, tmp_path):
    at_idle = FakeScenario(devices=[FakeDevice(power_w=60.0, temperature_c=41.0)])
    uuid = at_idle.uuid(0)
    cache = tmp_path / "baselines"

    # No idle level known yet: at rest once the power and temperature trends are flat.
    first = cool_down(fake_nvml_env(at_idle), cache, max_s=300.0)
    cooled = first["cooled"]
    assert cooled["settled"] is True and cooled["cooldown_s"] >= WINDOW_S
    assert cooled["bounds"]["window_s"] == WINDOW_S
    (device,) = cooled["devices"]
    assert device["device"] == uuid and device["settled"] is True
    assert (device["idle_target_w"], device["idle_target_null_reason"]) == (None, NO_IDLE)
    assert device["temperature_slope_c_per_s"] == 0.0
    assert device["power_w"] == pytest.approx(60.0, abs=0.01)
    assert abs(device["power_slope_w_per_s"]) <= cooled["bounds"]["power_slope_w_per_s"]
    assert first["idle_w"] == {uuid: pytest.approx(60.0, abs=0.01)}  # the baseline, cached

    # Its cached idle is now the level it must be at.
    (device,) = cool_down(fake_nvml_env(at_idle), cache, max_s=300.0)["cooled"]["devices"]
    assert device["settled"] is True
    assert device["idle_target_w"] == pytest.approx(60.0, abs=0.01)

    # Still, but 60 W over its idle level: never at rest; the bound stops the wait.
    busy = FakeScenario(devices=[FakeDevice(power_w=120.0, temperature_c=41.0)])
    assert busy.uuid(0) == uuid
    out = cool_down(fake_nvml_env(busy), cache, max_s=WINDOW_S + 2.0)
    cooled = out["cooled"]
    assert cooled["settled"] is False and cooled["cooldown_s"] >= cooled["max_s"] == 12.0
    (device,) = cooled["devices"]
    assert device["temperature_slope_c_per_s"] == 0.0
    assert device["unsettled_reason"].startswith("power 120.0 W above idle 60.0 W")
    assert out["idle_w"] == first["idle_w"]  # a baseline not at rest is not cached


@pytest.mark.slow
def test_a_slowly_cooling_device_is_recorded_unsettled(tmp_path, embedded_model, fake_nvml_env):
    campaign = {
        "name": "cooldown",
        "models": ["smollm2-135m"],
        "settings": {"batch_size": 2, "num_prompts": 2, "max_new_tokens": 4},
        "measurement": {
            "meter": "nvml",
            "baseline_s": 1.0,
            "cooldown_max_s": 12,
            "cooldown_window_s": WINDOW_S,
            "warmup_batches": 0,
        },
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    scenario = FakeScenario(devices=[FakeDevice(power_w=60.0, temperature_c=cooling_c())])
    cache = tmp_path / "cache"
    result = llem_run(config, tmp_path, fake_nvml_env(scenario), ("--campaign-cache", str(cache)))

    cooled = result["timing"]["cooldown"]
    assert cooled["settled"] is False and cooled["cooldown_s"] >= cooled["max_s"] == 12.0
    assert cooled["bounds"]["temperature_slope_c_per_s"] == BOUND_C_PER_S
    (device,) = cooled["devices"]
    assert device["device"] == scenario.uuid(0) and device["settled"] is False
    assert abs(device["temperature_slope_c_per_s"]) > BOUND_C_PER_S
    assert device["unsettled_reason"].startswith("temperature ")
    assert abs(device["power_slope_w_per_s"]) <= cooled["bounds"]["power_slope_w_per_s"]
    assert "cooldown stopped at 12 s before the devices settled" in result["warnings"]
    # measured all the same, but not cached as the idle level later runs wait for
    assert result["energy"]["baseline"]["idle_power_w"] == pytest.approx(60.0, abs=0.01)
    assert not list((cache / "baselines").glob("*.json"))

    tables = build_tables([tmp_path / "run" / "result.json"], tmp_path / "tables")
    runs = pd.read_parquet(tables["runs"])
    assert runs["cooldown_settled"].tolist() == [False]
