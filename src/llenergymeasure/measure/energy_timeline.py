"""The window's cumulative energy as a function of time, from the sampler's timeline.

Per device: where it has an energy counter, the counter's value at every sample where it
advanced anchors the curve, and each delta between anchors is spread over its span by the
polled power's shape (linearly in time where no power is polled); without a counter, the
polled power (linear between samples) is integrated. The curve of each device runs from its
window-start sample to its window-end sample, so its total is exactly that device's
`energy_j`; the window's curve is the sum over devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llenergymeasure.devices.base import DeviceInfo, DeviceSample
from llenergymeasure.results.models import DeviceEnergy

AVERAGED_POWER_PERIOD_S = 1.0
"""nvmlDeviceGetPowerUsage averages over ~1 s (Ampere and later): its shape lags by ~0.5 s."""


def _power_integral(t_k: np.ndarray, p_k: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Integral of the piecewise-linear power through (t_k, p_k) from t_k[0] to t (J)."""
    t = np.clip(t, t_k[0], t_k[-1])
    steps = np.diff(t_k) * (p_k[:-1] + p_k[1:]) / 2
    cumulative = np.concatenate([[0.0], np.cumsum(steps)])
    i = np.clip(np.searchsorted(t_k, t, side="right") - 1, 0, len(t_k) - 2)
    span = t_k[i + 1] - t_k[i]
    dt = t - t_k[i]
    frac = np.divide(dt, span, out=np.zeros_like(dt), where=span > 0)
    p_t = p_k[i] + (p_k[i + 1] - p_k[i]) * frac
    return cumulative[i] + dt * (p_k[i] + p_t) / 2


@dataclass(frozen=True)
class DeviceCurve:
    """Cumulative energy of one device over its window.

    Attributes:
        device: The device's id.
        begin_s: Unix time of its window-start sample.
        end_s: Unix time of its window-end sample.
        anchor_t_s: Times where the cumulative energy is known (counter advances), or None
            (no counter: the power integral alone).
        anchor_j: Cumulative energy at those times (0 at the first).
        power_t_s: Times of the power samples (None: no power polled).
        power_w: The power samples.
        method: How the curve is built, in words.
        resolution_s: Time within which an energy cannot be placed more precisely.
        apportion: How energy between two readings (counter advances, else power
            samples) is divided at a time between them, in words.
        counter_period_s: The counter's update period used (None: no counter).
    """

    device: str
    begin_s: float
    end_s: float
    anchor_t_s: np.ndarray | None
    anchor_j: np.ndarray | None
    power_t_s: np.ndarray | None
    power_w: np.ndarray | None
    method: str
    resolution_s: float
    apportion: str = ""
    counter_period_s: float | None = None

    def _shape(self, t: np.ndarray) -> np.ndarray:
        if self.power_t_s is not None and self.power_w is not None:
            return _power_integral(self.power_t_s, self.power_w, t)
        return np.clip(t, self.begin_s, self.end_s) - self.begin_s

    def at(self, t_s: np.ndarray) -> np.ndarray:
        """Energy (J) from the window start to each time (clipped to the device's window)."""
        t = np.clip(np.asarray(t_s, dtype=float), self.begin_s, self.end_s)
        if self.anchor_t_s is None or self.anchor_j is None:
            return self._shape(t)
        a_t, a_j = self.anchor_t_s, self.anchor_j
        j = np.clip(np.searchsorted(a_t, t, side="right") - 1, 0, len(a_t) - 2)
        q_t, q_lo, q_hi = self._shape(t), self._shape(a_t[j]), self._shape(a_t[j + 1])
        width = q_hi - q_lo
        time_width = a_t[j + 1] - a_t[j]
        by_time = np.divide(t - a_t[j], time_width, out=np.ones_like(t), where=time_width > 0)
        frac = np.divide(q_t - q_lo, width, out=by_time, where=width > 0)
        return a_j[j] + (a_j[j + 1] - a_j[j]) * np.clip(frac, 0.0, 1.0)


def _anchors(samples: Sequence[DeviceSample]) -> tuple[np.ndarray, np.ndarray]:
    """The first and last samples, and every sample where the counter advanced."""
    counted = [s for s in samples if s.energy_j is not None]
    kept = [counted[0]]
    for s in counted[1:-1]:
        if s.energy_j != kept[-1].energy_j:
            kept.append(s)
    if len(counted) > 1:
        kept.append(counted[-1])
    t = np.array([s.t_s for s in kept], dtype=float)
    base = kept[0].energy_j or 0.0
    return t, np.array([(s.energy_j or 0.0) - base for s in kept], dtype=float)


def device_curve(
    device: DeviceEnergy,
    info: DeviceInfo | None,
    samples: Sequence[DeviceSample],
    sampling_interval_s: float,
    counter_period_s: float,
) -> DeviceCurve | None:
    """The cumulative curve of one device from its window samples; None without a reading.

    Args:
        device: The device's window energy (its window-start and window-end samples' times).
        info: What the device exposes (its power field).
        samples: Its samples within the window, boundaries included, in time order.
        sampling_interval_s: The sampler's period.
        counter_period_s: How often its energy counter updates.
    """
    if device.energy_j is None or device.window_start_unix_s is None:
        return None
    begin_s, end_s = device.window_start_unix_s, device.window_end_unix_s or 0.0
    powered = [s for s in samples if s.power_w is not None]
    power_t = np.array([s.t_s for s in powered], dtype=float) if len(powered) > 1 else None
    power_w = np.array([s.power_w for s in powered], dtype=float) if len(powered) > 1 else None
    averaged = info is not None and (info.power_field or "").startswith("nvml_power_usage")
    counter = device.counter_begin_j is not None and device.counter_end_j is not None
    if counter and len([s for s in samples if s.energy_j is not None]) > 1:
        anchor_t, anchor_j = _anchors(samples)
        shape = "spread by the polled power's shape" if power_t is not None else "linear in time"
        return DeviceCurve(
            device=device.device,
            begin_s=begin_s,
            end_s=end_s,
            anchor_t_s=anchor_t,
            anchor_j=anchor_j,
            power_t_s=power_t,
            power_w=power_w,
            method=f"{device.method}: counter deltas between its advances, {shape}",
            resolution_s=max(sampling_interval_s, counter_period_s),
            apportion=(
                "a counter step that straddles a boundary is divided by the polled power's "
                "shape within it"
                if power_t is not None
                else "a counter step that straddles a boundary is divided by time share"
            ),
            counter_period_s=counter_period_s,
        )
    if power_t is None:
        return None
    return DeviceCurve(
        device=device.device,
        begin_s=begin_s,
        end_s=end_s,
        anchor_t_s=None,
        anchor_j=None,
        power_t_s=power_t,
        power_w=power_w,
        method=f"{device.method}: polled power integrated (linear between samples)",
        resolution_s=max(sampling_interval_s, AVERAGED_POWER_PERIOD_S if averaged else 0.0),
        apportion="power interpolated linearly between the polled samples around a boundary",
    )


@dataclass(frozen=True)
class EnergyTimeline:
    """The window's cumulative energy: the sum of its devices' curves."""

    curves: tuple[DeviceCurve, ...]

    def at(self, t_s: np.ndarray) -> np.ndarray:
        """Energy (J) of all devices from their window starts to each time."""
        t = np.asarray(t_s, dtype=float)
        return sum((c.at(t) for c in self.curves), start=np.zeros_like(t))

    def between(self, start_s: float, end_s: float) -> float:
        """Energy (J) between two Unix times."""
        lo, hi = self.at(np.array([start_s, end_s]))
        return float(hi - lo)

    @property
    def resolution_s(self) -> float:
        """The coarsest device resolution."""
        return max(c.resolution_s for c in self.curves)

    @property
    def method(self) -> str:
        """How the curves are built, device by device."""
        return "; ".join(sorted({c.method for c in self.curves}))

    @property
    def apportion(self) -> str:
        """How energy at a boundary between readings is divided, device by device."""
        return "; ".join(sorted({c.apportion for c in self.curves}))

    @property
    def counter_period_s(self) -> float | None:
        """The slowest counter update period of the devices (None: no device has one)."""
        periods = [c.counter_period_s for c in self.curves if c.counter_period_s is not None]
        return max(periods) if periods else None
