"""When a device is at rest: the cooldown's verdict on synthetic sample streams."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices.base import DeviceSample
from llenergymeasure.measure.rest import NO_IDLE, at_rest, rest_bounds

GPU = "GPU-fa4e0000-0000-0000-0000-000000000000"
DT_S = 0.1  # the sampler's default interval
T0_S = 1_700_000_000.0  # samples carry unix times
BOUNDS = rest_bounds(MeasurementConfig())


def stream(
    duration_s: float,
    temperature_c: Callable[[float], float],
    power_w: Callable[[float], float] | None = None,
) -> list[DeviceSample]:
    """Samples every DT_S for `duration_s`, temperature in whole °C as NVML reads it."""
    return [
        DeviceSample(
            device=GPU,
            t_s=T0_S + i * DT_S,
            power_w=None if power_w is None else power_w(i * DT_S),
            temperature_c=float(round(temperature_c(i * DT_S))),
        )
        for i in range(round(duration_s / DT_S) + 1)
    ]


def judge(samples: list[DeviceSample], idle_w: float | None, bounds=BOUNDS):
    return at_rest(GPU, samples, samples[-1].t_s, bounds, idle_w)


def flat_idle(t_s: float) -> float:
    return 60.0 + 1.5 * math.sin(7.0 * t_s)  # idle power with its noise


def old_rule_settles(samples: list[DeviceSample]) -> bool:
    """The rule this replaced: consecutive one-second means within 1 W and 0.5 °C."""
    means = []
    for second in (0, 1):
        part = [s for s in samples if second <= s.t_s - T0_S < second + 1]
        means.append(
            (
                sum(s.power_w for s in part) / len(part),  # type: ignore[misc]
                sum(s.temperature_c for s in part) / len(part),  # type: ignore[misc]
            )
        )
    (p0, c0), (p1, c1) = means
    return abs(p1 - p0) <= 1.0 and abs(c1 - c0) <= 0.5


def test_a_device_cooling_at_0_3_c_per_s_is_not_at_rest_though_still_by_the_old_rule():
    def cooling(t_s: float) -> float:  # 0.3 °C/s now, decaying towards 35 °C
        return 35.0 + 90.0 * math.exp(-t_s / 300.0)

    samples = stream(35.0, cooling, flat_idle)
    assert old_rule_settles(samples)
    verdict = judge(samples, idle_w=60.0)
    assert verdict.settled is False
    assert verdict.temperature_slope_c_per_s == pytest.approx(-0.29, abs=0.03)
    assert verdict.unsettled_reason.startswith("temperature falling 0.2")
    assert verdict.power_w == pytest.approx(60.0, abs=0.5)  # power alone would pass


def test_a_flat_trace_at_idle_power_is_at_rest():
    verdict = judge(stream(35.0, lambda t: 41.0, flat_idle), idle_w=61.0)
    assert verdict.settled is True and verdict.unsettled_reason is None
    assert verdict.temperature_slope_c_per_s == 0.0
    assert verdict.idle_target_w == 61.0 and verdict.idle_target_null_reason is None
    assert verdict.power_w == pytest.approx(60.0, abs=0.5)


def test_a_flat_trace_well_above_the_known_idle_is_not_at_rest():
    verdict = judge(stream(35.0, lambda t: 41.0, lambda t: flat_idle(t) + 20.0), idle_w=60.0)
    assert verdict.settled is False
    assert verdict.unsettled_reason == "power 80.0 W above idle 60.0 W (limit 65.0 W)"
    # the tolerance is max(5 W, 5 %): 5 % of a 300 W idle is 15 W
    hot = stream(35.0, lambda t: 41.0, lambda t: 312.0)
    assert judge(hot, idle_w=300.0).settled is True
    assert judge(hot, idle_w=290.0).settled is False


def test_with_no_idle_known_the_power_must_be_flat():
    flat = judge(stream(35.0, lambda t: 41.0, flat_idle), idle_w=None)
    assert flat.settled is True
    assert (flat.idle_target_w, flat.idle_target_null_reason) == (None, NO_IDLE)
    assert abs(flat.power_slope_w_per_s) <= BOUNDS.power_slope_w_per_s
    falling = judge(stream(35.0, lambda t: 41.0, lambda t: 90.0 - 0.5 * t), idle_w=None)
    assert falling.settled is False
    assert falling.power_slope_w_per_s == pytest.approx(-0.5)
    assert "power falling 0.500 W/s, no idle level known" in falling.unsettled_reason


def test_no_verdict_before_one_full_window():
    samples = stream(BOUNDS.window_s - 1.0, lambda t: 41.0, flat_idle)
    verdict = judge(samples, idle_w=60.0)
    assert verdict.settled is False
    assert verdict.unsettled_reason == "29.0 s of samples, fewer than one 30 s window"
    assert verdict.temperature_slope_c_per_s is None and verdict.power_w is None
    assert verdict.idle_target_w == 60.0  # what it waits for is known all the same


def test_a_counter_only_device_is_judged_on_the_counter_rate():
    samples = [
        DeviceSample(device=GPU, t_s=T0_S + i * DT_S, energy_j=1000.0 + 70.0 * i * DT_S)
        for i in range(351)
    ]
    verdict = judge(samples, idle_w=60.0)
    assert verdict.power_w == pytest.approx(70.0)
    assert verdict.temperature_null_reason == "no temperature reading in the window"
    assert verdict.settled is False  # 70 W > 60 + 5
    assert judge(samples, idle_w=66.0).settled is True


def sliding(samples: list[DeviceSample], window_s: float):
    """The verdict at every whole second once a window is full, as the cooldown judges."""
    bounds = BOUNDS.model_copy(update={"window_s": window_s})
    per_s = round(1.0 / DT_S)
    for end in range(round(window_s / DT_S), len(samples), per_s):
        yield at_rest(GPU, samples[: end + 1], samples[end].t_s, bounds, idle_w=60.0)


@pytest.mark.parametrize("c_per_min", [0.5, 1.0])
def test_whole_degree_readings_under_the_slope_bound_are_at_rest(c_per_min):
    """NVML's 1 °C steps: over 60 s one step fits at most 1.5/60 °C/s, under the bound."""
    slow = stream(600.0, lambda t: 50.3 - c_per_min * t / 60.0, flat_idle)  # true slope
    assert all(v.settled for v in sliding(slow, 60.0))
    # over the default 30 s a step mid-window reads as 3 °C/min: rest comes within a window
    unsettled_s, longest_s = 0, 0  # verdicts are one second apart
    for verdict in sliding(slow, 30.0):
        unsettled_s = 0 if verdict.settled else unsettled_s + 1
        longest_s = max(longest_s, unsettled_s)
    assert 0 < longest_s < 30


def test_whole_degree_readings_over_the_slope_bound_are_never_at_rest():
    """At 30 s no phase of the steps makes a device cooling at 3 °C/min read as at rest."""
    for offset_c in (0.0, 0.25, 0.5, 0.75):
        cooling = stream(300.0, lambda t, o=offset_c: 60.0 + o - t / 20.0, flat_idle)
        assert not any(v.settled for v in sliding(cooling, 30.0))
