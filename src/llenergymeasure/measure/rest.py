"""Whether a device is at rest: trends over a trailing window, and power at its idle level.

Pure: a verdict is a function of the samples, the time and the bounds, never of the clock.
A device is at rest when, over the last `window_s`,

* the least-squares line through its temperatures has |slope| <= the temperature bound
  (skipped where the device reports no temperature), and
* its mean power is at most its idle level + max(tolerance W, tolerance % of idle), where a
  cached idle baseline of that device is known; else the least-squares line through its
  power has |slope| <= the power bound (skipped where it reports no power).

A device cooling steadily is "unchanged since the last second" long before it is idle; a trend
over a window is not. NVML reports whole °C: over a window W a 1 °C step fits a slope of up to
1.5 °C / W, which is why W is tens of seconds (see `cooldown_window_s`).
"""

from __future__ import annotations

from collections.abc import Sequence

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices.base import DeviceSample
from llenergymeasure.results.models import CooldownDevice, RestBounds

MIN_FIT_SAMPLES = 3
NO_IDLE = "no idle baseline known yet"


def rest_bounds(measurement: MeasurementConfig) -> RestBounds:
    """The rest criteria a campaign's measurement keys set."""
    return RestBounds(
        window_s=measurement.cooldown_window_s,
        temperature_slope_c_per_s=measurement.cooldown_temperature_slope_c_per_s,
        power_slope_w_per_s=measurement.cooldown_power_slope_w_per_s,
        idle_tolerance_w=measurement.cooldown_idle_tolerance_w,
        idle_tolerance_pct=measurement.cooldown_idle_tolerance_pct,
    )


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Slope of the least-squares line through `(t_s, value)` points.

    None with fewer than three points, or all at one instant.
    """
    if len(points) < MIN_FIT_SAMPLES:
        return None
    t_mean = sum(t for t, _ in points) / len(points)
    v_mean = sum(v for _, v in points) / len(points)
    var_t = sum((t - t_mean) ** 2 for t, _ in points)
    if var_t <= 0:
        return None
    return sum((t - t_mean) * (v - v_mean) for t, v in points) / var_t


def _power(window: Sequence[DeviceSample]) -> tuple[list[tuple[float, float]], float | None]:
    """Power points and mean power over the window.

    Polled where the device reports power, else the energy counter's rate between
    consecutive samples (its mean: the counter's difference over the span).
    """
    polled = [(s.t_s, s.power_w) for s in window if s.power_w is not None]
    if polled:
        return polled, sum(p for _, p in polled) / len(polled)
    counted = [s for s in window if s.energy_j is not None]
    rates = [
        (0.5 * (a.t_s + b.t_s), (b.energy_j - a.energy_j) / (b.t_s - a.t_s))  # type: ignore[operator]
        for a, b in zip(counted, counted[1:], strict=False)
        if b.t_s > a.t_s
    ]
    if not rates:
        return [], None
    span_s = counted[-1].t_s - counted[0].t_s
    return rates, (counted[-1].energy_j - counted[0].energy_j) / span_s  # type: ignore[operator]


def at_rest(
    device: str,
    samples: Sequence[DeviceSample],
    now_s: float,
    bounds: RestBounds,
    idle_w: float | None,
) -> CooldownDevice:
    """Judge one device from its samples since the wait began (time order, `t_s` <= `now_s`).

    Args:
        device: The device's id (as its samples and its cached baseline name it).
        samples: Every sample of the device since the cooldown began.
        now_s: The instant judged, on the samples' clock.
        bounds: The criteria.
        idle_w: The device's cached idle power (None: none known yet).

    Returns:
        The verdict; not settled while the samples span less than one window.
    """
    idle = {
        "idle_target_w": idle_w,
        "idle_target_null_reason": NO_IDLE if idle_w is None else None,
    }
    start_s = now_s - bounds.window_s
    if not samples or samples[0].t_s > start_s:
        had_s = now_s - samples[0].t_s if samples else 0.0
        reason = f"{had_s:.1f} s of samples, fewer than one {bounds.window_s:g} s window"
        return CooldownDevice(
            device=device,
            settled=False,
            unsettled_reason=reason,
            temperature_null_reason=reason,
            power_null_reason=reason,
            **idle,
        )
    window = [s for s in samples if start_s <= s.t_s <= now_s]
    temps = [(s.t_s, s.temperature_c) for s in window if s.temperature_c is not None]
    temp_slope = slope(temps)
    power_points, power_w = _power(window)
    power_slope = slope(power_points)
    unsettled = [
        *_temperature_check(temps, temp_slope, bounds),
        *_power_check(power_points, power_w, power_slope, idle_w, bounds),
    ]
    if not temps and not power_points:
        unsettled.append("neither power nor temperature in the window")
    return CooldownDevice(
        device=device,
        settled=not unsettled,
        unsettled_reason="; ".join(unsettled) or None,
        temperature_slope_c_per_s=temp_slope,
        temperature_null_reason=None if temp_slope is not None else _why(temps, "temperature"),
        power_w=power_w,
        power_slope_w_per_s=power_slope,
        power_null_reason=None if power_slope is not None else _why(power_points, "power"),
        **idle,
    )


def _temperature_check(
    temps: Sequence[tuple[float, float]], temp_slope: float | None, bounds: RestBounds
) -> list[str]:
    """Why the temperature is not at rest (empty: it is, or the device reports none)."""
    if not temps:
        return []
    if temp_slope is None:
        return [_why(temps, "temperature")]
    if abs(temp_slope) <= bounds.temperature_slope_c_per_s:
        return []
    trend = "falling" if temp_slope < 0 else "rising"
    return [
        f"temperature {trend} {abs(temp_slope):.3f} °C/s "
        f"(bound {bounds.temperature_slope_c_per_s:g})"
    ]


def _power_check(
    points: Sequence[tuple[float, float]],
    power_w: float | None,
    power_slope: float | None,
    idle_w: float | None,
    bounds: RestBounds,
) -> list[str]:
    """Why the power is not at rest (empty: it is, or the device reports none)."""
    if power_w is None:
        return []
    if idle_w is not None:
        limit_w = idle_w + max(bounds.idle_tolerance_w, bounds.idle_tolerance_pct / 100 * idle_w)
        if power_w <= limit_w:
            return []
        return [f"power {power_w:.1f} W above idle {idle_w:.1f} W (limit {limit_w:.1f} W)"]
    if power_slope is None:
        return [_why(points, "power")]
    if abs(power_slope) <= bounds.power_slope_w_per_s:
        return []
    trend = "falling" if power_slope < 0 else "rising"
    return [
        f"power {trend} {abs(power_slope):.3f} W/s, no idle level known "
        f"(bound {bounds.power_slope_w_per_s:g})"
    ]


def _why(points: Sequence[tuple[float, float]], what: str) -> str:
    if not points:
        return f"no {what} reading in the window"
    return f"{len(points)} {what} readings in the window: too few to fit"
