"""How the energy of each stretch of a phase was obtained: counted, or apportioned.

A device's energy counter moves in steps (NVML's about every 100 ms, measured at session
start as `counter_update_period_s`), and the sampler reads it every `interval_s`. Within
a stretch, the energy between the first and the last reading that fall inside it is
*measured*: whole counter deltas (or, on a device without a counter, the polled power
integrated between its samples). The energy between each edge of the stretch and the
nearest reading inside it belongs to a counter step (a pair of power samples) that
straddles the edge; the timeline *apportions* that step between the two sides (by the
polled power's shape within it, or by time share; `EnergyTimeline.apportion`). A stretch
with no two readings inside it (a prefill step of tens of milliseconds against a 100 ms
counter) is apportioned entirely.

A stretch is labelled `counter` (or `power`) when it lasts at least the timeline's
resolution and its measured part is at least half its energy, else `apportioned`; a phase
is labelled by its stretches (`mixed` where they differ), and both parts are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from llenergymeasure.measure.energy_timeline import DeviceCurve, EnergyTimeline

StretchLabel = Literal["counter", "power", "apportioned"]
PhaseLabel = Literal["counter", "power", "apportioned", "mixed"]


@dataclass(frozen=True)
class StretchEnergy:
    """A stretch's energy and how much of it was measured.

    Attributes:
        energy_j: Its energy (all devices).
        measured_j: Between the first and last reading inside it, device by device.
        apportioned_j: The rest: parts of readings' steps that straddle its edges.
        label: counter / power (mostly measured, and at least one resolution long) or
            apportioned.
    """

    energy_j: float
    measured_j: float
    apportioned_j: float
    label: StretchLabel


def _readings_s(curve: DeviceCurve) -> np.ndarray | None:
    """Where the curve's energy is read: counter advances, else power samples."""
    return curve.anchor_t_s if curve.anchor_t_s is not None else curve.power_t_s


def measured_j(curve: DeviceCurve, start_s: float, end_s: float) -> float:
    """Energy of `curve` between its first and last reading inside [start_s, end_s]."""
    points = _readings_s(curve)
    if points is None:
        return 0.0
    lo, hi = max(start_s, curve.begin_s), min(end_s, curve.end_s)
    inside = points[(points >= lo) & (points <= hi)]
    if len(inside) < 2:
        return 0.0
    first, last = curve.at(inside[[0, -1]])
    return float(last - first)


def stretch_energy(
    timeline: EnergyTimeline, start_s: float, end_s: float, duration_s: float
) -> StretchEnergy:
    """The energy of [start_s, end_s] (Unix; infinite: to the window's edge), split.

    Args:
        timeline: The window's energy timeline.
        start_s: Start of the stretch.
        end_s: Its end.
        duration_s: Its duration (the requests' clock; the edges may be infinite here).
    """
    energy_j = measured = 0.0
    for curve in timeline.curves:
        lo, hi = curve.at(np.array([start_s, end_s]))
        energy_j += float(hi - lo)
        measured += measured_j(curve, start_s, end_s)
    apportioned = energy_j - measured
    counted = any(c.anchor_t_s is not None for c in timeline.curves)
    mostly = measured > 0 and measured >= apportioned and duration_s >= timeline.resolution_s
    label: StretchLabel = ("counter" if counted else "power") if mostly else "apportioned"
    return StretchEnergy(energy_j, measured, apportioned, label)


def phase_label(labels: Sequence[StretchLabel]) -> PhaseLabel | None:
    """One label for a phase's stretches: theirs where they agree, else mixed."""
    if not labels:
        return None
    first = labels[0]
    return first if all(label == first for label in labels) else "mixed"
