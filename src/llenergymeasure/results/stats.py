"""Summary statistics of repeats: mean, std, coefficient of variation, bootstrap CI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Statistics of one metric over the repeats of one configuration (None where undefined)."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None
    cv: float | None


def bootstrap_ci(
    values: Sequence[float], resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded, reproducible)."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = rng.choice(data, size=(resamples, len(data)), replace=True).mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def summarise(
    values: Sequence[float | None], resamples: int, confidence: float, seed: int
) -> Summary:
    """Mean, sample std, CV and bootstrap CI of the non-null values.

    One value has a mean but no spread: std, CV and CI are None, never 0.
    """
    data = [float(v) for v in values if v is not None and not np.isnan(v)]
    if not data:
        return Summary(0, None, None, None, None, None)
    mean = float(np.mean(data))
    if len(data) < 2:
        return Summary(1, mean, None, None, None, None)
    std = float(np.std(data, ddof=1))
    low, high = bootstrap_ci(data, resamples, confidence, seed)
    return Summary(len(data), mean, std, low, high, std / abs(mean) if mean else None)
