"""Derived energy figures: idle-adjusted energy, facility energy (PUE), emissions."""

from __future__ import annotations

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices import carbon
from llenergymeasure.results.models import Baseline, Energy, MeterChoice


def finalize_energy(
    energy: Energy,
    baseline: Baseline | None,
    window_s: float,
    measurement: MeasurementConfig,
    choice: MeterChoice,
) -> Energy:
    """Add the baseline-adjusted energy, facility energy, emissions and the meter choice."""
    update: dict[str, object] = {
        "meter_choice": choice,
        "baseline": baseline,
        "pue": measurement.pue,
    }
    if energy.energy_j is None:
        return energy.model_copy(update=update)
    if baseline is not None and baseline.idle_power_w is not None:
        update["adjusted_energy_j"] = max(0.0, energy.energy_j - baseline.idle_power_w * window_s)
        update["per_device"] = [
            d.model_copy(
                update={
                    "idle_power_w": baseline.per_device_w.get(d.device),
                    "adjusted_energy_j": max(
                        0.0, d.energy_j - baseline.per_device_w[d.device] * window_s
                    ),
                }
            )
            if d.energy_j is not None and d.device in baseline.per_device_w
            else d
            for d in energy.per_device
        ]
    facility_j = energy.energy_j * measurement.pue
    update["facility_energy_j"] = facility_j
    intensity, source = carbon.intensity(
        measurement.country_iso_code, measurement.carbon_intensity_g_per_kwh
    )
    if intensity is not None:
        update["carbon_intensity_g_per_kwh"] = intensity
        update["carbon_intensity_source"] = source
        update["emissions_kg"] = carbon.emissions_kg(facility_j, intensity)
    return energy.model_copy(update=update)
