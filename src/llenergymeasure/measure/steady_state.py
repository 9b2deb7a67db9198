"""Steady state of continuous batching under load: the batch full, before it drains."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from llenergymeasure.measure.engine_view import held_mean
from llenergymeasure.measure.phases import Timeline
from llenergymeasure.results.phase_models import (
    SATURATION_THRESHOLD,
    STEADY_MIN_S,
    SteadyState,
)

CONTINUOUS_BACKENDS = frozenset({"vllm", "tensorrt"})
"""Backends that batch continuously (a finished sequence's slot is refilled at once)."""


@dataclass(frozen=True)
class PassWindow:
    """The steady window of one pass.

    Attributes:
        start_s: When the running batch first reached the pass's peak (perf clock).
        end_s: When it last fell from the peak (the drain begins).
        peak: The peak running batch.
        running_s: Integral of the running batch over the window (request-seconds).
    """

    start_s: float
    end_s: float
    peak: int
    running_s: float


def pass_window(spans: Sequence[tuple[float, float]]) -> PassWindow | None:
    """The steady window of one pass from its requests' running spans; None if none.

    A request finishing and another starting at one instant is one change (a refill never
    dips the batch, nor overfills it).
    """
    changes: dict[float, int] = {}
    for start, end in spans:
        changes[start] = changes.get(start, 0) + 1
        changes[end] = changes.get(end, 0) - 1
    running, peak = 0, 0
    levels: list[tuple[float, int]] = []  # (time, running batch from then on)
    for t in sorted(changes):
        running += changes[t]
        levels.append((t, running))
        peak = max(peak, running)
    if peak == 0:
        return None
    start = next(t for t, r in levels if r == peak)
    end = start
    for (_, r), (t_next, r_next) in pairwise(levels):
        if r == peak and r_next < peak and t_next > start:
            end = t_next
    if end <= start:
        return None
    area = 0.0
    for (t, r), (t_next, _) in pairwise(levels):
        lo, hi = max(t, start), min(t_next, end)
        if hi > lo:
            area += r * (hi - lo)
    return PassWindow(start_s=start, end_s=end, peak=peak, running_s=area)


def _engine_mean(
    points: Sequence[tuple[float, float]], windows: Sequence[PassWindow]
) -> float | None:
    """The engine's time-weighted running batch over the windows that hold a step of it."""
    weighted, total_s = 0.0, 0.0
    for w in windows:
        if not any(w.start_s <= t <= w.end_s for t, _ in points):
            continue
        mean = held_mean(points, w.start_s, w.end_s)
        if mean is not None:
            weighted += mean * (w.end_s - w.start_s)
            total_s += w.end_s - w.start_s
    return weighted / total_s if total_s > 0 else None


def steady_state(
    *,
    backend: str,
    max_num_seqs: int,
    requests_per_pass: int,
    timeline: Timeline,
    energy_between: Callable[[float, float], float] | None,
    energy_null_reason: str | None,
    to_window_s: Callable[[float], float],
    window_energy_per_output_token_j: float | None,
    engine_running: Sequence[tuple[float, float]] = (),
) -> SteadyState:
    """The steady state of a continuous-batching run with more requests than max_num_seqs.

    Args:
        backend: The run's backend.
        max_num_seqs: The engine's batch capacity.
        requests_per_pass: Requests in each pass over the prompt set.
        timeline: The window cut into intervals (`phases.split_window`).
        energy_between: Energy between two perf_counter times (None: no timeline).
        energy_null_reason: Why `energy_between` is None.
        to_window_s: perf_counter time to seconds since the window start.
        window_energy_per_output_token_j: The whole window's figure, reported beside.
        engine_running: The engine's running count at each of its steps (perf_counter
            clock); where it has steps inside the windows, the mean running batch (and so
            the saturation) is the engine's, else inferred from token events.
    """
    common = {
        "max_num_seqs": max_num_seqs,
        "window_energy_per_output_token_j": window_energy_per_output_token_j,
    }
    if backend not in CONTINUOUS_BACKENDS:
        return SteadyState(
            null_reason=f"{backend} runs static batches: a batch is never refilled, so "
            "there is no steady state",
            **common,
        )
    if requests_per_pass <= max_num_seqs:
        return SteadyState(
            null_reason=f"each pass has {requests_per_pass} requests, not more than "
            f"max_num_seqs = {max_num_seqs}: the batch never has to refill",
            **common,
        )
    by_pass: dict[int, list[tuple[float, float]]] = {}
    for key, span in timeline.running.items():
        by_pass.setdefault(timeline.pass_of[key], []).append(span)
    windows = [w for _, spans in sorted(by_pass.items()) if (w := pass_window(spans))]
    if not windows:
        return SteadyState(
            null_reason="the running batch never held its peak for any time", **common
        )
    duration_s = sum(w.end_s - w.start_s for w in windows)
    tokens = sum(
        n
        for interval in timeline.intervals
        if any(w.start_s < interval.end_s <= w.end_s for w in windows)
        for n in interval.tokens.values()
    )
    token_mean = sum(w.running_s for w in windows) / duration_s
    engine_mean = _engine_mean(engine_running, windows)
    mean_running = engine_mean if engine_mean is not None else token_mean
    energy_j = (
        sum(energy_between(w.start_s, w.end_s) for w in windows)
        if energy_between is not None
        else None
    )
    return SteadyState(
        windows=len(windows),
        duration_s=duration_s,
        start_t_window_s=to_window_s(windows[0].start_s),
        end_t_window_s=to_window_s(windows[-1].end_s),
        peak_running=max(w.peak for w in windows),
        mean_running=mean_running,
        saturation=mean_running / max_num_seqs,
        saturation_source="engine_scheduler" if engine_mean is not None else "token_events",
        token_events_mean_running=token_mean,
        output_tokens=tokens,
        energy_j=energy_j,
        energy_null_reason=None if energy_j is not None else energy_null_reason,
        energy_per_output_token_j=energy_j / tokens if energy_j is not None and tokens else None,
        short=duration_s < STEADY_MIN_S,
        unsaturated=mean_running / max_num_seqs < SATURATION_THRESHOLD,
        **common,
    )
