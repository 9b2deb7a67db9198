"""Phase split, per-request energy and steady state on synthetic token events and timelines.

Each timeline is synthetic with an exact truth: samples of a power curve and of the counter
that integrates it, so the energy of any interval is known in closed form.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from llenergymeasure.backends.base import RequestTiming
from llenergymeasure.devices.base import DeviceInfo, DeviceSample
from llenergymeasure.measure.breakdown import energy_breakdown
from llenergymeasure.measure.energy_timeline import EnergyTimeline, device_curve
from llenergymeasure.measure.phases import split_window, token_steps
from llenergymeasure.measure.steady_state import pass_window, steady_state
from llenergymeasure.results.models import DeviceEnergy, Energy

T0_UNIX = 1_700_000_000.0  # the synthetic timeline's clock; requests run on perf time 0..
INSTANT = DeviceInfo("gpu:0", "fake", True, True, power_field="nvml_power_instant")


def req(index, submit_s, times, batch=0, input_tokens=10, chunks=None):
    return RequestTiming(
        index=index,
        batch_index=batch,
        input_tokens=input_tokens,
        arrival_s=0.0,
        submit_s=submit_s,
        token_times_s=tuple(times),
        output_ids=tuple(range(len(times))),
        stopped_by_eos=False,
        chunk_sizes=chunks,
    )


def timeline_of(
    energy_at: Callable[[float], float],
    power_at: Callable[[float], float] | None,
    sample_times: np.ndarray,
    counter: bool = True,
    device: str = "gpu:0",
) -> tuple[EnergyTimeline, DeviceEnergy]:
    """A synthetic device sampled at `sample_times` (seconds after T0_UNIX)."""
    samples = [
        DeviceSample(
            device=device,
            t_s=T0_UNIX + t,
            energy_j=energy_at(t) if counter else None,
            power_w=power_at(t) if power_at else None,
        )
        for t in sample_times
    ]
    t_end = float(sample_times[-1])
    energy = DeviceEnergy(
        device=device,
        name="fake",
        energy_j=energy_at(t_end) - energy_at(0.0),
        method="nvml_counter" if counter else "nvml_power_polling",
        confidence="measured",
        window_start_unix_s=T0_UNIX,
        window_end_unix_s=T0_UNIX + t_end,
        counter_begin_j=energy_at(0.0) if counter else None,
        counter_end_j=energy_at(t_end) if counter else None,
    )
    curve = device_curve(energy, INSTANT, samples, 0.1, 0.1)
    assert curve is not None
    return EnergyTimeline((curve,)), energy


def window_energy(*devices: DeviceEnergy) -> Energy:
    return Energy(
        energy_j=sum(d.energy_j or 0.0 for d in devices),
        method="nvml",
        confidence="measured",
        interval_s=0.1,
        devices=[d.device for d in devices],
        per_device=list(devices),
    )


def breakdown(passes, timeline, energy, backend="transformers", max_num_seqs=2, end_s=1.2):
    return energy_breakdown(
        backend=backend,
        max_num_seqs=max_num_seqs,
        passes=passes,
        window_perf_s=(0.0, end_s),
        perf_to_unix_s=T0_UNIX,
        window_start_unix_s=T0_UNIX,
        energy=energy,
        timeline=timeline,
        timeline_null_reason=None if timeline else "meter 'codecarbon' has no power timeline",
        output_tokens=sum(len(t.token_times_s) for p in passes for t in p),
    )


# Two static batches: [0.1 submit, 0.3 first token, 0.5 last], [0.7, 0.9, 1.1]
STATIC = [
    [
        req(0, 0.1, [0.3, 0.4, 0.5]),
        req(1, 0.1, [0.3, 0.4]),  # stopped early: its batch decodes on
        req(2, 0.7, [0.9, 1.0, 1.1], batch=1, input_tokens=20),
    ]
]


def ramp_energy(t: float) -> float:
    return 100 * t + 25 * t * t  # power 100 + 50 t W: linear, so interpolation is exact


def test_static_batches_split_matches_the_exact_integral():
    samples = np.arange(0.0, 1.2001, 0.1) + 0.037  # not aligned with any token event
    samples = np.concatenate([[0.0], samples[samples < 1.2], [1.2]])
    timeline, device = timeline_of(ramp_energy, lambda t: 100 + 50 * t, samples)
    b = breakdown(STATIC, timeline, window_energy(device))
    p = b.phases

    def span(a, z):
        return ramp_energy(z) - ramp_energy(a)

    assert p.method == "static_batches"
    assert p.prefill.duration_s == pytest.approx(0.2 + 0.2)
    assert p.decode.duration_s == pytest.approx(0.2 + 0.2)
    assert p.idle.duration_s == pytest.approx(0.1 + 0.2 + 0.1)
    assert p.prefill.energy_j == pytest.approx(span(0.1, 0.3) + span(0.7, 0.9), rel=1e-6)
    assert p.decode.energy_j == pytest.approx(span(0.3, 0.5) + span(0.9, 1.1), rel=1e-6)
    assert p.idle.energy_j == pytest.approx(
        span(0, 0.1) + span(0.5, 0.7) + span(1.1, 1.2), rel=1e-6
    )
    assert p.conservation_error_j == pytest.approx(0.0, abs=1e-6)
    assert p.prefill.output_tokens == 3 and p.decode.output_tokens == 5
    assert p.prefill.input_tokens == 40
    assert p.prefill.energy_per_token_j == pytest.approx(p.prefill.energy_j / 40)
    assert p.decode.energy_per_token_j == pytest.approx(p.decode.energy_j / 5)
    assert [i.phase for i in p.intervals] == [
        "idle",
        "prefill",
        "decode",
        "idle",
        "prefill",
        "decode",
        "idle",
    ]
    assert p.prefill.stretches == 2 and p.idle.stretches == 3
    assert p.mixed_prefill_steps == 0
    assert 0 < p.prefill.alignment_uncertainty_j < p.prefill.energy_j * 1.5


def test_request_energies_follow_the_tokens_and_sum_to_the_window():
    samples = np.linspace(0.0, 1.2, 13)
    timeline, device = timeline_of(ramp_energy, lambda t: 100 + 50 * t, samples)
    b = breakdown(STATIC, timeline, window_energy(device))
    shares = b.request_energy_j
    assert sum(shares.values()) == pytest.approx(device.energy_j, rel=1e-9)
    assert b.phases.request_energy_total_j == pytest.approx(device.energy_j)

    def span(a, z):
        return ramp_energy(z) - ramp_energy(a)

    idle = span(0, 0.1) + span(0.5, 0.7) + span(1.1, 1.2)
    # request 0: half of 0.1-0.3 and 0.3-0.4 (shared with request 1), all of 0.4-0.5
    expected_0 = (span(0.1, 0.3) + span(0.3, 0.4)) / 2 + span(0.4, 0.5) + idle * 3 / 8
    expected_2 = span(0.7, 1.1) + idle * 3 / 8
    assert shares[(0, 0)] == pytest.approx(expected_0, rel=1e-6)
    assert shares[(0, 2)] == pytest.approx(expected_2, rel=1e-6)


def test_a_counter_that_updates_slowly_anchors_only_where_it_advances():
    samples = np.linspace(0.0, 1.2, 25)  # every 50 ms; the counter moves every 150 ms

    def stale(t):
        return ramp_energy(np.floor(t / 0.15 + 1e-9) * 0.15)

    timeline, device = timeline_of(stale, lambda t: 100 + 50 * t, samples)
    b = breakdown(STATIC, timeline, window_energy(device))
    assert b.phases.conservation_error_j == pytest.approx(0.0, abs=1e-6)
    truth = ramp_energy(0.3) - ramp_energy(0.1) + ramp_energy(0.9) - ramp_energy(0.7)
    # Anchors lag the true energy by up to one counter period: within the uncertainty.
    assert abs(b.phases.prefill.energy_j - truth) <= b.phases.prefill.alignment_uncertainty_j


def test_power_only_device_integrates_power_and_conserves():
    samples = np.linspace(0.0, 1.2, 13)
    timeline, device = timeline_of(ramp_energy, lambda t: 100 + 50 * t, samples, counter=False)
    device = device.model_copy(update={"energy_j": timeline.between(T0_UNIX, T0_UNIX + 1.2)})
    b = breakdown(STATIC, timeline, window_energy(device))
    assert "polled power integrated" in (b.phases.energy_method or "")
    assert b.phases.prefill.energy_j == pytest.approx(
        ramp_energy(0.3) - ramp_energy(0.1) + ramp_energy(0.9) - ramp_energy(0.7), rel=1e-6
    )
    assert b.phases.conservation_error_j == pytest.approx(0.0, abs=1e-6)


# Continuous batching, capacity 2, four requests submitted at 0 (steps every 0.1 s):
# r0, r1 prefilled in the step ending 0.1; r0 ends at 0.4, r2 is prefilled in the step
# 0.4-0.5 with r1's last token (mixed); r3 in 0.5-0.6 with r2's decode (mixed).
CONTINUOUS = [
    [
        req(0, 0.0, [0.1, 0.2, 0.3, 0.4]),
        req(1, 0.0, [0.1, 0.2, 0.3, 0.4, 0.5]),
        req(2, 0.0, [0.5, 0.6, 0.7, 0.8]),
        req(3, 0.0, [0.6, 0.7, 0.8, 0.9]),
    ]
]


def test_continuous_batching_steps_are_prefill_when_a_first_token_arrives():
    samples = np.linspace(0.0, 1.0, 11)
    timeline, device = timeline_of(ramp_energy, lambda t: 100 + 50 * t, samples)
    b = breakdown(CONTINUOUS, timeline, window_energy(device), backend="vllm", end_s=1.0)
    p = b.phases
    assert p.method == "token_events"
    assert [(i.phase, round(i.start_t_window_s, 3)) for i in p.intervals] == [
        ("prefill", 0.0),
        ("decode", 0.1),
        ("prefill", 0.4),
        ("decode", 0.6),
        ("idle", 0.9),
    ]
    assert p.prefill.duration_s == pytest.approx(0.3)
    assert p.mixed_prefill_steps == 2 and p.mixed_prefill_s == pytest.approx(0.2)
    assert p.prefill.energy_j == pytest.approx(
        ramp_energy(0.1) + ramp_energy(0.6) - ramp_energy(0.4), rel=1e-6
    )
    assert p.conservation_error_j == pytest.approx(0.0, abs=1e-6)
    assert sum(b.request_energy_j.values()) == pytest.approx(device.energy_j)


def test_steady_state_from_fill_to_drain():
    samples = np.linspace(0.0, 1.0, 11)
    timeline, device = timeline_of(ramp_energy, lambda t: 100 + 50 * t, samples)
    b = breakdown(CONTINUOUS, timeline, window_energy(device), backend="vllm", end_s=1.0)
    s = b.steady
    assert s.null_reason is None and s.windows == 1
    assert (s.start_t_window_s, s.end_t_window_s) == pytest.approx((0.0, 0.8))
    assert s.peak_running == 2 and s.mean_running == pytest.approx(2.0)
    assert s.saturation == pytest.approx(1.0) and s.unsaturated is False
    assert s.short is True  # 0.8 s < 20 s
    assert s.output_tokens == 16  # all 17 but r3's last (at 0.9, after the drain began)
    assert s.energy_j == pytest.approx(ramp_energy(0.8), rel=1e-6)
    assert s.energy_per_output_token_j == pytest.approx(ramp_energy(0.8) / 16)
    assert s.window_energy_per_output_token_j == pytest.approx(device.energy_j / 17)


def unloaded(backend, max_num_seqs, per_pass, split, reason=None):
    """The steady state without an energy timeline."""
    return steady_state(
        backend=backend,
        max_num_seqs=max_num_seqs,
        requests_per_pass=per_pass,
        timeline=split,
        energy_between=None,
        energy_null_reason=reason,
        to_window_s=lambda t: t,
        window_energy_per_output_token_j=None,
    )


def test_unsaturated_steady_state_is_flagged():
    # Capacity 4, requests trickle in: never more than 2 run at once.
    passes = [[req(i, 0.3 * i, [0.3 * i + 0.1 * k for k in range(1, 6)]) for i in range(6)]]
    split = split_window(passes, 0.0, 2.5)
    s = unloaded("vllm", 4, 6, split, "no timeline")
    assert s.peak_running == 2
    assert s.saturation is not None and s.saturation < 0.85
    assert s.unsaturated is True
    assert s.energy_j is None and s.energy_null_reason == "no timeline"


def test_steady_state_applies_only_to_continuous_batching_under_load():
    split = split_window(CONTINUOUS, 0.0, 1.0)
    static = unloaded("transformers", 2, 4, split)
    assert static.null_reason and "static batches" in static.null_reason
    light = unloaded("vllm", 4, 4, split)
    assert light.null_reason and "not more than max_num_seqs = 4" in light.null_reason


def test_pass_window_counts_a_refill_in_one_instant_as_full():
    window = pass_window([(0.0, 1.0), (0.0, 0.5), (0.5, 1.5), (1.0, 2.0)])
    assert window is not None and (window.start_s, window.end_s) == (0.0, 1.5)
    assert window.running_s == pytest.approx(3.0)


def test_arrivals_within_a_millisecond_are_one_step():
    passes = [[req(0, 0.0, [0.1000, 0.2]), req(1, 0.0, [0.1004, 0.2003])]]
    steps = token_steps(passes)
    assert [round(s.time_s, 4) for s in steps] == [0.1004, 0.2003]
    assert steps[0].first == {(0, 0), (0, 1)}


def test_chunks_count_their_tokens_at_one_arrival():
    passes = [[req(0, 0.0, [0.1, 0.3, 0.3, 0.3], chunks=(1, 3))]]
    split = split_window(passes, 0.0, 0.4)
    assert [(i.phase, dict(i.tokens)) for i in split.intervals] == [
        ("prefill", {(0, 0): 1}),
        ("decode", {(0, 0): 3}),
        ("idle", {}),
    ]


def test_without_a_timeline_times_are_kept_and_every_energy_is_null_with_the_reason():
    b = breakdown(STATIC, None, window_energy())
    p = b.phases
    reason = "meter 'codecarbon' has no power timeline"
    assert p.energy_null_reason == reason and p.energy_method is None
    assert p.prefill.duration_s == pytest.approx(0.4)
    for phase in (p.prefill, p.decode, p.idle):
        assert phase.energy_j is None and phase.energy_per_token_j is None
        assert phase.alignment_uncertainty_j is None
    assert p.conservation_error_j is None and p.request_energy_total_j is None
    assert all(i.energy_j is None for i in p.intervals)
    assert b.request_energy_j == {} and b.request_null_reason == reason


def test_resolution_and_method_follow_what_the_device_exposes():
    samples = np.linspace(0.0, 1.2, 13)
    _, counted = timeline_of(ramp_energy, None, samples)
    raw = [DeviceSample(device="gpu:0", t_s=T0_UNIX + t, energy_j=ramp_energy(t)) for t in samples]
    rapl_like = device_curve(counted, None, raw, 0.1, 0.001)
    assert rapl_like is not None and "linear in time" in rapl_like.method
    assert rapl_like.resolution_s == 0.1
    averaged = DeviceInfo("gpu:0", "fake", False, True, power_field="nvml_power_usage (~1 s)")
    powered = [DeviceSample(device="gpu:0", t_s=T0_UNIX + t, power_w=100.0) for t in samples]
    polled = counted.model_copy(update={"counter_begin_j": None, "counter_end_j": None})
    curve = device_curve(polled, averaged, powered, 0.1, 0.1)
    assert curve is not None and curve.resolution_s == 1.0
    assert "polled power integrated" in curve.method
    assert device_curve(polled, averaged, powered[:1], 0.1, 0.1) is None  # nothing to integrate
