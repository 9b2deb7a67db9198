"""Energy meters and the factory that picks one and says why."""

from __future__ import annotations

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices.base import EnergyMeter, NullMeter


def create_meter(measurement: MeasurementConfig) -> EnergyMeter:
    """The meter a run's measurement settings ask for."""
    if measurement.meter == "none":
        return NullMeter("energy not measured: meter 'none' was configured")
    from llenergymeasure.devices.codecarbon import CodeCarbonMeter

    return CodeCarbonMeter(measurement.meter_interval_s, measurement.country_iso_code)


__all__ = ["EnergyMeter", "NullMeter", "create_meter"]
