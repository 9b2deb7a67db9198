"""The engine's own view of the window, summarised per run (`results.phase_models.EngineView`).

vLLM reports its scheduler after every step (`backends.engine_stats`); transformers runs
static batches, whose running batch is the batch itself from submission to its last token;
TensorRT-LLM's iteration statistics are not collected (yet): its view is null with that
reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from llenergymeasure.backends.base import RequestTiming
from llenergymeasure.backends.engine_stats import SchedulerLog, SchedulerSample
from llenergymeasure.results.phase_models import EngineView

STATIC_SOURCE = (
    "static_batches: transformers generates each batch to its end; the running batch is the "
    "batch's size from its submission to its last token"
)
TENSORRT_REASON = (
    "TensorRT-LLM's iteration statistics (LLM.get_stats) are not collected: saturation comes "
    "from token events"
)


def held_mean(points: Sequence[tuple[float, float]], start_s: float, end_s: float) -> float | None:
    """Time-weighted mean over [start_s, end_s] of a step function given at `points`.

    Each value holds until the next point, the last until `end_s`; before the first point
    the function is unknown, so the mean covers [max(start_s, first point), end_s]. None
    where that span is empty.
    """
    ordered = sorted(points)
    if not ordered:
        return None
    begin_s = max(start_s, ordered[0][0])
    if end_s <= begin_s:
        return None
    area = 0.0
    for (t, value), (t_next, _) in pairwise([*ordered, (end_s, 0.0)]):
        lo, hi = max(t, begin_s), min(t_next, end_s)
        if hi > lo:
            area += value * (hi - lo)
    return area / (end_s - begin_s)


@dataclass(frozen=True)
class _Window:
    inside: list[SchedulerSample]
    held: list[SchedulerSample]  # the last sample before the window, then those inside


def _window(samples: Sequence[SchedulerSample], start_s: float, end_s: float) -> _Window:
    inside = [s for s in samples if start_s <= s.t_s <= end_s]
    before = [s for s in samples if s.t_s < start_s]
    prior = [max(before, key=lambda s: s.t_s)] if before else []
    return _Window(inside=inside, held=[*prior, *inside])


def scheduler_view(
    log: SchedulerLog, start_unix_s: float, end_unix_s: float, max_num_seqs: int
) -> EngineView:
    """The window's summary of an engine's scheduler samples (Unix seconds)."""
    w = _window(log.samples, start_unix_s, end_unix_s)
    if not w.inside:
        return EngineView(
            source=log.source,
            null_reason="no engine step was recorded inside the window",
            max_num_seqs=max_num_seqs,
        )

    def mean(pick: str) -> float | None:
        points = [(s.t_s, float(v)) for s in w.held if (v := getattr(s, pick)) is not None]
        return held_mean(points, start_unix_s, end_unix_s)

    kv = [s.kv_cache_usage for s in w.inside if s.kv_cache_usage is not None]
    mean_running = mean("running_reqs")
    return EngineView(
        source=log.source,
        samples=len(w.inside),
        max_num_seqs=max_num_seqs,
        mean_running=mean_running,
        peak_running=max(s.running_reqs for s in w.inside),
        saturation=mean_running / max_num_seqs if mean_running is not None else None,
        mean_waiting=mean("waiting_reqs"),
        peak_waiting=max(s.waiting_reqs for s in w.inside),
        mean_kv_cache_usage=mean("kv_cache_usage"),
        peak_kv_cache_usage=max(kv) if kv else None,
        preemptions=sum(s.preempted_reqs for s in w.inside),
    )


def static_view(passes: Sequence[Sequence[RequestTiming]], batch_size: int) -> EngineView:
    """transformers: each static batch runs its size from submission to its last token."""
    spans: dict[tuple[int, int], list[RequestTiming]] = {}
    for n, timings in enumerate(passes):
        for t in timings:
            spans.setdefault((n, t.batch_index), []).append(t)
    weighted, total_s, peak = 0.0, 0.0, 0
    for batch in spans.values():
        ends = [t.token_times_s[-1] for t in batch if t.token_times_s]
        if not ends:
            continue
        duration_s = max(ends) - min(t.submit_s for t in batch)
        weighted += len(batch) * duration_s
        total_s += duration_s
        peak = max(peak, len(batch))
    if total_s <= 0:
        return EngineView(
            source=STATIC_SOURCE,
            null_reason="no batch produced a token",
            max_num_seqs=batch_size,
        )
    mean_running = weighted / total_s
    return EngineView(
        source=STATIC_SOURCE,
        max_num_seqs=batch_size,
        mean_running=mean_running,
        peak_running=peak,
        saturation=mean_running / batch_size,
    )


def running_points(log: SchedulerLog | None, unix_to_perf_s: float) -> list[tuple[float, float]]:
    """The running count at each step, on the perf_counter clock of the token times."""
    if log is None:
        return []
    return [(s.t_s + unix_to_perf_s, float(s.running_reqs)) for s in log.samples]
