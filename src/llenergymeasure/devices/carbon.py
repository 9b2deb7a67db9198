"""Facility energy (PUE) and emissions (carbon intensity) from device energy."""

from __future__ import annotations

from functools import lru_cache

J_PER_KWH = 3.6e6


@lru_cache(maxsize=32)
def country_intensity_g_per_kwh(country_iso_code: str) -> float | None:
    """Grid carbon intensity of a country from CodeCarbon's offline energy-mix data."""
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data().get(country_iso_code)
    return None if mix is None else float(mix["carbon_intensity"])


def intensity(
    country_iso_code: str, configured_g_per_kwh: float | None
) -> tuple[float | None, str]:
    """The carbon intensity to apply and where it came from."""
    if configured_g_per_kwh is not None:
        return configured_g_per_kwh, "campaign measurement.carbon_intensity_g_per_kwh"
    value = country_intensity_g_per_kwh(country_iso_code)
    return value, f"codecarbon offline energy mix for {country_iso_code}"


def emissions_kg(facility_energy_j: float, intensity_g_per_kwh: float) -> float:
    """Kg CO2eq of an energy at an intensity."""
    return facility_energy_j / J_PER_KWH * intensity_g_per_kwh / 1000
