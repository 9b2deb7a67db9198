"""Warmup until stable: batches until per-batch latency per token stops varying (bounded)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from llenergymeasure.backends.base import Backend, PreparedPrompt
from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.measure.progress import Progress
from llenergymeasure.results.models import Warmup


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Sample std / mean, or None for fewer than two values or a zero mean."""
    if len(values) < 2:
        return None
    a = np.asarray(values, dtype=float)
    mean = float(a.mean())
    return float(a.std(ddof=1)) / mean if mean > 0 else None


def warm_up(
    backend: Backend,
    prompts: Sequence[PreparedPrompt],
    batch_size: int,
    measurement: MeasurementConfig,
    progress: Progress | None = None,
) -> Warmup:
    """Generate the run's first batch again and again (all submitted at once) to warm up.

    The same work every time, so the spread of its latency is the system settling, not the
    prompts differing. At least `warmup_batches`; when `warmup_max_batches` allows more,
    batches continue until the coefficient of variation of wall time per output token over
    the last `warmup_cv_batches` batches is under `warmup_cv_threshold`, or the maximum.
    Nothing cached in the warmup reaches the window: the session resets the backend's
    caches after it.
    """
    minimum, maximum = measurement.warmup_batches, measurement.warmup_max_batches
    threshold, k = measurement.warmup_cv_threshold, measurement.warmup_cv_batches
    record = {"cv_threshold": threshold, "cv_batches": k}
    if minimum == 0 or not prompts:
        return Warmup(batches=0, duration_s=0.0, converged=None, note="no warmup", **record)
    adaptive = maximum > minimum
    batch = list(prompts[: min(batch_size, len(prompts))])
    per_token_s: list[float] = []
    batches = 0
    cv: float | None = None
    converged: bool | None = None
    start_s = time.perf_counter()
    for index in range(maximum if adaptive else minimum):
        if progress is not None:
            progress.detail = f"batch {index + 1} of at most {maximum if adaptive else minimum}"
        t0 = time.perf_counter()
        timings = backend.run(batch, offline=True)
        elapsed_s = time.perf_counter() - t0
        batches += 1
        tokens = sum(len(t.token_times_s) for t in timings)
        if tokens:  # a batch that yields no token has no time per token: not judged
            per_token_s.append(elapsed_s / tokens)
        if adaptive and len(per_token_s) >= k:
            cv = coefficient_of_variation(per_token_s[-k:])
            converged = cv is not None and cv < threshold
            if converged and batches >= minimum:
                break
    if not adaptive:
        note = f"fixed count of {minimum} batches: stability not judged"
    elif converged:
        note = f"stable: CV {cv:.3f} < {threshold} over the last {k} batches"
    elif cv is None:
        note = f"stability never judged: fewer than {k} batches fit under the maximum"
    else:
        note = f"not stable after {maximum} batches (CV {cv:.3f} >= {threshold}): window follows"
    return Warmup(
        batches=batches,
        duration_s=time.perf_counter() - start_s,
        converged=converged if adaptive else None,
        final_cv=cv,
        batch_s_per_token=per_token_s,
        note=note,
        **record,
    )
