"""Per-request latency from per-token timestamps, and their statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llenergymeasure.results.models import Latency, RequestResult, Stats


@dataclass(frozen=True)
class RequestTiming:
    """Raw timing of one request, on one monotonic clock (seconds).

    Attributes:
        index: Position of the prompt in the run.
        batch_index: Batch the prompt was generated in.
        input_tokens: Prompt tokens, padding excluded.
        arrival_s: When the request became available (offline runs: the window start).
        submit_s: When it was handed to the engine (transformers: its batch's start).
        token_times_s: Arrival time of each counted output token.
        output_ids: The counted output token ids (EOS included, nothing after it).
        stopped_by_eos: Whether generation ended on EOS (else on the length limit).
    """

    index: int
    batch_index: int
    input_tokens: int
    arrival_s: float
    submit_s: float
    token_times_s: tuple[float, ...]
    output_ids: tuple[int, ...]
    stopped_by_eos: bool


def request_result(timing: RequestTiming) -> RequestResult:
    """Derive TTFT, latency and inter-token intervals of one request."""
    times = np.asarray(timing.token_times_s, dtype=float)
    return RequestResult(
        index=timing.index,
        batch_index=timing.batch_index,
        input_tokens=timing.input_tokens,
        output_tokens=len(times),
        stopped_by_eos=timing.stopped_by_eos,
        queue_s=float(timing.submit_s - timing.arrival_s),
        ttft_s=float(times[0] - timing.arrival_s),
        latency_s=float(times[-1] - timing.arrival_s),
        itl_s=np.diff(times).tolist(),
    )


def stats(values: Sequence[float]) -> Stats | None:
    """Summary statistics, or None for an empty sample."""
    if len(values) == 0:
        return None
    a = np.asarray(values, dtype=float)
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
    notes = []
    if not itl:
        notes.append("itl_s is null: no request generated two or more tokens")
    if not trimmed:
        notes.append("itl_trimmed_s is null: no request generated four or more tokens")
    return Latency(
        ttft_s=stats([r.ttft_s for r in requests]),
        itl_s=stats(itl),
        itl_trimmed_s=stats(trimmed),
        request_latency_s=stats([r.latency_s for r in requests]),
        notes=notes,
    )
