"""Arrival schedules of a run's requests (offline, Poisson, constant rate), for every engine."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol


class ArrivalSettings(Protocol):
    """The arrival keys an engine's settings share (`settings.vllm`, `settings.tensorrt`)."""

    @property
    def arrival(self) -> str:
        """`offline`, `poisson` or `constant`."""

    @property
    def request_rate(self) -> float | None:
        """Requests per second (scheduled arrivals only)."""

    @property
    def arrival_seed(self) -> int:
        """Seed of the Poisson arrival times."""


def arrival_offsets_s(engine: ArrivalSettings, count: int) -> list[float]:
    """Submission time of each request after the window start (seconds).

    `offline`: all at 0; `constant`: every 1/rate; `poisson`: exponential gaps at `rate`.
    """
    if engine.arrival == "offline" or engine.request_rate is None:
        return [0.0] * count
    if engine.arrival == "constant":
        return [i / engine.request_rate for i in range(count)]
    rng = random.Random(engine.arrival_seed)
    offsets, t = [], 0.0
    for _ in range(count):
        offsets.append(t)
        t += rng.expovariate(engine.request_rate)
    return offsets


def submission_offsets_s(
    engine: ArrivalSettings,
    count: int,
    *,
    offline: bool = False,
    given: Sequence[float] | None = None,
) -> list[float]:
    """Offsets at which a pass submits its requests (seconds after its start).

    All at once when `offline` (warmup), else `given` or the engine's arrival schedule.
    """
    if offline:
        return [0.0] * count
    return list(given or arrival_offsets_s(engine, count))
