"""Idle-adjusted energy: per device, over each device's own window, never clamped to 0."""

from __future__ import annotations

import pytest

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.measure.energy import adjust_for_idle, with_facility
from llenergymeasure.results.models import DeviceEnergy, Energy


def device(name: str, energy_j: float, start_s: float, end_s: float) -> DeviceEnergy:
    return DeviceEnergy(
        device=name,
        name=name,
        energy_j=energy_j,
        method="nvml_counter",
        confidence="measured",
        window_start_unix_s=start_s,
        window_end_unix_s=end_s,
    )


def energy(*devices: DeviceEnergy, total_j: float | None = None) -> Energy:
    return Energy(
        energy_j=sum(d.energy_j or 0 for d in devices) if total_j is None else total_j,
        method="nvml" if devices else "codecarbon",
        confidence="measured" if devices else "estimated",
        interval_s=0.1,
        devices=[d.device for d in devices],
        per_device=list(devices),
    )


def test_each_device_subtracts_its_own_idle_over_its_own_window():
    e = energy(device("gpu:0", 1000.0, 0.0, 4.0), device("gpu:1", 900.0, 1.0, 3.0))
    adjusted = adjust_for_idle(e, {"gpu:0": 100.0, "gpu:1": 50.0}, 150.0, window_s=4.0)
    gpu0, gpu1 = adjusted.per_device
    assert gpu0.adjusted_energy_j == pytest.approx(1000 - 100 * 4)
    assert gpu1.adjusted_energy_j == pytest.approx(900 - 50 * 2)
    assert adjusted.adjusted_energy_j == pytest.approx(600 + 800)
    assert adjusted.adjusted_null_reason is None


def test_idle_above_the_window_energy_gives_null_with_the_reason_not_zero():
    e = energy(device("gpu:0", 100.0, 0.0, 2.0))
    adjusted = adjust_for_idle(e, {"gpu:0": 80.0}, 80.0, window_s=2.0)
    assert adjusted.adjusted_energy_j is None and adjusted.per_device[0].adjusted_energy_j is None
    assert "exceeds the measured 100 J" in adjusted.adjusted_null_reason
    machine = adjust_for_idle(energy(total_j=10.0), {}, 8.0, window_s=2.0)
    assert machine.adjusted_energy_j is None and "exceeds" in machine.adjusted_null_reason


def test_a_device_without_its_own_baseline_makes_the_total_null():
    e = energy(device("gpu:0", 100.0, 0.0, 1.0), device("gpu:1", 100.0, 0.0, 1.0))
    adjusted = adjust_for_idle(e, {"gpu:0": 10.0}, 10.0, window_s=1.0)
    assert adjusted.adjusted_energy_j is None
    assert adjusted.adjusted_null_reason == "no idle baseline of gpu:1"


def test_facility_energy_and_emissions_follow_the_energy():
    measurement = MeasurementConfig(pue=1.2, carbon_intensity_g_per_kwh=500.0)
    out = with_facility(energy(total_j=3.6e6), measurement)
    assert out.facility_energy_j == pytest.approx(1.2 * 3.6e6)
    assert out.emissions_kg == pytest.approx(1.2 * 0.5)
