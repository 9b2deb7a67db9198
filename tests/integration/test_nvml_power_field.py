"""Which NVML power reading is polled: the instantaneous field where the driver has it.

``nvmlDeviceGetPowerUsage`` is a ~1 s moving average on Ampere and later GPUs (the fake
models that by default), so power polled from it lags a step change by ~0.5 s. NvmlSource
polls field NVML_FI_DEV_POWER_INSTANT where it is supported, falls back to GetPowerUsage
where it is not, and every DeviceEnergy names the reading it integrated.

Each test runs the real pynvml against the fake library in a child process (see
tests/integration/test_nvml_meter.py for why).
"""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from typing import Any

import pytest

from tests.fakes.nvml import (
    NVML_FI_DEV_POWER_INSTANT,
    FakeDevice,
    FakeScenario,
    run_python,
    subprocess_env,
)

pytest_plugins = ["tests.fakes.nvml.fixtures"]

STEP_S = 1.0  # 100 W -> 300 W this long after the scenario's epoch
END_S = 3.0  # the window ends this long after the epoch: past the 1 s average's catch-up
LOW_W, HIGH_W = 100.0, 300.0
STEP = [(STEP_S, LOW_W), (STEP_S, HIGH_W)]
INSTANT = "nvml_power_instant"

DEVICES: list[dict[str, Any]] = [
    # gpu:0 polled power only, the instant field available (a current driver)
    {"energy_counter": False, "power_w": STEP},
    # gpu:1 polled power only, no instant field (older GPU or driver)
    {
        "energy_counter": False,
        "power_w": STEP,
        "unsupported_fields": [NVML_FI_DEV_POWER_INSTANT],
    },
    # gpu:2 the energy counter, polled power as its cross-check
    {"power_w": STEP},
]

# The child writes the scenario itself once its imports are done, so that the step falls
# inside the window however long the interpreter took to start.
WINDOW_CHILD = """
import json, os, time
from llenergymeasure.devices.counter import CounterMeter
from llenergymeasure.devices.nvml import NvmlSource
from llenergymeasure.devices.sampler import Sampler
from tests.fakes.nvml import FakeScenario, write_scenario

epoch = time.time()
write_scenario(os.environ["FAKE_NVML_SCENARIO"],
               FakeScenario.from_dict({"start_epoch_s": epoch, "devices": DEVICES}))
source = NvmlSource()
sampler = Sampler(source, 0.1)
sampler.start()
meter = CounterMeter("nvml", source, sampler)
meter.begin_window()
time.sleep(max(0.0, epoch + END_S - time.time()))
energy = meter.end_window()
sampler.stop()
print(json.dumps({
    "epoch": epoch,
    "power_fields": [d.power_field for d in source.devices()],
    "per_device": [d.model_dump(mode="json") for d in energy.per_device],
    "sample_t": [[s.t_s for s in sampler.between(d.device, d.window_start_unix_s,
                                                 d.window_end_unix_s)]
                 for d in energy.per_device],
}))
"""


def trapezoid_j(times_s: list[float], power_w: list[float]) -> float:
    points = zip(times_s, power_w, strict=True)
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairwise(points))


def step_gap_s(times_s: list[float], step_s: float) -> float:
    """Length of the sampling interval that straddles the step (0 if none does)."""
    return next((t1 - t0 for t0, t1 in pairwise(times_s) if t0 <= step_s <= t1), 0.0)


@pytest.fixture(scope="module")
def window(fake_nvml_lib, tmp_path_factory) -> dict[str, Any]:
    """One polled window over the step, on the three GPUs of DEVICES."""
    path = tmp_path_factory.mktemp("power_field") / "scenario.txt"
    env = subprocess_env(fake_nvml_lib, path)
    code = WINDOW_CHILD.replace("DEVICES", repr(DEVICES)).replace("END_S", repr(END_S))
    out = run_python(code, env, timeout=120)
    out["scenario"] = FakeScenario.from_dict({"start_epoch_s": out["epoch"], "devices": DEVICES})
    return out


def window_truth(out: dict[str, Any], index: int) -> tuple[dict[str, Any], FakeDevice, float]:
    """The device's result, its fake, and the exact energy of its window (J)."""
    device = out["per_device"][index]
    scenario = out["scenario"]
    t0, t1 = device["window_start_unix_s"], device["window_end_unix_s"]
    epoch = scenario.start_epoch_s
    # The child begins the window right after opening NVML (milliseconds after the epoch) and
    # ends it at END_S: a window that misses the step would test nothing.
    assert t0 - epoch < STEP_S < t1 - epoch - 1.0, "the window must hold the step and 1 s more"
    return device, scenario.devices[index], scenario.energy_j(index, t0, t1)


def test_polled_power_uses_the_instant_field_and_integrates_the_step(window) -> None:
    device, _, truth_j = window_truth(window, 0)
    assert window["power_fields"][0] == INSTANT
    assert device["method"] == "nvml_power_polling"
    assert device["power_field"] == INSTANT
    assert any(f"power ({INSTANT}) polled every 0.1 s" in n for n in device["notes"])
    # The trapezoid of exact samples errs by at most the step times half the sampling
    # interval straddling it (the whole interval, allowing for a read later than its
    # timestamp); polling the moving average would miss (HIGH_W - LOW_W) * 0.5 s = 100 J.
    times = [t - window["scenario"].start_epoch_s for t in window["sample_t"][0]]
    tolerance_j = (HIGH_W - LOW_W) * step_gap_s(times, STEP_S) + 0.005 * truth_j
    assert device["energy_j"] == pytest.approx(truth_j, abs=tolerance_j)


def test_without_the_instant_field_polling_falls_back_to_the_moving_average(window) -> None:
    device, fake, truth_j = window_truth(window, 1)
    fallback = window["power_fields"][1]
    assert fallback.startswith("nvml_power_usage") and "moving average" in fallback
    assert device["power_field"] == fallback
    assert any("moving average" in n and "NVML_FI_DEV_POWER_INSTANT" in n for n in device["notes"])
    assert any(f"power ({fallback}) polled" in n for n in device["notes"])
    # What was integrated is the 1 s average, at the sample times: it lags the step.
    epoch = window["scenario"].start_epoch_s
    times = [t - epoch for t in window["sample_t"][1]]
    averaged_j = trapezoid_j(times, [fake.average_power_w(t) for t in times])
    assert device["energy_j"] == pytest.approx(averaged_j, rel=0.01)
    assert truth_j - averaged_j == pytest.approx((HIGH_W - LOW_W) * 0.5, rel=0.05)


def test_the_counter_is_primary_and_its_cross_check_names_the_field(window) -> None:
    device, _, truth_j = window_truth(window, 2)
    assert device["method"] == "nvml_counter"
    assert device["energy_j"] == pytest.approx(truth_j, rel=0.005)
    assert device["power_field"] == INSTANT
    assert any(f"power ({INSTANT}) polled" in n and "cross-check" in n for n in device["notes"])
    assert device["polled_energy_j"] is not None


def test_doctor_names_the_power_reading(fake_nvml_env, tmp_path) -> None:
    env = fake_nvml_env(
        FakeScenario(
            devices=[
                FakeDevice(),
                FakeDevice(energy_counter=False, unsupported_fields=[NVML_FI_DEV_POWER_INSTANT]),
            ]
        )
    )
    env["LLEM_POWERCAP_ROOT"] = str(tmp_path)
    command = [sys.executable, "-m", "llenergymeasure", "doctor"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    gpu0, gpu1 = (f"GPU-fa4e0000-0000-0000-0000-{i:012d} NVIDIA A100-SXM4-80GB" for i in (0, 1))
    assert f"{gpu0}: energy counter; power polled: {INSTANT}" in out
    assert f"{gpu1}: power polling only; power polled: nvml_power_usage" in out
    assert "moving average" in out
