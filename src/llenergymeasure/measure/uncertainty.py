"""The sensor's uncertainty budget of every energy figure: bounds from how it was obtained.

Run-to-run spread is what the summary's confidence intervals cover; this is the other half:
how far one run's figure can be from the device's true energy, given the sensor. Each part
is a bound in joules with its basis in words (and a source where a vendor or a tool states
the number); the budget is the *sum* of the bounds (worst case, no cancellation assumed).

Parts:
- ``counter_resolution``: a cumulative counter read at the window's two ends can lag its
  last update by up to one update period at each: 2 x period x peak polled power (mean
  power where none is polled). The period is
  the one measured at session start; where the probe saw too few updates to measure it, the
  probe bounds it (at most its span / the updates it saw), and with no update seen the
  budget is null: the nominal period is a vendor's typical value, not a bound.
- ``sensor_accuracy``: NVIDIA states the board power reading accurate to within +/- 5 W
  (``nvidia-smi --help-query-gpu``, ``power.draw``): 5 W x span, per GPU. RAPL and AMD
  state none, so it is left out for them (the basis says so).
- ``polling_coverage``: energy integrated from polled power: the mean power is known to
  within its standard error, std(power) / sqrt(samples) x span.
- ``averaging_lag``: polled ``nvmlDeviceGetPowerUsage`` is a ~1 s trailing mean, so its
  integral runs about 0.5 s late: it gains the 0.5 s before the window and loses its last
  0.5 s, a difference of at most 0.5 s x peak power.
- ``idle_baseline_spread``: adjusted energy subtracts idle power x span; idle power wanders
  by its own standard deviation: std(idle power) x span.
- ``estimate_error``: CodeCarbon's estimate (constant mode: 50 % of TDP for a CPU it cannot
  read; RAM modelled): the true draw lies anywhere in [0, TDP]: +/- 50 % of the estimate.
- ``boundary_alignment``: a phase or steady-state figure cut out of the window: the energy
  within half a timeline resolution of each of its boundaries could belong to either side.
- ``share_of_window``: a request's energy is its share of the window's, so is its budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from llenergymeasure.results.budget import UncertaintyPart
from llenergymeasure.results.models import CounterUpdatePeriod, DeviceEnergy, Energy

METHOD = (
    "sum of the parts' bounds (worst case, no cancellation assumed); covers the sensor, "
    "not run-to-run spread"
)
NVML_ACCURACY_W = 5.0
NVML_ACCURACY_SOURCE = "nvidia-smi --help-query-gpu, power.draw: 'accurate to within +/- 5 watts'"
AVERAGE_LAG_S = 0.5
"""Half of the ~1 s window nvmlDeviceGetPowerUsage averages over (Ampere and later)."""
CODECARBON_RELATIVE_ERROR = 0.5
CODECARBON_SOURCE = (
    "CodeCarbon methodology: a CPU it cannot read draws 50 % of its TDP (constant mode), "
    "RAM power is modelled; the true draw lies anywhere in [0, TDP]"
)


def _span_s(d: DeviceEnergy, window_s: float) -> float:
    if d.window_start_unix_s is not None and d.window_end_unix_s is not None:
        return d.window_end_unix_s - d.window_start_unix_s
    return window_s


def accuracy_w(d: DeviceEnergy) -> float | None:
    """The vendor-stated accuracy of this device's power reading (None: none stated)."""
    return NVML_ACCURACY_W if d.method.startswith("nvml") else None


DEVICE_RESET: dict[str, object] = {
    "energy_uncertainty_j": None,
    "adjusted_energy_uncertainty_j": None,
    "uncertainty_parts": [],
    "uncertainty_null_reason": None,
}
ENERGY_RESET = DEVICE_RESET | {"facility_energy_uncertainty_j": None, "uncertainty_method": None}


def _period_bound(period: CounterUpdatePeriod | None) -> tuple[float | None, str]:
    """The update period to budget with, and how it is known."""
    if period is None:
        return None, "no probe of this counter"
    if period.period_s is not None:
        return period.period_s, "measured"
    if period.updates > 0 and period.probe_s > 0:
        return period.probe_s / period.updates, (
            f"not measured: {period.updates} update(s) in the {period.probe_s:.3g} s probe"
        )
    return None, period.null_reason or "not measured"


def _device_parts(
    d: DeviceEnergy, period: CounterUpdatePeriod | None, interval_s: float | None, span_s: float
) -> tuple[list[UncertaintyPart], str | None]:
    assert d.energy_j is not None
    mean_w = d.energy_j / span_s if span_s > 0 else 0.0
    parts = []
    if d.method in ("nvml_counter", "rapl"):
        period_s, how = _period_bound(period)
        if period_s is None:
            return [], f"the counter's update period is not bounded: {how}"
        power_w, which = (
            (d.max_power_w, "peak polled") if d.max_power_w is not None else (mean_w, "mean")
        )
        parts.append(
            UncertaintyPart(
                name="counter_resolution",
                bound_j=2 * period_s * power_w,
                basis=f"2 x update period {period_s:.3g} s ({how}) x {which} power {power_w:.4g} W",
            )
        )
    else:
        if d.power_std_w is None or d.samples < 2:
            return [], f"{d.samples} power samples: too few for a standard error"
        expected = f" of {span_s / interval_s:.0f} expected" if interval_s else ""
        parts.append(
            UncertaintyPart(
                name="polling_coverage",
                bound_j=d.power_std_w / math.sqrt(d.samples) * span_s,
                basis=f"std(power) {d.power_std_w:.4g} W / sqrt({d.samples} samples{expected})"
                f" x span {span_s:.4g} s",
            )
        )
        if d.power_field is not None and d.power_field.startswith("nvml_power_usage"):
            peak_w = d.max_power_w if d.max_power_w is not None else mean_w
            parts.append(
                UncertaintyPart(
                    name="averaging_lag",
                    bound_j=AVERAGE_LAG_S * peak_w,
                    basis=f"a ~1 s trailing mean integrates {AVERAGE_LAG_S:g} s late: the "
                    f"energy gained at one end less that lost at the other, each at most "
                    f"{AVERAGE_LAG_S:g} s x peak power {peak_w:.4g} W",
                )
            )
    stated = accuracy_w(d)
    if stated is not None:
        parts.append(
            UncertaintyPart(
                name="sensor_accuracy",
                bound_j=stated * span_s,
                basis=f"{stated:g} W x span {span_s:.4g} s",
                source=NVML_ACCURACY_SOURCE,
            )
        )
    return parts, None


def _idle_part(d: DeviceEnergy, idle_std_w: float | None, span_s: float) -> UncertaintyPart | None:
    if idle_std_w is None:
        return None
    return UncertaintyPart(
        name="idle_baseline_spread",
        bound_j=idle_std_w * span_s,
        basis=f"std(idle power) {idle_std_w:.4g} W x span {span_s:.4g} s",
    )


def _device_budget(
    d: DeviceEnergy,
    period: CounterUpdatePeriod | None,
    interval_s: float | None,
    idle_std_w: float | None,
    window_s: float,
) -> DeviceEnergy:
    d = d.model_copy(update=DEVICE_RESET)
    if d.energy_j is None:
        return d
    span_s = _span_s(d, window_s)
    parts, reason = _device_parts(d, period, interval_s, span_s)
    if reason is not None:
        return d.model_copy(update={"uncertainty_null_reason": reason})
    total = sum(p.bound_j for p in parts)
    update: dict[str, object] = {"energy_uncertainty_j": total, "uncertainty_parts": parts}
    if d.adjusted_energy_j is not None:
        idle = _idle_part(d, idle_std_w, span_s)
        if idle is None:
            update["uncertainty_null_reason"] = (
                "adjusted energy: the idle baseline's spread is unknown"
            )
        else:
            update["uncertainty_parts"] = [*parts, idle]
            update["adjusted_energy_uncertainty_j"] = total + idle.bound_j
    return d.model_copy(update=update)


def with_budget(
    energy: Energy,
    periods: Sequence[CounterUpdatePeriod],
    idle_std_w: Mapping[str, float],
    window_s: float,
) -> Energy:
    """`energy` with the budget of energy_j, adjusted_energy_j and facility_energy_j.

    Args:
        energy: The window's energy, idle-adjusted and with facility energy.
        periods: The counters' update periods probed at session start.
        idle_std_w: Each device's idle power standard deviation (from its baseline).
        window_s: The window's duration (a machine-level estimate's span).
    """
    energy = energy.model_copy(update=ENERGY_RESET)
    if energy.energy_j is None:
        return energy
    update: dict[str, object] = {"uncertainty_method": METHOD}
    if energy.per_device:
        by_device = {p.device: p for p in periods}
        devices = [
            _device_budget(
                d, by_device.get(d.device), energy.interval_s, idle_std_w.get(d.device), window_s
            )
            for d in energy.per_device
        ]
        update["per_device"] = devices
        unknown = [d for d in devices if d.energy_uncertainty_j is None]
        if unknown:
            update["uncertainty_null_reason"] = "; ".join(
                f"{d.device}: {d.uncertainty_null_reason}" for d in unknown
            )
            return energy.model_copy(update=update)
        total = sum(d.energy_uncertainty_j or 0.0 for d in devices)
        update["energy_uncertainty_j"] = total
        update["uncertainty_parts"] = _summed([p for d in devices for p in d.uncertainty_parts])
        adjusted = [d.adjusted_energy_uncertainty_j for d in devices]
        if energy.adjusted_energy_j is not None and all(a is not None for a in adjusted):
            update["adjusted_energy_uncertainty_j"] = sum(a or 0.0 for a in adjusted)
    else:  # one machine-level estimate (CodeCarbon)
        total = CODECARBON_RELATIVE_ERROR * energy.energy_j
        update["energy_uncertainty_j"] = total
        update["uncertainty_parts"] = [
            UncertaintyPart(
                name="estimate_error",
                bound_j=total,
                basis=f"{CODECARBON_RELATIVE_ERROR:.0%} of the estimate",
                source=CODECARBON_SOURCE,
            )
        ]
        if energy.adjusted_energy_j is not None:
            update["adjusted_energy_uncertainty_j"] = total
    if energy.facility_energy_j is not None:
        update["facility_energy_uncertainty_j"] = total * energy.pue
    return energy.model_copy(update=update)


def _summed(parts: list[UncertaintyPart]) -> list[UncertaintyPart]:
    """One part per name over the devices, bounds added; bases joined."""
    by_name: dict[str, list[UncertaintyPart]] = {}
    for p in parts:
        by_name.setdefault(p.name, []).append(p)
    return [
        UncertaintyPart(
            name=group[0].name,  # type: ignore[arg-type]
            bound_j=sum(p.bound_j for p in group),
            basis="; ".join(p.basis for p in group) if len(group) > 1 else group[0].basis,
            source=group[0].source,
        )
        for group in by_name.values()
    ]


def accuracy_total_w(energy: Energy) -> float:
    """Sum of the metered devices' stated accuracies (W): the bound per second of any span."""
    return sum(accuracy_w(d) or 0.0 for d in energy.per_device)


def sub_window_parts(
    energy: Energy,
    duration_s: float,
    alignment_j: float | None,
    alignment_basis: str = "energy within half a timeline resolution of each boundary",
) -> list[UncertaintyPart]:
    """The parts of a figure cut out of the window: its boundaries and the sensor over it."""
    parts = []
    if alignment_j is not None:
        parts.append(
            UncertaintyPart(name="boundary_alignment", bound_j=alignment_j, basis=alignment_basis)
        )
    stated_w = accuracy_total_w(energy)
    if stated_w:
        parts.append(
            UncertaintyPart(
                name="sensor_accuracy",
                bound_j=stated_w * duration_s,
                basis=f"{stated_w:g} W x {duration_s:.4g} s",
                source=NVML_ACCURACY_SOURCE,
            )
        )
    return parts


def request_budget(request_j: float, energy: Energy) -> float | None:
    """A request's budget: its share of the window's, allocated like its energy."""
    if energy.energy_j is None or energy.energy_uncertainty_j is None or energy.energy_j <= 0:
        return None
    return energy.energy_uncertainty_j * request_j / energy.energy_j
