"""Per-request latency from per-token timestamps, and their statistics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llenergymeasure.backends.base import EngineTiming, RequestTiming
from llenergymeasure.results.models import EngineRequestTiming, Latency, RequestResult, Stats


def observed_intervals(timing: RequestTiming) -> tuple[list[float], int]:
    """Intervals between consecutive token arrivals, and how many were not observable.

    Tokens delivered together in one chunk share one arrival time: the intervals between
    them are unknown (not 0), so they are left out and counted.
    """
    times = timing.token_times_s
    sizes = timing.chunk_sizes or (1,) * len(times)
    arrivals: list[float] = []
    position = 0
    for size in sizes:
        arrivals.append(times[position])
        position += size
    intervals = np.diff(np.asarray(arrivals, dtype=float)).tolist()
    return intervals, sum(size - 1 for size in sizes)


def engine_record(timing: EngineTiming | None) -> EngineRequestTiming | None:
    """The engine's timestamps as a result record, with the durations on its own clock."""
    if timing is None:
        return None

    def since_arrival(t: float | None) -> float | None:
        return None if t is None or timing.arrival_s is None else t - timing.arrival_s

    return EngineRequestTiming(
        clock=timing.clock,
        arrival_s=timing.arrival_s,
        first_scheduled_s=timing.first_scheduled_s,
        first_token_s=timing.first_token_s,
        last_token_s=timing.last_token_s,
        queue_s=since_arrival(timing.first_scheduled_s),
        ttft_s=since_arrival(timing.first_token_s),
    )


def request_result(timing: RequestTiming, pass_index: int = 0) -> RequestResult:
    """Derive TTFT (from the due time and from the hand-over), latency and ITL of a request.

    A request that yielded no token has null TTFT and latency, with the reason.
    """
    times = timing.token_times_s
    common = {
        "index": timing.index,
        "batch_index": timing.batch_index,
        "pass_index": pass_index,
        "input_tokens": timing.input_tokens,
        "output_tokens": len(times),
        "stopped_by_eos": timing.stopped_by_eos,
        "queue_s": float(timing.submit_s - timing.arrival_s),
        "cached_prompt_tokens": timing.cached_prompt_tokens,
        "engine_timing": engine_record(timing.engine_timing),
    }
    if not times:
        return RequestResult(
            **common,
            ttft_s=None,
            service_ttft_s=None,
            latency_s=None,
            itl_s=[],
            null_reason="the request yielded no token",
        )
    intervals, excluded = observed_intervals(timing)
    return RequestResult(
        **common,
        ttft_s=float(times[0] - timing.arrival_s),
        service_ttft_s=float(times[0] - timing.submit_s),
        latency_s=float(times[-1] - timing.arrival_s),
        itl_s=intervals,
        itl_excluded=excluded,
    )


def stats(values: Sequence[float | None]) -> Stats | None:
    """Summary statistics of the non-null values, or None for an empty sample."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    a = np.asarray(present, dtype=float)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return Stats(
        n=len(a),
        mean=float(a.mean()),
        median=float(p50),
        p95=float(p95),
        p99=float(p99),
        min=float(a.min()),
        max=float(a.max()),
    )


def latency_summary(requests: Sequence[RequestResult]) -> Latency:
    """Pool the requests' samples into run-level statistics (percentiles after pooling)."""
    itl = [x for r in requests for x in r.itl_s]
    trimmed = [x for r in requests for x in r.itl_s[1:-1]]
    excluded = sum(r.itl_excluded for r in requests)
    empty = sum(1 for r in requests if r.output_tokens == 0)
    notes = []
    if not itl:
        notes.append("itl_s is null: no request delivered tokens at two or more arrivals")
    if not trimmed:
        notes.append("itl_trimmed_s is null: no request delivered tokens at four or more arrivals")
    if excluded:
        notes.append(
            f"{excluded} intervals inside multi-token chunks are not observable and are "
            "excluded from itl_s (not counted as 0)"
        )
    if empty:
        notes.append(f"{empty} requests yielded no token: left out of TTFT and latency")
    return Latency(
        ttft_s=stats([r.ttft_s for r in requests]),
        service_ttft_s=stats([r.service_ttft_s for r in requests]),
        queue_s=stats([r.queue_s for r in requests]),
        itl_s=stats(itl),
        itl_trimmed_s=stats(trimmed),
        request_latency_s=stats([r.latency_s for r in requests]),
        itl_excluded_intervals=excluded,
        zero_token_requests=empty,
        notes=notes,
    )
