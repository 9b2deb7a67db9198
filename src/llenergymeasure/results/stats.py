"""Summary statistics of repeats: mean, std, coefficient of variation, confidence interval.

The interval of the mean is Student's t by default, at any n >= 2:
``mean ± t_{(1+c)/2, n-1} · s / √n``. It assumes roughly normal repeats, which is the
honest choice for the handful of repeats an energy campaign can afford; a percentile
bootstrap of two values would just be their [min, max]. A BCa bootstrap
(`scipy.stats.bootstrap`, seeded) can be asked for instead; it is used only from
``BCA_MIN_N`` repeats on, and below that (or where BCa is undefined) the t-interval is
used and the summary says so in ``ci_method``.

Degenerate data (every value equal, sample std 0) give a zero-width interval
``[mean, mean]``: it is what the t formula yields, the spread measured is exactly 0, and
it is reported as method ``t`` (BCa is undefined there). One value has a mean but no
spread: std, CV, CI and method are None, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

CiMethod = Literal["t", "bca"]
BCA_MIN_N = 10
"""Fewest repeats for which a BCa bootstrap interval is used (t below)."""


@dataclass(frozen=True)
class Summary:
    """Statistics of one metric over the repeats of one configuration (None where undefined).

    Attributes:
        n: Number of non-null values.
        mean: Arithmetic mean.
        std: Sample standard deviation (ddof = 1).
        ci_low: Lower bound of the confidence interval of the mean.
        ci_high: Upper bound of the confidence interval of the mean.
        cv: Coefficient of variation, std / |mean|.
        ci_method: The method that produced the interval (``t`` or ``bca``).
    """

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None
    cv: float | None
    ci_method: CiMethod | None


def t_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """Student-t interval of the mean: ``mean ± t_{(1+c)/2, n-1} · s / √n``.

    Args:
        values: At least two finite values.
        confidence: Confidence level in (0, 1), e.g. 0.95.

    Returns:
        The (low, high) bounds; ``(mean, mean)`` when every value is equal.

    Raises:
        ValueError: With fewer than two values.
    """
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n < 2:  # noqa: PLR2004 - a spread needs two values
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    mean = float(data.mean())
    std = float(data.std(ddof=1))
    half_width = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std / math.sqrt(n)
    return mean - half_width, mean + half_width


def bca_interval(
    values: Sequence[float], resamples: int, confidence: float, seed: int
) -> tuple[float, float] | None:
    """Bias-corrected and accelerated bootstrap interval of the mean (seeded, reproducible).

    Args:
        values: The values (at least two).
        resamples: Bootstrap resamples.
        confidence: Confidence level in (0, 1).
        seed: Seed of the resampling generator.

    Returns:
        The (low, high) bounds, or None where BCa is undefined (degenerate data: the
        acceleration or bias correction is not finite).
    """
    data = np.asarray(values, dtype=float)
    if np.ptp(data) == 0:
        return None
    result = stats.bootstrap(
        (data,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def summarise(
    values: Sequence[float | None],
    confidence: float,
    method: CiMethod = "t",
    resamples: int = 2000,
    seed: int = 0,
) -> Summary:
    """Mean, sample std, CV and confidence interval of the mean of the non-null values.

    Args:
        values: One metric over the repeats; None and NaN are skipped.
        confidence: Confidence level of the interval in (0, 1).
        method: ``t`` (Student-t, any n >= 2) or ``bca`` (BCa bootstrap, used only when
            n >= ``BCA_MIN_N`` and defined; the t-interval otherwise).
        resamples: Bootstrap resamples (``bca`` only).
        seed: Bootstrap seed (``bca`` only).

    Returns:
        The summary; ``ci_method`` names the method actually used. One value has a mean
        but std, CV, CI and method None, never 0.
    """
    data = [float(v) for v in values if v is not None and not np.isnan(v)]
    if not data:
        return Summary(0, None, None, None, None, None, None)
    mean = float(np.mean(data))
    if len(data) < 2:  # noqa: PLR2004 - a spread needs two values
        return Summary(1, mean, None, None, None, None, None)
    std = float(np.std(data, ddof=1))
    interval = None
    if method == "bca" and len(data) >= BCA_MIN_N:
        interval = bca_interval(data, resamples, confidence, seed)
    used: CiMethod = "bca" if interval is not None else "t"
    low, high = interval if interval is not None else t_interval(data, confidence)
    return Summary(len(data), mean, std, low, high, std / abs(mean) if mean else None, used)
