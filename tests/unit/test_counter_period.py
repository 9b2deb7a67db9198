"""The energy counter's update period, from scripted clocks and reading streams.

Every stream here is synthetic: a clock that advances a fixed step per call and a counter
that moves in steps of a known period, so the period the probe must find is known exactly.
"""

from __future__ import annotations

import math

import pytest

from llenergymeasure.devices.counter import period_record, probe_counter_periods
from llenergymeasure.devices.counter_period import (
    MIN_SPACINGS,
    infer_counter_period_s,
    infer_counter_periods,
    period_from_stream,
)
from llenergymeasure.devices.rapl import RaplSource
from tests.fakes.powercap import FakePowercap


class StepClock:
    """A clock that advances `step_s` at every call (one call follows every read)."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.now_s = 0.0

    def __call__(self) -> float:
        self.now_s += self.step_s
        return self.now_s


def stepped_counter(clock: StepClock, period_s: float, power_w: float):
    """A counter that moves every `period_s` by the energy of that period."""
    return lambda: math.floor(clock.now_s / period_s + 1e-9) * period_s * power_w


def test_the_period_of_a_stepped_counter_is_found_and_the_probe_stops_early():
    clock = StepClock(0.002)  # a read every 2 ms
    p = infer_counter_period_s(stepped_counter(clock, 0.1, 300.0), clock, duration_s=5.0)
    assert p.null_reason is None and not p.continuous
    assert p.period_s == pytest.approx(0.1, abs=0.002)  # each change known to one read
    assert p.updates == MIN_SPACINGS + 1  # stopped once enough changes were seen
    assert p.probe_s < 1.0  # ~5 periods, not the 5 s allowed
    assert p.read_s == pytest.approx(0.002)
    assert p.min_spacing_s <= p.period_s <= p.max_spacing_s


def test_a_read_delayed_past_an_update_does_not_move_the_median():
    # Reads every 10 ms of a 100 ms counter; one read is late by 100 ms (0.59 -> 0.70),
    # so the updates at 0.6 and 0.7 show as one double step.
    times = [k * 0.01 for k in range(60)] + [0.70 + k * 0.01 for k in range(60)]
    values = [math.floor(t / 0.1 + 1e-9) * 10.0 for t in times]
    p = period_from_stream("gpu:0", times, values)
    assert p.period_s == pytest.approx(0.1)
    assert p.max_spacing_s == pytest.approx(0.2)  # the delayed read, kept in the record


def test_a_counter_that_never_changes_has_no_period_and_says_why():
    clock = StepClock(0.01)
    p = infer_counter_period_s(lambda: 1234.5, clock, duration_s=0.3)
    assert p.period_s is None and p.updates == 0
    assert "did not change" in (p.null_reason or "")
    assert p.probe_s == pytest.approx(0.3, abs=0.011)  # it read for the whole probe


def test_an_unreadable_counter_has_no_period():
    p = infer_counter_period_s(lambda: None, StepClock(0.01), duration_s=0.1)
    assert p.period_s is None and p.null_reason == "the energy counter could not be read"


def test_two_changes_are_too_few():
    times = [k * 0.01 for k in range(30)]
    values = [0.0] * 10 + [1.0] * 10 + [2.0] * 10
    p = period_from_stream("gpu:0", times, values)
    assert p.period_s is None and p.updates == 2
    assert "at least 3 changes" in (p.null_reason or "")


def test_a_counter_that_moves_at_every_read_is_flagged_continuous():
    clock = StepClock(0.001)
    p = infer_counter_period_s(lambda: clock.now_s * 100.0, clock, duration_s=1.0)
    assert p.continuous and p.period_s == pytest.approx(0.001)  # an upper bound


def test_every_device_of_one_read_gets_its_own_period():
    clock = StepClock(0.002)
    fast, slow = stepped_counter(clock, 0.02, 50.0), stepped_counter(clock, 0.1, 300.0)
    periods = infer_counter_periods(
        lambda: {"gpu:0": slow(), "gpu:1": fast(), "gpu:2": None}, clock, duration_s=2.0
    )
    assert periods["gpu:0"].period_s == pytest.approx(0.1, abs=0.002)
    assert periods["gpu:1"].period_s == pytest.approx(0.02, abs=0.002)
    assert periods["gpu:2"].period_s is None
    assert periods["gpu:0"].updates > MIN_SPACINGS  # the probe ran until gpu:0 had enough


def test_the_record_uses_the_measured_period_else_the_nominal_one_labelled():
    measured = period_from_stream("gpu:0", [0.0, 0.1, 0.2, 0.3], [0.0, 1.0, 2.0, 3.0])
    record = period_record(measured, nominal_s=0.1)
    assert record.used == "measured" and record.used_s == pytest.approx(0.1)
    unknown = period_from_stream("gpu:0", [0.0, 0.1], [5.0, 5.0])
    record = period_record(unknown, nominal_s=0.1)
    assert record.period_s is None and record.null_reason
    assert record.used == "nominal" and record.used_s == 0.1


def test_rapl_counters_are_probed_through_the_powercap_files(tmp_path):
    tree = FakePowercap(tmp_path)
    tree.zone("0", "package-0", 0)
    source = RaplSource(tmp_path)
    t = {"now": 0.0}

    def clock() -> float:  # the package counter moves 5 mJ every 2 ms of scripted time
        t["now"] += 0.0005
        tree.set("0", math.floor(t["now"] / 0.002 + 1e-9) * 5_000)
        return t["now"]

    (record,) = probe_counter_periods(source, clock, duration_s=1.0)
    assert record.device == "rapl:package-0" and record.used == "measured"
    assert record.period_s == pytest.approx(0.002, abs=0.0005)
    still = FakePowercap(tmp_path / "still")
    still.zone("0", "package-0", 0)
    (record,) = probe_counter_periods(RaplSource(tmp_path / "still"), StepClock(0.01), 0.2)
    assert record.used == "nominal" and record.used_s == RaplSource.counter_period_s
    assert "did not change" in (record.null_reason or "")
