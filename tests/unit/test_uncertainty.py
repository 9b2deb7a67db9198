"""The sensor budget of energy figures (`measure.uncertainty`), part by part."""

from __future__ import annotations

import pytest

from llenergymeasure.devices.base import DeviceSample
from llenergymeasure.devices.counter import power_spread_w
from llenergymeasure.measure.uncertainty import (
    CODECARBON_RELATIVE_ERROR,
    NVML_ACCURACY_W,
    request_budget,
    sub_window_parts,
    with_budget,
)
from llenergymeasure.results.budget import parts_text
from llenergymeasure.results.models import CounterUpdatePeriod, DeviceEnergy, Energy

GPU = "GPU-fa4e0000-0000-0000-0000-000000000000"


def period(device: str, period_s: float | None, updates: int = 6) -> CounterUpdatePeriod:
    """A probe record: measured (period_s), or not (None) after `updates` in 0.6 s."""
    return CounterUpdatePeriod(
        device=device,
        period_s=period_s,
        null_reason=None if period_s is not None else "too few changes",
        method="probe",
        reads=1000,
        updates=updates,
        probe_s=0.6,
        used_s=period_s if period_s is not None else 0.1,
        used="measured" if period_s is not None else "nominal",
    )


def device(**over: object) -> DeviceEnergy:
    data: dict[str, object] = {
        "device": GPU,
        "name": "NVIDIA A100-SXM4-80GB",
        "energy_j": 1000.0,
        "method": "nvml_counter",
        "confidence": "measured",
        "window_start_unix_s": 100.0,
        "window_end_unix_s": 110.0,  # 10 s: mean power 100 W
        "samples": 100,
    }
    return DeviceEnergy.model_validate(data | over)


def energy(*devices: DeviceEnergy, **over: object) -> Energy:
    data: dict[str, object] = {
        "energy_j": sum(d.energy_j or 0.0 for d in devices),
        "method": "nvml",
        "confidence": "measured",
        "interval_s": 0.1,
        "devices": [d.device for d in devices],
        "per_device": list(devices),
    }
    return Energy.model_validate(data | over)


def parts(d: DeviceEnergy) -> dict[str, float]:
    return {p.name: p.bound_j for p in d.uncertainty_parts}


def test_a_counter_lags_one_period_at_each_end_and_nvml_states_5_w():
    out = with_budget(energy(device()), [period(GPU, 0.1)], {}, 10.0)
    (d,) = out.per_device
    assert parts(d) == pytest.approx({"counter_resolution": 20.0, "sensor_accuracy": 50.0})
    assert d.energy_uncertainty_j == pytest.approx(70.0)
    assert out.energy_uncertainty_j == pytest.approx(70.0)
    accuracy = next(p for p in d.uncertainty_parts if p.name == "sensor_accuracy")
    assert "5 watts" in (accuracy.source or "")
    # A slower counter widens the bound in proportion.
    slow = with_budget(energy(device()), [period(GPU, 0.5)], {}, 10.0)
    assert parts(slow.per_device[0])["counter_resolution"] == pytest.approx(100.0)


def test_an_unknown_counter_period_is_null_with_the_reason_never_zero():
    out = with_budget(energy(device()), [], {}, 10.0)
    assert out.energy_uncertainty_j is None
    assert out.uncertainty_null_reason is not None
    assert GPU in out.uncertainty_null_reason and "period" in out.uncertainty_null_reason
    # Not measured, but the probe saw 2 updates in 0.6 s: the period is at most 0.3 s; the
    # nominal 0.1 s is no bound and is not used.
    (d,) = with_budget(energy(device()), [period(GPU, None, updates=2)], {}, 10.0).per_device
    assert parts(d)["counter_resolution"] == pytest.approx(2 * 0.3 * 100.0)
    assert "not measured" in d.uncertainty_parts[0].basis
    none_seen = with_budget(energy(device()), [period(GPU, None, updates=0)], {}, 10.0)
    assert none_seen.energy_uncertainty_j is None


def test_polled_power_is_known_to_its_standard_error():
    polled = device(method="nvml_power_polling", power_std_w=20.0, samples=100)
    (d,) = with_budget(energy(polled), [], {}, 10.0).per_device
    # 20 W / sqrt(100) x 10 s = 20 J, plus 5 W x 10 s.
    assert parts(d) == pytest.approx({"polling_coverage": 20.0, "sensor_accuracy": 50.0})
    few = device(method="nvml_power_polling", power_std_w=20.0, samples=1)
    out = with_budget(energy(few), [], {}, 10.0)
    assert out.energy_uncertainty_j is None and "1 power samples" in str(
        out.uncertainty_null_reason
    )


def test_a_trailing_average_reading_runs_half_a_second_late():
    averaged = device(
        method="nvml_power_polling",
        power_std_w=0.0,
        power_field="nvml_power_usage (~1 s moving average on Ampere and later)",
        max_power_w=300.0,
    )
    (d,) = with_budget(energy(averaged), [], {}, 10.0).per_device
    assert parts(d)["averaging_lag"] == pytest.approx(0.5 * 300.0)
    instant = device(method="nvml_power_polling", power_std_w=0.0, power_field="nvml_power_instant")
    assert "averaging_lag" not in parts(with_budget(energy(instant), [], {}, 10.0).per_device[0])


def test_rapl_states_no_accuracy_so_none_is_added():
    rapl = device(device="rapl:package-0", name="package-0", method="rapl")
    (d,) = with_budget(
        energy(rapl, method="rapl"), [period("rapl:package-0", 0.001)], {}, 10.0
    ).per_device
    assert parts(d) == pytest.approx({"counter_resolution": 2 * 0.001 * 100.0})


def test_adjusted_energy_adds_the_idle_baselines_spread():
    adjusted = device(idle_power_w=50.0, adjusted_energy_j=500.0)
    out = with_budget(
        energy(adjusted, adjusted_energy_j=500.0), [period(GPU, 0.1)], {GPU: 2.0}, 10.0
    )
    (d,) = out.per_device
    assert parts(d)["idle_baseline_spread"] == pytest.approx(20.0)
    assert d.adjusted_energy_uncertainty_j == pytest.approx(90.0)
    assert out.adjusted_energy_uncertainty_j == pytest.approx(90.0)
    assert out.energy_uncertainty_j == pytest.approx(70.0)  # the raw energy has no idle part
    unknown = with_budget(energy(adjusted, adjusted_energy_j=500.0), [period(GPU, 0.1)], {}, 10.0)
    assert unknown.adjusted_energy_uncertainty_j is None
    assert unknown.energy_uncertainty_j == pytest.approx(70.0)


def test_two_devices_add_and_their_parts_are_summed_by_name():
    other = device(device="GPU-fa4e0000-0000-0000-0000-000000000001", energy_j=2000.0)
    out = with_budget(
        energy(device(), other), [period(GPU, 0.1), period(other.device, 0.1)], {}, 10.0
    )
    assert out.energy_uncertainty_j == pytest.approx(70.0 + 90.0)
    by_name = {p.name: p.bound_j for p in out.uncertainty_parts}
    assert by_name == pytest.approx({"counter_resolution": 60.0, "sensor_accuracy": 100.0})
    assert parts_text(out.uncertainty_parts) == "counter_resolution=60 J; sensor_accuracy=100 J"


def test_codecarbon_is_an_estimate_of_plus_minus_half():
    estimate = Energy(
        energy_j=400.0,
        method="codecarbon",
        confidence="estimated",
        interval_s=1.0,
        devices=["cpu"],
        pue=1.5,
        facility_energy_j=600.0,
    )
    out = with_budget(estimate, [], {}, 10.0)
    assert out.energy_uncertainty_j == pytest.approx(CODECARBON_RELATIVE_ERROR * 400.0)
    assert out.facility_energy_uncertainty_j == pytest.approx(CODECARBON_RELATIVE_ERROR * 600.0)
    (part,) = out.uncertainty_parts
    assert part.name == "estimate_error" and "TDP" in (part.source or "")


def test_a_null_energy_has_no_budget_and_a_rerun_of_the_budget_forgets_stale_values():
    unknown = Energy(
        energy_j=None,
        null_reason="no meter",
        method="none",
        confidence=None,
        interval_s=None,
        devices=[],
    )
    assert with_budget(unknown, [], {}, 10.0).energy_uncertainty_j is None
    budgeted = with_budget(energy(device()), [period(GPU, 0.1)], {}, 10.0)
    again = with_budget(budgeted, [], {}, 10.0)  # the period is no longer known
    assert again.energy_uncertainty_j is None and again.per_device[0].uncertainty_parts == []


def test_sub_window_figures_and_requests():
    budgeted = with_budget(energy(device()), [period(GPU, 0.1)], {}, 10.0)
    cut = {p.name: p.bound_j for p in sub_window_parts(budgeted, 2.0, 3.0)}
    assert cut == pytest.approx({"boundary_alignment": 3.0, "sensor_accuracy": 2 * NVML_ACCURACY_W})
    assert request_budget(100.0, budgeted) == pytest.approx(7.0)  # a tenth of the window's


def test_power_spread_comes_from_counter_steps_without_polled_power():
    steps = [DeviceSample("rapl:package-0", t / 10, energy_j=t * 10.0) for t in range(5)]
    assert power_spread_w(steps) == pytest.approx(0.0)  # a constant 100 W
    uneven = [
        DeviceSample("d", 0.0, energy_j=0.0),
        DeviceSample("d", 1.0, energy_j=100.0),
        DeviceSample("d", 2.0, energy_j=300.0),
    ]
    assert power_spread_w(uneven) == pytest.approx(70.710678, rel=1e-6)  # stdev(100, 200)
    assert power_spread_w(uneven[:2]) is None
