"""Which NVML power reading is polled: the instantaneous field where the driver has it.

``nvmlDeviceGetPowerUsage`` is a ~1 s moving average on Ampere and later GPUs (the fake
models that by default), so power polled from it lags a step change by ~0.5 s. NvmlSource
polls field NVML_FI_DEV_POWER_INSTANT where it is supported, falls back to GetPowerUsage
where it is not, and every DeviceEnergy names the reading it integrated.

Each test runs the real pynvml against the fake library in a child process (see
tests/integration/test_nvml_meter.py for why).
"""

from __future__ import annotations

import bisect
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

STEP_S = 1.0  # 100 W -> 300 W this long after the scenario's epoch (later if need be)
TAIL_S = 2.0  # the window ends this long after the step: past the 1 s average's catch-up
LOW_W, HIGH_W = 100.0, 300.0
INSTANT = "nvml_power_instant"

DEVICES: list[dict[str, Any]] = [  # each steps from LOW_W to HIGH_W (with_step)
    # gpu:0 polled power only, the instant field available (a current driver)
    {"energy_counter": False},
    # gpu:1 polled power only, no instant field (older GPU or driver)
    {"energy_counter": False, "unsupported_fields": [NVML_FI_DEV_POWER_INSTANT]},
    # gpu:2 the energy counter, polled power as its cross-check
    {},
]


def with_step(step_s: float) -> list[dict[str, Any]]:
    return [{**d, "power_w": [(step_s, LOW_W), (step_s, HIGH_W)]} for d in DEVICES]


# The child writes the scenario itself once its imports are done, and scripts the step
# later (and again) until the window begins before it: the window holds the step however
# long this machine took to start the interpreter or to open NVML.
WINDOW_CHILD = """
import json, os, time
from llenergymeasure.devices.counter import CounterMeter
from llenergymeasure.devices.nvml import NvmlSource
from llenergymeasure.devices.sampler import Sampler
from tests.fakes.nvml import FakeScenario, write_scenario
from tests.integration.test_nvml_power_field import STEP_S, TAIL_S, with_step

step_s = STEP_S
while True:
    epoch = time.time()
    scenario = FakeScenario.from_dict({"start_epoch_s": epoch, "devices": with_step(step_s)})
    write_scenario(os.environ["FAKE_NVML_SCENARIO"], scenario)
    source = NvmlSource()
    sampler = Sampler(source, 0.1)
    sampler.start()
    meter = CounterMeter("nvml", source, sampler)
    meter.begin_window()
    begun = time.time()  # after every reading of the window's start
    if begun < epoch + step_s:
        break
    sampler.stop()
    step_s *= 2
time.sleep(max(0.0, epoch + step_s + TAIL_S - time.time()))
energy = meter.end_window()
ended = time.time()  # after every reading of the window's end
sampler.stop()
print(json.dumps({
    "epoch": epoch,
    "step_s": step_s,
    "begun_s": begun,
    "ended_s": ended,
    "power_fields": [d.power_field for d in source.devices()],
    "per_device": [d.model_dump(mode="json") for d in energy.per_device],
    "sample_t": [[s.t_s for s in sampler.between(d.device, d.window_start_unix_s,
                                                 d.window_end_unix_s)]
                 for d in energy.per_device],
    "all_t": sorted(s.sample.t_s for s in sampler.samples),
}))
"""


def trapezoid_j(times_s: list[float], power_w: list[float]) -> float:
    points = zip(times_s, power_w, strict=True)
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairwise(points))


def step_gap_s(times_s: list[float], step_s: float) -> float:
    """Length of the sampling interval that straddles the step (0 if none does)."""
    return next((t1 - t0 for t0, t1 in pairwise(times_s) if t0 <= step_s <= t1), 0.0)


def reads(out: dict[str, Any], index: int) -> list[tuple[float, float]]:
    """`(timestamp, read by)` (s since the epoch) of each of device `index`'s window samples.

    NvmlSource stamps a sample before it reads that GPU, and the sampler reads one GPU
    after another under one lock: each reading was taken before the next timestamp of any
    sample, and the window's first and last before the child's `begun_s` / `ended_s`.
    Bounds from recorded times, never from this machine's speed.
    """
    stamps, times = out["all_t"], out["sample_t"][index]
    bounds = []
    for k, t in enumerate(times):
        i = bisect.bisect_right(stamps, t)
        by = stamps[i] if i < len(stamps) else out["ended_s"]
        by = min(by, out["begun_s"]) if k == 0 else by
        by = min(by, out["ended_s"]) if k == len(times) - 1 else by
        bounds.append((t - out["epoch"], by - out["epoch"]))
    return bounds


@pytest.fixture(scope="module")
def window(fake_nvml_lib, tmp_path_factory) -> dict[str, Any]:
    """One polled window over the step, on the three GPUs of DEVICES."""
    path = tmp_path_factory.mktemp("power_field") / "scenario.txt"
    env = subprocess_env(fake_nvml_lib, path)
    out = run_python(WINDOW_CHILD, env, timeout=120)
    devices = with_step(out["step_s"])
    out["scenario"] = FakeScenario.from_dict({"start_epoch_s": out["epoch"], "devices": devices})
    return out


def window_truth(out: dict[str, Any], index: int) -> tuple[dict[str, Any], FakeDevice, float]:
    """The device's result, its fake, and the exact energy of its window (J)."""
    device = out["per_device"][index]
    scenario = out["scenario"]
    t0, t1 = device["window_start_unix_s"], device["window_end_unix_s"]
    epoch = scenario.start_epoch_s
    # The child begins the window before the step and ends it TAIL_S after: a window that
    # missed the step would test nothing.
    step_s = out["step_s"]
    assert t0 - epoch < step_s < t1 - epoch - 1.0, "the window must hold the step and 1 s more"
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
    tolerance_j = (HIGH_W - LOW_W) * step_gap_s(times, window["step_s"]) + 0.005 * truth_j
    assert device["energy_j"] == pytest.approx(truth_j, abs=tolerance_j)


def test_without_the_instant_field_polling_falls_back_to_the_moving_average(window) -> None:
    device, fake, _ = window_truth(window, 1)
    fallback = window["power_fields"][1]
    assert fallback.startswith("nvml_power_usage") and "moving average" in fallback
    assert device["power_field"] == fallback
    assert any("moving average" in n and "NVML_FI_DEV_POWER_INSTANT" in n for n in device["notes"])
    assert any(f"power ({fallback}) polled" in n for n in device["notes"])
    # What was integrated is the 1 s average, which lags the step ((HIGH_W - LOW_W) * 0.5 s =
    # 100 J less than the truth): the average only rises, so the readings lie between its
    # values at their timestamps and at the latest times they can have been read (whole mW).
    window_reads = reads(window, 1)
    times = [t for t, _ in window_reads]
    slack_j = 0.0005 * (times[-1] - times[0])
    lo_j = trapezoid_j(times, [fake.average_power_w(t) for t in times]) - slack_j
    hi_j = trapezoid_j(times, [fake.average_power_w(by) for _, by in window_reads]) + slack_j
    assert lo_j <= device["energy_j"] <= hi_j


def test_the_counter_is_primary_and_its_cross_check_names_the_field(window) -> None:
    device, fake, _ = window_truth(window, 2)
    assert device["method"] == "nvml_counter"
    # the counter's difference between the times its window's ends were read (whole mJ)
    (b0, b1), *_, (e0, e1) = reads(window, 2)
    assert fake.energy_j(e0) - fake.energy_j(b1) - 0.001 <= device["energy_j"]
    assert device["energy_j"] <= fake.energy_j(e1) - fake.energy_j(b0) + 0.001
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
