"""Quality flags of a measurement: short windows, sparse or gappy sampling, drift, estimates."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

from llenergymeasure.devices.base import DeviceSource
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.results.models import Energy

SHORT_WINDOW_S = 5.0
MIN_SAMPLES = 10
DRIFT_C = 5.0


def window_warnings(
    energy: Energy, sampler: Sampler, source: DeviceSource | None, window_s: float
) -> list[str]:
    """Human-readable warnings about how far the window's numbers can be trusted."""
    warnings = []
    if window_s < SHORT_WINDOW_S:
        warnings.append(
            f"measurement window {window_s:.2f} s is under {SHORT_WINDOW_S:.0f} s: energy "
            "counters (NVML updates ~every 100 ms) are noisy here; set measurement.min_window_s"
        )
    if energy.confidence == "estimated":
        warnings.append(f"energy is estimated ({energy.method}), not read from a hardware counter")
    if energy.energy_j is None:
        warnings.append(f"energy is null: {energy.null_reason}")
    if source is not None:
        warnings += _device_warnings(energy, sampler, source)
    return warnings


def _device_warnings(energy: Energy, sampler: Sampler, source: DeviceSource) -> list[str]:
    warnings = []
    window = [t.sample for t in sampler.samples if t.phase == "window"]
    by_device = defaultdict(list)
    for s in window:
        by_device[s.device].append(s)
    limit_s = 2 * sampler.interval_s
    for info in source.devices():
        samples = sorted(by_device.get(info.device, []), key=lambda s: s.t_s)
        if len(samples) < MIN_SAMPLES:
            warnings.append(f"{info.device}: only {len(samples)} samples in the window")
        gaps = sum(1 for a, b in pairwise(samples) if b.t_s - a.t_s > limit_s)
        if gaps:
            warnings.append(f"{info.device}: {gaps} sampler gaps longer than {limit_s:g} s")
        temps = [s.temperature_c for s in samples if s.temperature_c is not None]
        if len(temps) >= 2 and abs(temps[-1] - temps[0]) > DRIFT_C:
            warnings.append(
                f"{info.device}: temperature drifted {temps[0]:.0f} -> {temps[-1]:.0f} °C "
                "during the window (not thermally steady)"
            )
        if info.persistence_mode is False:
            warnings.append(
                f"{info.device}: persistence mode is off (driver reloads add latency and power)"
            )
    for d in energy.per_device:
        if d.throttle_s:
            warnings.append(
                f"{d.device}: throttled {d.throttle_s:.1f} s ({', '.join(d.throttle_reasons)})"
            )
        if d.counter_polling_diff_pct is not None and abs(d.counter_polling_diff_pct) > 5:
            warnings.append(
                f"{d.device}: counter and polled power disagree by "
                f"{d.counter_polling_diff_pct:+.1f} %"
            )
    return warnings
