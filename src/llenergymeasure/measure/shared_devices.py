"""One device (or one machine) that several ranks measured: its energy over their union.

The ranks of a multi-process run that share a device each measure it over their own
window; the run's window is the union ``[earliest start, latest end]``, and idle power is
subtracted over that union. So the device's energy must cover the same union:

* **energy counter**: the counter read at the earliest start to the one at the latest end
  (null where the ranks' readings do not rise together: each unwrapped it on its own);
* **power polling** (no counter): every rank's power samples of the device (each rank's
  timeline, outside its own window too), merged in time order, integrated (trapezoid,
  as one rank does) from exactly the union's start to its end: those are boundary
  samples of the ranks that opened and closed it, else interpolated between neighbours;
* **machine estimate** (CodeCarbon, one per rank, no per-device readings or power
  samples): the widest rank's estimate over its own window, plus the union's parts
  outside it at the mean power of a rank whose tracker covered them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from llenergymeasure.devices.base import DeviceSample
from llenergymeasure.results.models import DeviceEnergy, Energy

RESET_IDLE: dict[str, Any] = {
    "idle_power_w": None,
    "adjusted_energy_j": None,
    "adjusted_null_reason": None,
}


@dataclass(frozen=True)
class UnionPolled:
    """A device's polled power integrated over the union of its ranks' windows."""

    energy_j: float | None
    samples: int  # samples with power within the union (every rank's, merged)
    largest_gap_s: float | None  # longest time between two of them
    interpolated_ends: int  # ends of the union without a sample of their own (0, 1 or 2)
    null_reason: str | None = None


def _power_points(samples: Sequence[DeviceSample], device: str) -> list[tuple[float, float]]:
    """`(t_s, power_w)` of every sample of `device` with power, in time order, one per instant.

    Several ranks poll the same device: their samples are merged; two at the same
    instant count once (the first given).
    """
    found = sorted(
        (s for s in samples if s.device == device and s.power_w is not None), key=lambda s: s.t_s
    )
    points: list[tuple[float, float]] = []
    for s in found:
        if not points or s.t_s != points[-1][0]:
            points.append((s.t_s, s.power_w or 0.0))
    return points


def _power_at(points: list[tuple[float, float]], t_s: float) -> float:
    """The power at `t_s`: its sample's, else linear between the samples around it.

    `points` must reach `t_s` from both sides (a point at or before it, one at or after).
    """
    i = bisect_left(points, t_s, key=lambda p: p[0])  # the first point at or after t_s
    t1_s, p1_w = points[i]
    if t1_s == t_s:
        return p1_w
    t0_s, p0_w = points[i - 1]
    return p0_w + (p1_w - p0_w) * (t_s - t0_s) / (t1_s - t0_s)


def union_polled(
    samples: Sequence[DeviceSample], device: str, start_s: float, end_s: float
) -> UnionPolled:
    """Trapezoid of every rank's power samples of `device` over exactly [start_s, end_s].

    Each end of the union is a rank's boundary sample (`Sampler.mark` at its window's
    start and end, kept in its timeline at the same timestamp); where that sample has no
    power, the power there is interpolated between the samples around it, so the integral
    still covers exactly the span idle power is subtracted over. Where no sample lies at
    or beyond an end, the union is not covered and the energy is null.
    """
    points = _power_points(samples, device)
    inside = [(t, p) for t, p in points if start_s <= t <= end_s]
    if not points or points[0][0] > start_s or points[-1][0] < end_s:
        return UnionPolled(
            None,
            len(inside),
            None,
            0,
            null_reason=(
                f"the ranks' power samples of {device} do not reach both ends of the union of "
                f"their windows ({len(inside)} samples within it): its energy over the union "
                "cannot be integrated"
            ),
        )
    ends = [(start_s, _power_at(points, start_s)), (end_s, _power_at(points, end_s))]
    curve = sorted({*inside, *ends})
    return UnionPolled(
        energy_j=sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairwise(curve)),
        samples=len(inside),
        largest_gap_s=max((t1 - t0 for (t0, _), (t1, _) in pairwise(curve)), default=0.0),
        interpolated_ends=sum(1 for t, _ in ends if t not in {t for t, _ in inside}),
    )


def device_union(readings: list[DeviceEnergy], samples: Sequence[DeviceSample]) -> DeviceEnergy:
    """One device as the run saw it: counted once, over the union of its ranks' windows.

    Args:
        readings: The device's record of every rank that metered it (rank order).
        samples: The device's power samples of every such rank (any order, any phase).
    """
    if len(readings) == 1:
        return readings[0].model_copy(update=RESET_IDLE)
    timed = [d for d in readings if d.window_start_unix_s is not None]
    widest = max(
        timed or readings, key=lambda d: (d.window_end_unix_s or 0) - (d.window_start_unix_s or 0)
    )
    throttles = [d.throttle_s for d in readings if d.throttle_s is not None]
    temps = [d.max_temperature_c for d in readings if d.max_temperature_c is not None]
    update: dict[str, Any] = {
        **RESET_IDLE,
        "throttle_s": max(throttles) if throttles else None,
        "throttle_reasons": sorted({r for d in readings for r in d.throttle_reasons}),
        "max_temperature_c": max(temps) if temps else None,
    }
    if len(timed) < len(readings):
        reason = next((d.null_reason for d in readings if d.window_start_unix_s is None), None)
        update |= {"energy_j": None, "confidence": None, "null_reason": reason}
        note = f"seen by {len(readings)} ranks: a rank could not read it at a window boundary"
        return widest.model_copy(update=update | {"notes": [*widest.notes, note]})
    start_s = min(d.window_start_unix_s or 0.0 for d in timed)
    end_s = max(d.window_end_unix_s or 0.0 for d in timed)
    update |= {"window_start_unix_s": start_s, "window_end_unix_s": end_s}
    polled = union_polled(samples, widest.device, start_s, end_s)
    polled_j = polled.energy_j
    begins = [d.counter_begin_j for d in readings if d.counter_begin_j is not None]
    ends = [d.counter_end_j for d in readings if d.counter_end_j is not None]
    counted = len(begins) == len(readings) and len(ends) == len(readings)
    if counted and not _counters_rise(readings):
        reason = (
            f"the ranks' energy counter readings of {widest.device} do not rise with time "
            "(each rank unwraps the counter from its own start, as RAPL does, and it wrapped "
            "between their starts): its energy over the union cannot be read from them"
        )
        update |= {"energy_j": None, "confidence": None, "null_reason": reason}
        return widest.model_copy(update=update | {"notes": [*widest.notes, reason]})
    if counted:
        counter_j = max(ends) - min(begins)
        update |= {
            "energy_j": counter_j,
            "counter_begin_j": min(begins),
            "counter_end_j": max(ends),
            "polled_energy_j": polled_j,
            "counter_polling_diff_pct": (
                (polled_j - counter_j) / counter_j * 100
                if polled_j is not None and counter_j > 0
                else None
            ),
            "samples": polled.samples,
        }
        note = f"seen by {len(readings)} ranks: counter from the earliest start to the latest end"
    else:
        update |= {
            "energy_j": polled_j,
            "null_reason": polled.null_reason,
            "confidence": "measured" if polled_j is not None else None,
            "samples": polled.samples,
        }
        note = _polled_note(len(readings), polled)
    return widest.model_copy(update=update | {"notes": [*widest.notes, note]})


def _counters_rise(readings: list[DeviceEnergy]) -> bool:
    """Whether every rank's counter readings of one device, in time order, never decrease.

    A counter read by several processes rises with time. A source that unwraps its
    counter from its own start (RAPL) gives each rank its own offset: once a wrap falls
    between two ranks' starts, their readings differ by the counter's range and mixing
    them (the earliest start's with the latest end's) would be wrong by that much.
    """
    points = sorted(
        (t_s, j)
        for d in readings
        for t_s, j in (
            (d.window_start_unix_s, d.counter_begin_j),
            (d.window_end_unix_s, d.counter_end_j),
        )
        if t_s is not None and j is not None
    )
    return all(j1 >= j0 for (_, j0), (_, j1) in pairwise(points))


def _polled_note(ranks: int, polled: UnionPolled) -> str:
    """How a shared device's polled energy over the union was obtained."""
    if polled.energy_j is None:
        return f"seen by {ranks} ranks: {polled.null_reason}"
    note = (
        f"seen by {ranks} ranks: the power every rank polled ({polled.samples} samples, merged "
        f"in time order, at most {polled.largest_gap_s:.3g} s apart) integrated (trapezoid) "
        "over the union of their windows"
    )
    if polled.interpolated_ends:
        note += (
            f"; {polled.interpolated_ends} end(s) of the union had no power sample: the power "
            "there is interpolated between the samples around it"
        )
    return note


def _null_machine(energy: Energy, reason: str, note: str, span_s: float) -> Energy:
    return energy.model_copy(
        update={
            "energy_j": None,
            "null_reason": reason,
            "confidence": None,
            "components_j": {},
            "meter_duration_s": span_s,
            "notes": [*energy.notes, note],
        }
    )


def machine_union(energies: Sequence[Energy], windows: Sequence[tuple[float, float]]) -> Energy:
    """One machine-level estimate per rank (CodeCarbon) as the machine's over the union.

    CodeCarbon gives each rank only its total over its own tracker window (no samples).
    The widest rank's estimate is taken whole; each part of the union outside its window
    is added at the mean power (energy / window) of the widest rank whose tracker covered
    that part. Where one rank covered the union, that is its estimate unchanged; a part no
    tracker covered makes the energy null, with the reason. Exact where the machine's power
    is constant over the covering rank's window (CodeCarbon's own estimate is a constant
    TDP share where it cannot read power).

    Args:
        energies: Every rank's estimate (rank order).
        windows: Every rank's window `(start, end)` (Unix s), in the same order.
    """
    start_s, end_s = min(s for s, _ in windows), max(e for _, e in windows)
    span_s = end_s - start_s
    base = max(range(len(energies)), key=lambda i: windows[i][1] - windows[i][0])
    base_energy = energies[base]
    if all(e.energy_j is None for e in energies):  # nothing measured (meter none)
        return base_energy
    weights = {base: 1.0}
    filled_s = 0.0
    edges = sorted({t for w in windows for t in w})
    for a, b in pairwise(edges):
        if windows[base][0] <= a and b <= windows[base][1]:
            continue
        covering = [i for i, (s, e) in enumerate(windows) if s <= a and b <= e and e > s]
        if not covering:
            reason = (
                f"no rank's tracker covered {b - a:.3g} s of the union of the ranks' windows: "
                "the machine's energy there was not estimated"
            )
            return _null_machine(base_energy, reason, reason, span_s)
        j = max(covering, key=lambda i: windows[i][1] - windows[i][0])
        weights[j] = weights.get(j, 0.0) + (b - a) / (windows[j][1] - windows[j][0])
        filled_s += b - a
    parts = [(energies[i], w) for i, w in weights.items()]
    missing = [e for e, _ in parts if e.energy_j is None]
    if missing:
        reason = missing[0].null_reason or "a rank's machine estimate is null"
        note = f"{len(energies)} ranks on one machine: a rank's estimate the union needs is null"
        return _null_machine(base_energy, reason, note, span_s)
    components = {
        key: sum(e.components_j[key] * w for e, w in parts)
        for key in base_energy.components_j
        if all(key in e.components_j for e, _ in parts)
    }
    if filled_s == 0.0:
        note = (
            f"{len(energies)} ranks on one machine: rank {base}'s tracker covered the union of "
            "their windows; its machine estimate is the run's"
        )
    else:
        others = ", ".join(str(i) for i in sorted(weights) if i != base)
        note = (
            f"{len(energies)} ranks on one machine: rank {base}'s machine estimate over its "
            f"window, plus the {filled_s:.3g} s of the union outside it at the mean power of "
            f"rank {others} over its own window"
        )
    return base_energy.model_copy(
        update={
            "energy_j": sum((e.energy_j or 0.0) * w for e, w in parts),
            "components_j": components,
            "meter_duration_s": span_s,
            "notes": [*base_energy.notes, note],
        }
    )
