"""Derived energy figures: idle-adjusted energy, facility energy (PUE), emissions."""

from __future__ import annotations

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices import carbon
from llenergymeasure.results.models import DeviceEnergy, Energy


def _above_idle(energy_j: float, idle_w: float, span_s: float) -> tuple[float | None, str | None]:
    idle_j = idle_w * span_s
    if idle_j > energy_j:
        return None, (
            f"idle energy {idle_j:.3g} J ({idle_w:.3g} W x {span_s:.3g} s) exceeds the "
            f"measured {energy_j:.3g} J: the run's own draw is within the baseline's noise"
        )
    return energy_j - idle_j, None


def _device_adjusted(d: DeviceEnergy, idle_w: float | None, window_s: float) -> DeviceEnergy:
    if d.energy_j is None or idle_w is None:
        return d
    span_s = (
        d.window_end_unix_s - d.window_start_unix_s
        if d.window_start_unix_s is not None and d.window_end_unix_s is not None
        else window_s
    )
    adjusted, reason = _above_idle(d.energy_j, idle_w, span_s)
    return d.model_copy(
        update={
            "idle_power_w": idle_w,
            "adjusted_energy_j": adjusted,
            "adjusted_null_reason": reason,
        }
    )


def adjust_for_idle(
    energy: Energy, idle_w_by_device: dict[str, float], idle_w: float | None, window_s: float
) -> Energy:
    """Subtract each device's own idle power over its own window span.

    Per-device sources (NVML, RAPL) are adjusted device by device and summed; a
    machine-level estimate (CodeCarbon) subtracts `idle_w` over `window_s`. Where the idle
    energy exceeds the measured one, the adjusted energy is null with the reason, never 0.

    Args:
        energy: The window's energy.
        idle_w_by_device: Idle power of each device, from that device's own baseline.
        idle_w: Machine-level idle power (estimates without per-device readings).
        window_s: The window's duration.
    """
    if energy.energy_j is None:
        return energy
    if energy.per_device:
        devices = [
            _device_adjusted(d, idle_w_by_device.get(d.device), window_s) for d in energy.per_device
        ]
        missing = [d.device for d in devices if d.idle_power_w is None]
        negative = [d for d in devices if d.adjusted_null_reason is not None]
        if missing:
            adjusted, reason = None, f"no idle baseline of {', '.join(missing)}"
        elif negative:
            adjusted, reason = (
                None,
                "; ".join(f"{d.device}: {d.adjusted_null_reason}" for d in negative),
            )
        else:
            adjusted, reason = sum(d.adjusted_energy_j or 0.0 for d in devices), None
        return energy.model_copy(
            update={
                "per_device": devices,
                "adjusted_energy_j": adjusted,
                "adjusted_null_reason": reason,
            }
        )
    if idle_w is None:
        return energy.model_copy(
            update={"adjusted_energy_j": None, "adjusted_null_reason": "no idle baseline"}
        )
    adjusted, reason = _above_idle(energy.energy_j, idle_w, window_s)
    return energy.model_copy(update={"adjusted_energy_j": adjusted, "adjusted_null_reason": reason})


def with_facility(energy: Energy, measurement: MeasurementConfig) -> Energy:
    """Facility energy (x PUE) and emissions of the facility energy, from `energy_j`."""
    update: dict[str, object] = {
        "pue": measurement.pue,
        "facility_energy_j": None,
        "emissions_kg": None,
    }
    if energy.energy_j is not None:
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
