"""Energy from a device source's counters (and polled power where a counter is missing)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from itertools import pairwise

from llenergymeasure.devices.base import DeviceInfo, DeviceSample, DeviceSource, EnergyMeter
from llenergymeasure.devices.counter_period import PROBE_S, CounterPeriod, infer_counter_periods
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.errors import MeterError
from llenergymeasure.results.models import CounterUpdatePeriod, DeviceEnergy, Energy


def trapezoid_j(samples: list[DeviceSample]) -> float | None:
    """Integrate power samples over time (trapezoid rule); None with fewer than two."""
    points = [(s.t_s, s.power_w) for s in samples if s.power_w is not None]
    if len(points) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairwise(points))


def power_spread_w(samples: Sequence[DeviceSample]) -> float | None:
    """Standard deviation of a device's power over samples (polled, else counter steps).

    None with fewer than two readings.
    """
    powers = [s.power_w for s in samples if s.power_w is not None]
    if len(powers) < 2:
        points = [(s.t_s, s.energy_j) for s in samples if s.energy_j is not None]
        powers = [(e1 - e0) / (t1 - t0) for (t0, e0), (t1, e1) in pairwise(points) if t1 > t0]
    return statistics.stdev(powers) if len(powers) >= 2 else None


def throttle_summary(samples: list[DeviceSample], names: dict[int, str]) -> tuple[float, list[str]]:
    """Seconds spent throttled (a sample's reasons hold until the next sample) and reasons seen."""
    mask = sum(names)
    seconds = 0.0
    seen = 0
    for a, b in pairwise(samples):
        reasons = (a.throttle_reasons or 0) & mask
        if reasons:
            seconds += b.t_s - a.t_s
            seen |= reasons
    if samples:
        seen |= (samples[-1].throttle_reasons or 0) & mask
    return seconds, [name for bit, name in names.items() if seen & bit]


def probe_counter_periods(
    source: DeviceSource,
    clock: Callable[[], float] = time.perf_counter,
    duration_s: float = PROBE_S,
) -> list[CounterUpdatePeriod]:
    """Measure the update period of every counter of `source` (devices without one: none).

    Each record says the period the phase split will use: the measured one, else the
    source's nominal ``counter_period_s``, labelled so.
    """
    counted = {info.device for info in source.devices() if info.has_counter}
    if not counted:
        return []

    def read() -> dict[str, float | None]:
        values = source.read_energy_j()
        return {d: v for d, v in values.items() if d in counted}

    try:
        periods = infer_counter_periods(read, clock, duration_s)
    except MeterError as e:
        reason = f"the counters could not be read: {e}"
        periods = {
            d: CounterPeriod(d, None, "not measured", 0, 0, 0.0, None, null_reason=reason)
            for d in counted
        }
    return [period_record(periods[d], source.counter_period_s) for d in sorted(periods)]


def period_record(period: CounterPeriod, nominal_s: float) -> CounterUpdatePeriod:
    """The result record of a probe: the measured period, else the nominal one."""
    measured = period.period_s is not None
    return CounterUpdatePeriod(
        device=period.device,
        period_s=period.period_s,
        null_reason=period.null_reason,
        method=period.method,
        reads=period.reads,
        updates=period.updates,
        probe_s=period.probe_s,
        read_s=period.read_s,
        min_spacing_s=period.min_spacing_s,
        max_spacing_s=period.max_spacing_s,
        continuous=period.continuous,
        used_s=period.period_s if period.period_s is not None else nominal_s,
        used="measured" if measured else "nominal",
    )


class CounterMeter(EnergyMeter):
    """Per-device window energy from counters, or polled power where there is no counter.

    Args:
        method: Name of the source for the result (``nvml`` or ``rapl``).
        source: The devices.
        sampler: The running sampler of that source; window boundaries are exact samples.
    """

    def __init__(self, method: str, source: DeviceSource, sampler: Sampler) -> None:
        self.method = method
        self.source = source
        self.sampler = sampler
        self._begin: dict[str, DeviceSample] = {}

    def begin_window(self) -> None:
        """Take the boundary sample of every device."""
        self._begin = {s.device: s for s in self.sampler.mark()}

    def end_window(self) -> Energy:
        """Take the closing samples and derive each device's energy."""
        end = {s.device: s for s in self.sampler.mark()}
        per_device = [self._device_energy(info, end) for info in self.source.devices()]
        unknown = [d for d in per_device if d.energy_j is None]
        total = None if unknown else sum(d.energy_j or 0.0 for d in per_device)
        span = [end[d].t_s - self._begin[d].t_s for d in end if d in self._begin]
        return Energy(
            energy_j=total,
            null_reason=(
                "; ".join(f"{d.device}: {d.null_reason}" for d in unknown) if unknown else None
            ),
            method=self.method,
            confidence="measured" if total is not None else None,
            interval_s=self.sampler.interval_s,
            devices=[f"{d.device} ({d.name})" for d in per_device],
            per_device=per_device,
            meter_duration_s=max(span) if span else None,
            notes=[*self.sampler.errors[:5]],
        )

    def _device_energy(self, info: DeviceInfo, end: dict[str, DeviceSample]) -> DeviceEnergy:
        begin, last = self._begin.get(info.device), end.get(info.device)
        if begin is None or last is None:
            return DeviceEnergy(
                device=info.device,
                name=info.name,
                cuda_index=info.cuda_index,
                identified_by=info.identified_by,
                energy_j=None,
                method=self.method,
                confidence=None,
                null_reason="the device could not be read at a window boundary",
            )
        samples = self.sampler.between(info.device, begin.t_s, last.t_s)
        counter_j = (
            last.energy_j - begin.energy_j
            if last.energy_j is not None and begin.energy_j is not None
            else None
        )
        polled_j = trapezoid_j(samples) if info.has_power else None
        throttle_s, reasons = throttle_summary(samples, self.source.throttle_names)
        temperatures = [s.temperature_c for s in samples if s.temperature_c is not None]
        powers = [s.power_w for s in samples if s.power_w is not None]
        limits = [s.power_limit_w for s in samples if s.power_limit_w is not None]
        notes = list(info.notes)
        power_field = info.power_field if polled_j is not None else None
        polled = "power" if power_field is None else f"power ({power_field})"
        if counter_j is not None:
            energy_j, method = counter_j, self.source.counter_method
            if polled_j is not None:
                notes.append(
                    f"{polled} polled every {self.sampler.interval_s:g} s and integrated "
                    "(trapezoid) as a cross-check of the counter"
                )
        elif polled_j is not None:
            energy_j, method = polled_j, self.source.polling_method
            notes.append(
                f"no energy counter: {polled} polled every {self.sampler.interval_s:g} s and "
                "integrated (trapezoid)"
            )
        else:
            return DeviceEnergy(
                device=info.device,
                name=info.name,
                cuda_index=info.cuda_index,
                identified_by=info.identified_by,
                energy_j=None,
                method=self.method,
                confidence=None,
                null_reason="neither an energy counter nor power is readable",
                samples=len(samples),
                notes=notes,
            )
        both = counter_j is not None and polled_j is not None and counter_j > 0
        return DeviceEnergy(
            window_start_unix_s=begin.t_s,
            window_end_unix_s=last.t_s,
            counter_begin_j=begin.energy_j,
            counter_end_j=last.energy_j,
            device=info.device,
            name=info.name,
            cuda_index=info.cuda_index,
            identified_by=info.identified_by,
            energy_j=energy_j,
            method=method,
            confidence="measured",
            polled_energy_j=polled_j if counter_j is not None else None,
            power_field=power_field,
            counter_polling_diff_pct=(
                (polled_j - counter_j) / counter_j * 100 if both else None  # type: ignore[operator]
            ),
            samples=len(samples),
            power_std_w=power_spread_w(samples),
            max_power_w=max(powers, default=None),
            power_limit_w=max(limits, default=None),
            max_temperature_c=max(temperatures) if temperatures else None,
            throttle_s=throttle_s if self.source.throttle_names else None,
            throttle_reasons=reasons,
            notes=notes,
        )
