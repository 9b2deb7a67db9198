"""The phase split against the truth of a GPU whose power follows the engine's activity.

The GPU is the fake NVML's model (`tests.fakes.nvml.FakeDevice`): power is scripted to
follow the requests (high while a batch is prefilled, lower while it decodes, idle between),
its energy counter is the exact integral of that power, quantised to a 100 ms update period
(`expected_counter_mj`, what the fake library reports), and the truth of each phase is the
analytic integral over the phase's intervals. The sampler's readings are taken at scripted
times (every 50 ms, not aligned with the counter's updates or the phase boundaries), so
every figure is deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest

from llenergymeasure.backends.base import RequestTiming
from llenergymeasure.devices.base import DeviceInfo, DeviceSample
from llenergymeasure.measure.breakdown import Breakdown, energy_breakdown
from llenergymeasure.measure.energy_timeline import EnergyTimeline, device_curve
from llenergymeasure.results.models import DeviceEnergy, Energy
from tests.fakes.nvml import FakeDevice, analytic_energy_j, expected_counter_mj

EPOCH = 1_700_000_000.0  # the fake's epoch; the window opens 10 s later
OPEN = EPOCH + 10.0
PERIOD_S = 0.1  # the counter's update period
SAMPLING_S = 0.05
INSTANT = DeviceInfo("gpu:0", "fake", True, True, power_field="nvml_power_instant")
IDLE_W, PREFILL_W, DECODE_W = 90.0, 600.0, 350.0


def gpu(spans: list[tuple[float, float, float]]) -> FakeDevice:
    """Power IDLE_W but for `(start_s, end_s, power_w)` spans (seconds after OPEN)."""
    points = [(0.0, IDLE_W)]
    for start, end, power in sorted(spans):
        points += [(10 + start, IDLE_W), (10 + start, power), (10 + end, power), (10 + end, IDLE_W)]
    return FakeDevice(power_w=points, power_limit_mw=1_000_000, power_limit_max_mw=1_000_000)


def req(index: int, submit_s: float, times: list[float], batch: int = 0) -> RequestTiming:
    return RequestTiming(
        index=index,
        batch_index=batch,
        input_tokens=100,
        arrival_s=0.0,
        submit_s=submit_s,
        token_times_s=tuple(times),
        output_ids=tuple(range(len(times))),
        stopped_by_eos=False,
    )


def metered(
    device: FakeDevice, end_s: float, counter: bool = True
) -> tuple[EnergyTimeline, Energy]:
    """The sampler's view of `device` over [OPEN, OPEN + end_s] and the window's energy."""
    inner = np.arange(0.013, end_s, SAMPLING_S)
    times = np.concatenate([[0.0], inner, [end_s]])  # the meter's boundary samples

    def counter_j(t: float) -> float:
        return expected_counter_mj(device, OPEN + t, EPOCH, PERIOD_S) / 1000

    samples = [
        DeviceSample(
            device="gpu:0",
            t_s=OPEN + t,
            energy_j=counter_j(t) if counter else None,
            power_w=device.power_at(OPEN + t - EPOCH),
        )
        for t in times
    ]
    window = DeviceEnergy(
        device="gpu:0",
        name="fake",
        energy_j=counter_j(end_s) - counter_j(0.0),
        method="nvml_counter" if counter else "nvml_power_polling",
        confidence="measured",
        window_start_unix_s=OPEN,
        window_end_unix_s=OPEN + end_s,
        counter_begin_j=counter_j(0.0) if counter else None,
        counter_end_j=counter_j(end_s) if counter else None,
    )
    curve = device_curve(window, INSTANT, samples, SAMPLING_S, PERIOD_S)
    assert curve is not None
    timeline = EnergyTimeline((curve,))
    if not counter:
        window = window.model_copy(update={"energy_j": timeline.between(OPEN, OPEN + end_s)})
    energy = Energy(
        energy_j=window.energy_j,
        method="nvml",
        confidence="measured",
        interval_s=SAMPLING_S,
        devices=["gpu:0"],
        per_device=[window],
    )
    return timeline, energy


def split(passes, timeline, energy, backend: str, end_s: float) -> Breakdown:
    return energy_breakdown(
        backend=backend,
        max_num_seqs=2,
        passes=passes,
        window_perf_s=(0.0, end_s),
        perf_to_unix_s=OPEN,
        window_start_unix_s=OPEN,
        energy=energy,
        timeline=timeline,
        timeline_null_reason=None,
        output_tokens=sum(len(t.token_times_s) for p in passes for t in p),
    )


def truth_j(device: FakeDevice, spans: list[tuple[float, float]]) -> float:
    return sum(analytic_energy_j(device, OPEN + a, OPEN + b, EPOCH) for a, b in spans)


# Two static batches of two requests: submitted at 0.4 and 2.6, prefilled for 0.5 s
# (first tokens at 0.9 and 3.1), decoded for 1.2 s (a token every 0.1 s).
PREFILLS = [(0.4, 0.9), (2.6, 3.1)]
DECODES = [(0.9, 2.1), (3.1, 4.3)]
STATIC_END_S = 4.8


def static_batches() -> list[list[RequestTiming]]:
    requests = []
    for batch, ((submit, first), (_, last)) in enumerate(zip(PREFILLS, DECODES, strict=True)):
        tokens = list(np.round(np.arange(first, last + 1e-9, 0.1), 6))
        requests += [req(2 * batch + k, submit, tokens, batch) for k in range(2)]
    return [requests]


def test_long_phases_match_the_scripted_power_and_are_labelled_counter():
    device = gpu([(a, b, PREFILL_W) for a, b in PREFILLS] + [(a, b, DECODE_W) for a, b in DECODES])
    timeline, energy = metered(device, STATIC_END_S)
    p = split(static_batches(), timeline, energy, "transformers", STATIC_END_S).phases
    assert [i.phase for i in p.intervals] == ["idle", "prefill", "decode"] * 2 + ["idle"]
    for phase, spans in (("prefill", PREFILLS), ("decode", DECODES)):
        figure, truth = getattr(p, phase), truth_j(device, spans)
        # Every reading lags the counter update it shows by 13 ms, which can move each
        # boundary by as much: 13 ms x (600 - 90) W ~ 7 J of ~300 J per prefill.
        assert figure.energy_j == pytest.approx(truth, rel=0.03), phase
        assert abs(figure.energy_j - truth) <= figure.alignment_uncertainty_j, phase
        assert figure.energy_label == "counter", phase
        assert figure.measured_energy_j > figure.apportioned_energy_j > 0
        assert figure.measured_energy_j + figure.apportioned_energy_j == pytest.approx(
            figure.energy_j
        )
    # The window average would be far off: the split follows the activity.
    average_w = energy.energy_j / STATIC_END_S
    assert p.prefill.energy_j / p.prefill.duration_s > 1.5 * average_w
    assert all(i.energy_label == "counter" for i in p.intervals)
    assert p.resolution_s == pytest.approx(PERIOD_S)
    assert p.counter_update_period_s == pytest.approx(PERIOD_S)
    assert "polled power's shape" in (p.apportioned_method or "")


# Continuous batching: r0 is prefilled in one 30 ms step (0.50-0.53), then decodes a
# token every 50 ms to 1.53; r1, submitted at 0.98, is prefilled in the 50 ms step that
# ends at 1.03 (with r0's decode), and decodes with it to 1.53.
SHORT_PREFILLS = [(0.50, 0.53), (0.98, 1.03)]
SHORT_DECODES = [(0.53, 0.98), (1.03, 1.53)]
CONTINUOUS_END_S = 2.0


def continuous() -> list[list[RequestTiming]]:
    r0 = list(np.round(0.53 + 0.05 * np.arange(21), 6))
    return [[req(0, 0.5, r0), req(1, 0.98, r0[10:])]]


def test_prefill_steps_shorter_than_the_counter_period_are_labelled_apportioned():
    spans = [(a, b, PREFILL_W) for a, b in SHORT_PREFILLS]
    device = gpu(spans + [(a, b, DECODE_W) for a, b in SHORT_DECODES])
    timeline, energy = metered(device, CONTINUOUS_END_S)
    p = split(continuous(), timeline, energy, "vllm", CONTINUOUS_END_S).phases
    prefill = [i for i in p.intervals if i.phase == "prefill"]
    bounds = [b for i in prefill for b in (i.start_t_window_s, i.end_t_window_s)]
    assert bounds == pytest.approx([b for span in SHORT_PREFILLS for b in span])
    for interval in prefill:  # no two readings inside 30-50 ms: all of it apportioned
        assert interval.energy_label == "apportioned"
        assert interval.measured_energy_j == 0.0
        assert interval.apportioned_energy_j == pytest.approx(interval.energy_j)
    assert p.prefill.energy_label == "apportioned"
    assert p.prefill.apportioned_energy_j == pytest.approx(p.prefill.energy_j)
    assert p.prefill.duration_s < p.resolution_s
    # The figure is a share of counter steps, not a measurement: within its bound only.
    truth = truth_j(device, SHORT_PREFILLS)
    assert abs(p.prefill.energy_j - truth) <= p.prefill.alignment_uncertainty_j
    # The decode stretches span several counter updates: measured, and close to the truth.
    assert p.decode.energy_label == "counter"
    truth = truth_j(device, SHORT_DECODES)
    assert abs(p.decode.energy_j - truth) <= p.decode.alignment_uncertainty_j
    assert p.conservation_error_j == pytest.approx(0.0, abs=1e-6)


def test_a_device_without_a_counter_is_labelled_power_and_has_no_counter_period():
    device = gpu([(a, b, PREFILL_W) for a, b in PREFILLS] + [(a, b, DECODE_W) for a, b in DECODES])
    timeline, energy = metered(device, STATIC_END_S, counter=False)
    p = split(static_batches(), timeline, energy, "transformers", STATIC_END_S).phases
    assert p.prefill.energy_label == "power" and p.decode.energy_label == "power"
    assert p.counter_update_period_s is None
    assert "interpolated linearly" in (p.apportioned_method or "")
    assert p.prefill.energy_j == pytest.approx(truth_j(device, PREFILLS), rel=0.03)
