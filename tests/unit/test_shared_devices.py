"""A device (or machine) several ranks measured: its energy over their union, against truth.

Two ranks poll one GPU without an energy counter at 10 Hz, with their own phases, over
overlapping but different windows. The GPU's power is a scripted piecewise-linear curve,
so the energy over the union is known exactly, and so is the trapezoid's error: zero on
each linear piece, at most ``|slope change| * h**2 / 8`` around a kink inside a sampling
interval of length ``h``.
"""

from __future__ import annotations

from itertools import pairwise

import pytest

from llenergymeasure.devices.base import DeviceSample
from llenergymeasure.devices.counter import trapezoid_j
from llenergymeasure.measure.energy import adjust_for_idle
from llenergymeasure.measure.shared_devices import device_union, machine_union
from llenergymeasure.results.models import DeviceEnergy, Energy

T0 = 1.7e9  # Unix time of the script's t = 0
GPU = "GPU-fa4e0000-0000-0000-0000-000000000000"
IDLE_W = 90.0
# (t_s, power_w): idle level, a ramp up while both ranks run, a plateau, a fall, a plateau
SCRIPT = [(0.0, 100.0), (12.0, 100.0), (14.0, 300.0), (16.5, 250.0), (17.0, 180.0), (30.0, 180.0)]


def power_w(t_s: float) -> float:
    """The scripted power at Unix time `t_s` (linear between points)."""
    t = t_s - T0
    for (a, pa), (b, pb) in pairwise(SCRIPT):
        if a <= t <= b:
            return pa + (pb - pa) * (t - a) / (b - a)
    raise ValueError(t)


def truth_j(start_s: float, end_s: float) -> float:
    """The exact integral of the script over [start_s, end_s] (Unix s)."""
    a, b = start_s - T0, end_s - T0
    cuts = sorted({a, b, *(t for t, _ in SCRIPT if a < t < b)})
    return sum((t1 - t0) * (power_w(T0 + t0) + power_w(T0 + t1)) / 2 for t0, t1 in pairwise(cuts))


def discretisation_bound_j(gap_s: float) -> float:
    """The trapezoid's largest error over the script: every kink inside a `gap_s` interval."""
    slopes = [(pb - pa) / (b - a) for (a, pa), (b, pb) in pairwise(SCRIPT)]
    return sum(abs(m1 - m0) for m0, m1 in pairwise(slopes)) * gap_s**2 / 8


def sample(t_s: float, *, readable: bool = True) -> DeviceSample:
    return DeviceSample(device=GPU, t_s=t_s, power_w=power_w(t_s) if readable else None)


class Rank:
    """One rank's sampler: 10 Hz from `first_s` to `last_s` with its own phase, plus the
    exact boundary samples (`Sampler.mark`) at its window's start and end."""

    def __init__(self, first_s: float, last_s: float, window: tuple[float, float]) -> None:
        n = int((last_s - first_s) / 0.1) + 1
        self.window = (T0 + window[0], T0 + window[1])
        self.samples = sorted(
            [sample(T0 + first_s + 0.1 * k) for k in range(n)] + [sample(t) for t in self.window],
            key=lambda s: s.t_s,
        )

    def record(self) -> DeviceEnergy:
        """Its own polled record of the GPU, as `CounterMeter` writes it (no counter)."""
        start_s, end_s = self.window
        own = [s for s in self.samples if start_s <= s.t_s <= end_s]
        return DeviceEnergy(
            device=GPU,
            name="NVIDIA A100-SXM4-80GB",
            energy_j=trapezoid_j(own),
            method="nvml_power_polling",
            confidence="measured",
            samples=len(own),
            window_start_unix_s=start_s,
            window_end_unix_s=end_s,
        )


# Rank 0 opens the union, rank 1 (the wider window) closes it: union [10, 17.62].
RANK_0 = Rank(5.03, 16.43, (10.0, 16.0))
RANK_1 = Rank(6.07, 18.0, (11.35, 17.62))
UNION = (T0 + 10.0, T0 + 17.62)


def adjusted(device: DeviceEnergy) -> DeviceEnergy:
    """The device after idle adjustment, as the aggregation does it."""
    energy = Energy(
        energy_j=device.energy_j,
        method="nvml",
        confidence="measured",
        interval_s=0.1,
        devices=[GPU],
        per_device=[device],
    )
    (out,) = adjust_for_idle(energy, {GPU: IDLE_W}, None, UNION[1] - UNION[0]).per_device
    return out


def test_two_ranks_sharing_a_polling_only_gpu_give_its_energy_over_the_union():
    union = device_union([RANK_0.record(), RANK_1.record()], [*RANK_1.samples, *RANK_0.samples])
    bound_j = discretisation_bound_j(0.1)
    assert (union.window_start_unix_s, union.window_end_unix_s) == UNION
    assert union.energy_j == pytest.approx(truth_j(*UNION), abs=bound_j)
    assert union.confidence == "measured" and union.null_reason is None
    assert union.samples == len(
        {s.t_s for s in [*RANK_0.samples, *RANK_1.samples] if UNION[0] <= s.t_s <= UNION[1]}
    )
    assert "the power every rank polled" in union.notes[-1]
    assert "interpolated" not in union.notes[-1], "both ends are the ranks' boundary samples"

    union = adjusted(union)
    idle_j = IDLE_W * (UNION[1] - UNION[0])
    assert union.adjusted_energy_j == pytest.approx(union.energy_j - idle_j, rel=1e-12)
    assert union.adjusted_energy_j == pytest.approx(truth_j(*UNION) - idle_j, abs=bound_j)


def test_the_widest_rank_alone_over_the_union_would_be_biased_low():
    widest = RANK_1.record()  # the old aggregation: its energy, idle over the union
    old_adjusted_j = widest.energy_j - IDLE_W * (UNION[1] - UNION[0])
    truth_adjusted_j = truth_j(*UNION) - IDLE_W * (UNION[1] - UNION[0])
    missed_j = truth_j(UNION[0], widest.window_start_unix_s)  # rank 0's lead: 1.35 s at 100 W
    bound_j = discretisation_bound_j(0.1)
    assert truth_adjusted_j - old_adjusted_j == pytest.approx(missed_j, abs=bound_j)
    assert missed_j > 100 * bound_j
    union = adjusted(device_union([RANK_0.record(), widest], [*RANK_0.samples, *RANK_1.samples]))
    assert union.adjusted_energy_j - old_adjusted_j == pytest.approx(missed_j, abs=2 * bound_j)


def test_a_boundary_sample_without_power_is_interpolated_between_its_neighbours():
    # Rank 0's opening sample read no power: the union's start falls between two samples
    # on a linear piece of the script, so the interpolated power there is exact.
    samples = [
        sample(s.t_s, readable=s.t_s != UNION[0]) for s in [*RANK_0.samples, *RANK_1.samples]
    ]
    union = device_union([RANK_0.record(), RANK_1.record()], samples)
    assert (union.window_start_unix_s, union.window_end_unix_s) == UNION
    assert union.energy_j == pytest.approx(truth_j(*UNION), abs=discretisation_bound_j(0.1))
    assert "1 end(s) of the union had no power sample" in union.notes[-1]


def test_samples_that_do_not_reach_the_end_of_the_union_give_null_with_the_reason():
    # Rank 1's timeline is missing: rank 0's samples stop at 16.43, before the union ends.
    union = device_union([RANK_0.record(), RANK_1.record()], RANK_0.samples)
    assert union.energy_j is None and union.confidence is None
    assert "do not reach both ends of the union" in union.null_reason
    assert union.window_end_unix_s == UNION[1]
    energy = Energy(
        energy_j=None,
        null_reason=union.null_reason,
        method="nvml",
        confidence=None,
        interval_s=0.1,
        devices=[GPU],
        per_device=[union],
    )
    out = adjust_for_idle(energy, {GPU: IDLE_W}, None, UNION[1] - UNION[0])
    assert out.adjusted_energy_j is None and out.per_device[0].adjusted_energy_j is None


def test_a_shared_gpu_with_a_counter_spans_the_earliest_to_the_latest_reading():
    def counted(rank: Rank) -> DeviceEnergy:
        start_s, end_s = rank.window
        return rank.record().model_copy(
            update={
                "method": "nvml_counter",
                "counter_begin_j": 5000.0 + truth_j(T0, start_s),
                "counter_end_j": 5000.0 + truth_j(T0, end_s),
            }
        )

    union = device_union([counted(RANK_0), counted(RANK_1)], [*RANK_0.samples, *RANK_1.samples])
    assert union.energy_j == pytest.approx(truth_j(*UNION), rel=1e-12)
    assert union.polled_energy_j == pytest.approx(truth_j(*UNION), abs=discretisation_bound_j(0.1))
    assert adjusted(union).adjusted_energy_j == pytest.approx(
        truth_j(*UNION) - IDLE_W * (UNION[1] - UNION[0]), rel=1e-12
    )


def test_counters_unwrapped_on_different_bases_give_null_with_the_reason():
    # A RAPL-like counter of range 262144 J, unwrapped by each rank from its own start: it
    # wrapped after rank 0 started counting and before rank 1 did, so rank 1's readings
    # are one range below rank 0's. Mixing them would give the union ~262 kJ too little.
    range_j = 262_144.0

    def counted(rank: Rank, offset_j: float) -> DeviceEnergy:
        start_s, end_s = rank.window
        return rank.record().model_copy(
            update={
                "method": "rapl_counter",
                "counter_begin_j": offset_j + truth_j(T0, start_s),
                "counter_end_j": offset_j + truth_j(T0, end_s),
            }
        )

    readings = [counted(RANK_0, range_j), counted(RANK_1, 0.0)]
    union = device_union(readings, [])
    assert union.energy_j is None and union.confidence is None
    assert "do not rise with time" in union.null_reason
    assert adjusted(union).adjusted_energy_j is None
    same_basis = device_union([counted(RANK_0, range_j), counted(RANK_1, range_j)], [])
    assert same_basis.energy_j == pytest.approx(truth_j(*UNION), rel=1e-12)


# CodeCarbon: one estimate per rank over its own tracker window, no samples. Its estimate
# (a TDP share where it cannot read power) is a constant machine power.
MACHINE_W = {"cpu": 100.0, "gpu": 120.0, "ram": 30.0}
MACHINE_IDLE_W = 80.0


def estimate(start_s: float, end_s: float) -> Energy:
    span_s = end_s - start_s
    return Energy(
        energy_j=sum(MACHINE_W.values()) * span_s,
        method="codecarbon",
        confidence="estimated",
        interval_s=15.0,
        devices=["machine"],
        components_j={k: w * span_s for k, w in MACHINE_W.items()},
        meter_duration_s=span_s,
    )


@pytest.mark.parametrize(
    ("windows", "widest"),
    [
        ([(0.0, 10.0), (2.0, 14.0)], 1),  # the widest misses [0, 2]: rank 0 fills it
        ([(0.0, 10.0), (2.0, 14.0), (-3.0, 1.0)], 1),  # [-3, 0] from rank 2, [0, 2] rank 0
        ([(0.0, 10.0), (2.0, 8.0)], 0),  # one tracker covered the union
    ],
)
def test_a_machine_estimate_per_rank_gives_the_machine_over_the_union(windows, widest):
    windows = [(T0 + a, T0 + b) for a, b in windows]
    union_s = max(b for _, b in windows) - min(a for a, _ in windows)
    energy = machine_union([estimate(a, b) for a, b in windows], windows)
    assert energy.energy_j == pytest.approx(sum(MACHINE_W.values()) * union_s, rel=1e-9)
    assert energy.components_j == pytest.approx({k: w * union_s for k, w in MACHINE_W.items()})
    assert energy.meter_duration_s == pytest.approx(union_s)
    assert f"rank {widest}'s" in energy.notes[-1]
    out = adjust_for_idle(energy, {}, MACHINE_IDLE_W, union_s)
    truth_j = (sum(MACHINE_W.values()) - MACHINE_IDLE_W) * union_s
    assert out.adjusted_energy_j == pytest.approx(truth_j, rel=1e-9)
    a, b = windows[widest]
    old_j = sum(MACHINE_W.values()) * (b - a) - MACHINE_IDLE_W * union_s  # the widest alone
    assert (old_j < truth_j - 100.0) == (b - a < union_s)


def test_a_part_of_the_union_no_tracker_covered_gives_null_with_the_reason():
    windows = [(T0, T0 + 5.0), (T0 + 6.0, T0 + 10.5)]
    energy = machine_union([estimate(a, b) for a, b in windows], windows)
    assert energy.energy_j is None and energy.confidence is None and energy.components_j == {}
    assert energy.null_reason.startswith("no rank's tracker covered 1 s of the union")
    assert adjust_for_idle(energy, {}, MACHINE_IDLE_W, 10.5).adjusted_energy_j is None


def test_a_null_estimate_the_union_needs_gives_null_with_its_reason():
    windows = [(T0, T0 + 10.0), (T0 + 2.0, T0 + 14.0)]
    missing = estimate(*windows[0]).model_copy(
        update={"energy_j": None, "null_reason": "codecarbon tracker failed"}
    )
    energy = machine_union([missing, estimate(*windows[1])], windows)
    assert energy.energy_j is None and energy.null_reason == "codecarbon tracker failed"
