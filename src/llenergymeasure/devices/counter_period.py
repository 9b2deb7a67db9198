"""How often an energy counter updates, measured by reading it in a tight loop.

A cumulative energy counter does not advance continuously: NVML's moves in steps (about
every 100 ms on many NVIDIA GPUs, but it differs with the model and driver), RAPL's about
every millisecond. An interval shorter than one step holds no update of its own, so its
energy can only be apportioned from the steps around it. Zeus
(``infer_counter_update_period``) polls a reading as fast as it can and takes the spacing
of its changes; here the energy counter itself is read, the time of every read at which
its value changed is kept, and the period is the *median* spacing of consecutive changes
(robust to a read delayed past an update, which shows as one double spacing). Each change
time is known to within one read, so the mean read duration is kept beside the period.

Only the standard library is used: the probe runs before anything else of a session.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

PROBE_S = 0.6
"""The longest a probe reads (s): six NVML steps of 100 ms."""
MIN_SPACINGS = 4
"""A probe stops early once every device's counter changed this many times plus one."""
CONTINUOUS_SHARE = 0.5
"""A counter that changed at more than this share of the reads is taken as continuous."""
METHOD = (
    "energy counter read in a tight loop; period = median spacing of the reads at which "
    "its value changed (each change time known to within one read, read_s)"
)


@dataclass(frozen=True)
class CounterPeriod:
    """The measured update period of one device's energy counter.

    Attributes:
        device: The device's id (``gpu:0``).
        period_s: Median spacing of the counter's changes; None with ``null_reason``.
        method: How it was measured, in words.
        reads: Reads of the counter during the probe.
        updates: Reads at which its value had changed.
        probe_s: How long the probe read.
        read_s: Mean duration of one read: the precision of each change time.
        min_spacing_s: Shortest spacing of consecutive changes.
        max_spacing_s: Longest.
        continuous: The value changed at most reads: the period is at most ``read_s``
            and ``period_s`` is an upper bound.
        null_reason: Why there is no period.
    """

    device: str
    period_s: float | None
    method: str
    reads: int
    updates: int
    probe_s: float
    read_s: float | None
    min_spacing_s: float | None = None
    max_spacing_s: float | None = None
    continuous: bool = False
    null_reason: str | None = None


def period_from_stream(
    device: str, times_s: Sequence[float], values_j: Sequence[float | None]
) -> CounterPeriod:
    """The counter's update period from one recorded stream of reads.

    Args:
        device: The device's id.
        times_s: When each read returned (seconds, one monotonic clock, increasing).
        values_j: The counter's value at each read (None: it could not be read).
    """
    reads = len(times_s)
    probe_s = times_s[-1] - times_s[0] if reads > 1 else 0.0
    read_s = probe_s / (reads - 1) if reads > 1 else None
    known = [(t, v) for t, v in zip(times_s, values_j, strict=True) if v is not None]
    if not known:
        reason = "the energy counter could not be read"
        return CounterPeriod(device, None, METHOD, reads, 0, probe_s, read_s, null_reason=reason)
    changes = [t for (_, a), (t, b) in pairwise(known) if b != a]
    if len(changes) < 3:
        if changes:
            reason = (
                f"the counter changed {len(changes)} time(s) in {probe_s:.3g} s of {reads} "
                "reads: at least 3 changes are needed to time its updates"
            )
        else:
            reason = (
                f"the counter did not change in {probe_s:.3g} s of {reads} reads: its period "
                f"exceeds {probe_s:.3g} s, or the device drew no power"
            )
        n = len(changes)
        return CounterPeriod(device, None, METHOD, reads, n, probe_s, read_s, null_reason=reason)
    spacings = [b - a for a, b in pairwise(changes)]
    return CounterPeriod(
        device=device,
        period_s=statistics.median(spacings),
        method=METHOD,
        reads=reads,
        updates=len(changes),
        probe_s=probe_s,
        read_s=read_s,
        min_spacing_s=min(spacings),
        max_spacing_s=max(spacings),
        continuous=len(changes) > CONTINUOUS_SHARE * (len(known) - 1),
    )


def infer_counter_periods(
    read_energy_j: Callable[[], Mapping[str, float | None]],
    clock: Callable[[], float] = time.perf_counter,
    duration_s: float = PROBE_S,
    min_spacings: int = MIN_SPACINGS,
) -> dict[str, CounterPeriod]:
    """Read the counters in a tight loop and time their updates, device by device.

    The loop ends after ``duration_s``, or earlier once every device's counter changed
    ``min_spacings + 1`` times.

    Args:
        read_energy_j: Reads every device's counter now: ``{device: energy_j or None}``.
        clock: Monotonic seconds; called once after every read.
        duration_s: The longest the probe reads.
        min_spacings: Spacings of each counter that end the probe early.
    """
    times: list[float] = []
    streams: dict[str, list[float | None]] = {}
    last: dict[str, float | None] = {}
    changed: dict[str, int] = {}
    start_s = clock()
    while True:
        values = read_energy_j()
        now_s = clock()
        times.append(now_s)
        for device, value in values.items():
            stream = streams.setdefault(device, [None] * (len(times) - 1))
            stream.append(value)
            if device in last and value is not None and value != last[device]:
                changed[device] = changed.get(device, 0) + 1
            if value is not None:
                last[device] = value
        for stream in streams.values():
            if len(stream) < len(times):
                stream.append(None)
        enough = bool(streams) and all(changed.get(d, 0) > min_spacings for d in streams)
        if enough or now_s - start_s >= duration_s:
            break
    return {device: period_from_stream(device, times, stream) for device, stream in streams.items()}


def infer_counter_period_s(
    read_energy_j: Callable[[], float | None],
    clock: Callable[[], float] = time.perf_counter,
    duration_s: float = PROBE_S,
    device: str = "device",
) -> CounterPeriod:
    """The update period of one counter (see :func:`infer_counter_periods`)."""
    return infer_counter_periods(lambda: {device: read_energy_j()}, clock, duration_s)[device]
