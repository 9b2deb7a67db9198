"""Where the window's time goes: prefill, decode and idle intervals from per-token timestamps.

Every token arrival of every request is an event on one monotonic clock. Arrivals closer
than `STEP_MERGE_S` are one engine step (a step's outputs reach the client one request after
the other). While at least one request is in the engine (from its submit to its last token),
the window is cut at every step: the interval ending at a step is *prefill* when some request
received its first token there (the step ran a prefill), else *decode*. Outside those busy
periods it is *idle*. For static batches this is exactly: batch submit → first token of the
batch is prefill, first → last token decode, the gaps between batches idle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from llenergymeasure.backends.base import RequestTiming

STEP_MERGE_S = 1e-3
RequestKey = tuple[int, int]
"""(pass index, request index) of a window request."""


@dataclass
class Step:
    """One engine step as the client saw it: the tokens it delivered, to whom.

    Attributes:
        time_s: When its last output arrived.
        tokens: Tokens delivered to each request.
        first: Requests whose first token it delivered.
    """

    time_s: float
    tokens: dict[RequestKey, int] = field(default_factory=dict)
    first: set[RequestKey] = field(default_factory=set)


@dataclass(frozen=True)
class Interval:
    """One piece of the window, on the requests' clock.

    Attributes:
        start_s: Start (perf_counter seconds).
        end_s: End.
        phase: prefill, decode or idle.
        tokens: Tokens delivered at its end, per request (empty when idle).
        mixed: A prefill step that also delivered decode tokens.
    """

    start_s: float
    end_s: float
    phase: str
    tokens: Mapping[RequestKey, int]
    mixed: bool = False


@dataclass(frozen=True)
class Timeline:
    """The window cut into intervals, and when each request ran.

    Attributes:
        intervals: Consecutive intervals covering [start, end] of the window.
        running: Per request, (start of the step of its first token, its last token).
        input_tokens: Prompt tokens of every request that yielded a token.
        pass_of: Pass index of each request.
    """

    intervals: list[Interval]
    running: dict[RequestKey, tuple[float, float]]
    input_tokens: int
    pass_of: dict[RequestKey, int]


def _arrivals(timing: RequestTiming) -> list[tuple[float, int]]:
    """(time, tokens) of each arrival of a request's tokens (chunks share one time)."""
    sizes = timing.chunk_sizes or (1,) * len(timing.token_times_s)
    out, position = [], 0
    for size in sizes:
        out.append((timing.token_times_s[position], size))
        position += size
    return out


def token_steps(
    passes: Sequence[Sequence[RequestTiming]], merge_s: float = STEP_MERGE_S
) -> list[Step]:
    """Every token arrival of the window, grouped into engine steps, in time order."""
    events = sorted(
        (t, (n, timing.index), size, k == 0)
        for n, timings in enumerate(passes)
        for timing in timings
        for k, (t, size) in enumerate(_arrivals(timing))
    )
    steps: list[Step] = []
    last_s = None
    for t, key, size, first in events:
        if last_s is None or t - last_s > merge_s:
            steps.append(Step(time_s=t))
        step = steps[-1]
        step.time_s = t
        step.tokens[key] = step.tokens.get(key, 0) + size
        if first:
            step.first.add(key)
        last_s = t
    return steps


def _busy_periods(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _cut(
    busy: list[tuple[float, float]], steps: list[Step], start_s: float, end_s: float
) -> list[Interval]:
    """Idle outside the busy periods; inside them, one interval ending at each step."""
    intervals: list[Interval] = []
    cursor, position = start_s, 0
    for busy_start, busy_end in busy:
        if busy_start > cursor:
            intervals.append(Interval(cursor, busy_start, "idle", {}))
            cursor = busy_start
        while position < len(steps) and steps[position].time_s <= busy_end:
            step = steps[position]
            position += 1
            if step.time_s <= cursor and intervals:  # a step at a submit instant: fold it in
                last = intervals.pop()
                tokens = dict(last.tokens)
                for key, n in step.tokens.items():
                    tokens[key] = tokens.get(key, 0) + n
                intervals.append(Interval(last.start_s, last.end_s, last.phase, tokens, last.mixed))
                continue
            phase = "prefill" if step.first else "decode"
            mixed = bool(step.first) and any(k not in step.first for k in step.tokens)
            intervals.append(Interval(cursor, step.time_s, phase, dict(step.tokens), mixed))
            cursor = step.time_s
    if end_s > cursor or not intervals:
        intervals.append(Interval(cursor, max(end_s, cursor), "idle", {}))
    return intervals


def split_window(
    passes: Sequence[Sequence[RequestTiming]],
    start_s: float,
    end_s: float,
    merge_s: float = STEP_MERGE_S,
) -> Timeline:
    """Cut the window [start_s, end_s] into prefill, decode and idle intervals.

    Args:
        passes: The window's requests, pass by pass (perf_counter clock).
        start_s: Window start on that clock.
        end_s: Window end.
        merge_s: Arrivals closer than this are one step.
    """
    steps = token_steps(passes, merge_s)
    step_of: dict[tuple[RequestKey, bool], float] = {}
    for step in steps:
        for key in step.tokens:
            step_of.setdefault((key, True), step.time_s)  # its first step
            step_of[(key, False)] = step.time_s  # its last step (so far)
    timings = {(n, t.index): t for n, ts in enumerate(passes) for t in ts if t.token_times_s}
    busy = _busy_periods([(t.submit_s, step_of[(k, False)]) for k, t in timings.items()])
    intervals = _cut(busy, steps, start_s, end_s)
    step_start = {i.end_s: i.start_s for i in intervals}
    running = {}
    for key, timing in timings.items():
        first_s = step_of[(key, True)]
        start = max(step_start.get(first_s, first_s), timing.submit_s)
        running[key] = (start, step_of[(key, False)])
    return Timeline(
        intervals=intervals,
        running=running,
        input_tokens=sum(t.input_tokens for t in timings.values()),
        pass_of={key: key[0] for key in timings},
    )


@dataclass(frozen=True)
class Stretch:
    """Consecutive intervals of one phase.

    Attributes:
        phase: prefill, decode or idle.
        first: Index of its first interval.
        last: Index of its last interval (inclusive).
    """

    phase: str
    first: int
    last: int


def stretches(intervals: Sequence[Interval]) -> list[Stretch]:
    """The intervals merged into maximal runs of one phase."""
    out: list[Stretch] = []
    for i, interval in enumerate(intervals):
        if out and out[-1].phase == interval.phase:
            out[-1] = Stretch(interval.phase, out[-1].first, i)
        else:
            out.append(Stretch(interval.phase, i, i))
    return out


def phase_boundaries(intervals: Sequence[Interval]) -> dict[str, list[float]]:
    """Per phase, the times where it begins or ends inside the window (edges excluded)."""
    found: dict[str, list[float]] = {"prefill": [], "decode": [], "idle": []}
    for a, b in pairwise(stretches(intervals)):
        t = intervals[b.first].start_s
        found[a.phase].append(t)
        found[b.phase].append(t)
    return found


def merged_windows(times: Sequence[float], half_width_s: float) -> list[tuple[float, float]]:
    """The union of [t - half_width_s, t + half_width_s] over `times`, as disjoint spans."""
    spans: list[tuple[float, float]] = []
    for t in sorted(times):
        lo, hi = t - half_width_s, t + half_width_s
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans
