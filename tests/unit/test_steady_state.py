"""Steady state of continuous batching, decided from recorded token streams.

The streams come from a scripted continuous-batching engine: it steps every `step_s`, admits
queued requests (first come, first served) at a step's start while a slot is free, and gives
every running request one token at the step's end. Times are binary fractions, so every
expected window, saturation and token count below is exact and worked out in the comments.
The same arrival schedule is run on a fast and on a slow engine: how saturated the batch is
depends on the engine's speed, which is why the real-engine tests do not bound it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from llenergymeasure.backends.arrivals import arrival_offsets_s
from llenergymeasure.backends.base import RequestTiming
from llenergymeasure.config.models import VllmSettings
from llenergymeasure.measure.phases import split_window
from llenergymeasure.measure.steady_state import steady_state
from llenergymeasure.results.phase_models import STEADY_MIN_S, SteadyState

# Six requests at 2 per second: due at 0, 0.5, ..., 2.5 s (exact binary fractions).
SCHEDULE_S = arrival_offsets_s(VllmSettings(arrival="constant", request_rate=2.0), 6)


def scripted_engine(
    arrivals_s: Sequence[float], *, max_num_seqs: int, step_s: float, output_tokens: int
) -> list[RequestTiming]:
    """The token stream a continuous-batching engine of fixed step time delivers.

    Args:
        arrivals_s: When each request is submitted (the client submits on time).
        max_num_seqs: Slots in the running batch.
        step_s: Duration of one engine step.
        output_tokens: Tokens each request generates (one a step).
    """
    queue = sorted(range(len(arrivals_s)), key=lambda i: arrivals_s[i])
    running: dict[int, list[float]] = {}
    finished: dict[int, list[float]] = {}
    step = 0
    while queue or running:
        start_s, end_s = step * step_s, (step + 1) * step_s
        while queue and len(running) < max_num_seqs and arrivals_s[queue[0]] <= start_s:
            running[queue.pop(0)] = []
        for index in list(running):
            running[index].append(end_s)
            if len(running[index]) == output_tokens:
                finished[index] = running.pop(index)
        step += 1
    return [
        RequestTiming(
            index=i,
            batch_index=0,
            input_tokens=10,
            arrival_s=arrivals_s[i],
            submit_s=arrivals_s[i],
            token_times_s=tuple(finished[i]),
            output_ids=tuple(range(output_tokens)),
            stopped_by_eos=False,
        )
        for i in range(len(arrivals_s))
    ]


def steady_of(
    passes: Sequence[Sequence[RequestTiming]],
    max_num_seqs: int,
    energy_between: Callable[[float, float], float] | None = None,
) -> SteadyState:
    """The steady state of recorded passes (window: first submit to last token)."""
    timings = [t for p in passes for t in p]
    start_s = min(t.submit_s for t in timings)
    end_s = max(t.token_times_s[-1] for t in timings)
    return steady_state(
        backend="vllm",
        max_num_seqs=max_num_seqs,
        requests_per_pass=len(passes[0]),
        timeline=split_window(passes, start_s, end_s),
        energy_between=energy_between,
        energy_null_reason=None if energy_between else "no timeline in this test",
        to_window_s=lambda t: t - start_s,
        window_energy_per_output_token_j=None,
    )


def test_the_scripted_engine_queues_what_it_cannot_run():
    slow = scripted_engine(SCHEDULE_S, max_num_seqs=2, step_s=0.5, output_tokens=5)
    assert SCHEDULE_S == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    # r0 and r1 hold both slots until 2.5 and 3.0 s: r2 (due at 1.0) waits for 2.5.
    assert [t.token_times_s[0] for t in slow] == [0.5, 1.0, 3.0, 3.5, 5.5, 6.0]
    assert [t.token_times_s[-1] for t in slow] == [2.5, 3.0, 5.0, 5.5, 7.5, 8.0]


def test_a_fast_engine_under_a_trickle_is_unsaturated():
    # Step 0.125 s, 5 tokens: request i runs from 0.5 i to 0.5 i + 0.625 s, so two requests
    # overlap for 0.125 s around each arrival. The running batch first reaches its peak (2)
    # at 0.5 s and last falls from it at 2.625 s: a 2.125 s window in which 2 run for
    # 5 x 0.125 s and 1 for 4 x 0.375 s, so mean running = 2.75 / 2.125 = 22/17.
    stream = scripted_engine(SCHEDULE_S, max_num_seqs=2, step_s=0.125, output_tokens=5)
    s = steady_of([stream], 2, energy_between=lambda a, b: 100.0 * (b - a))  # 100 W
    assert s.null_reason is None and s.windows == 1 and s.peak_running == 2
    assert (s.start_t_window_s, s.end_t_window_s) == pytest.approx((0.5, 2.625))
    assert s.duration_s == pytest.approx(2.125)
    assert s.mean_running == pytest.approx(22 / 17)
    assert s.saturation == pytest.approx(11 / 17)  # 0.65 < SATURATION_THRESHOLD
    assert s.unsaturated is True and s.short is True
    # 30 tokens less r0's first four (by 0.5 s) and r5's last four (after 2.625 s).
    assert s.output_tokens == 22
    assert s.energy_j == pytest.approx(212.5)
    assert s.energy_per_output_token_j == pytest.approx(212.5 / 22)


def test_a_slow_engine_under_the_same_trickle_is_saturated():
    # Step 0.5 s: the requests queue (see the engine test above) and a freed slot is refilled
    # at once. The batch holds 2 from 0.5 s until r4 ends at 7.5 s.
    stream = scripted_engine(SCHEDULE_S, max_num_seqs=2, step_s=0.5, output_tokens=5)
    s = steady_of([stream], 2)
    assert s.null_reason is None and s.windows == 1 and s.peak_running == 2
    assert (s.start_t_window_s, s.end_t_window_s) == pytest.approx((0.5, 7.5))
    assert s.mean_running == pytest.approx(2.0) and s.saturation == pytest.approx(1.0)
    assert s.unsaturated is False and s.short is True
    assert s.output_tokens == 28  # all 30 but r0's first (at 0.5 s) and r5's last (8.0 s)
    assert s.energy_j is None and s.energy_null_reason == "no timeline in this test"


def test_a_slower_machine_stretches_the_window_but_not_its_saturation():
    # The slow engine and its schedule, every time x 4: a 28 s window, longer than ML.ENERGY's
    # 20 s minimum, with the same batch and tokens.
    schedule = [4 * t for t in SCHEDULE_S]
    stream = scripted_engine(schedule, max_num_seqs=2, step_s=2.0, output_tokens=5)
    s = steady_of([stream], 2)
    assert s.duration_s == pytest.approx(28.0) and s.duration_s >= STEADY_MIN_S
    assert s.short is False
    assert s.saturation == pytest.approx(1.0) and s.output_tokens == 28


def test_a_batch_that_drains_in_one_step_keeps_every_token_in_the_window():
    # Offline: six requests due at 0 on 2 slots, 4 tokens each, pairs finish together, so
    # the batch is full from the first step to the last: nothing is cut off by a drain.
    stream = scripted_engine([0.0] * 6, max_num_seqs=2, step_s=0.125, output_tokens=4)
    s = steady_of([stream], 2)
    assert (s.start_t_window_s, s.end_t_window_s) == pytest.approx((0.0, 1.5))
    assert s.saturation == pytest.approx(1.0)
    assert s.output_tokens == sum(len(t.token_times_s) for t in stream) == 24


def test_each_pass_has_its_own_window():
    first = scripted_engine(SCHEDULE_S, max_num_seqs=2, step_s=0.125, output_tokens=5)
    second = scripted_engine(
        [10.0 + t for t in SCHEDULE_S], max_num_seqs=2, step_s=0.125, output_tokens=5
    )
    s = steady_of([first, second], 2)
    assert s.windows == 2
    assert s.duration_s == pytest.approx(2 * 2.125)  # the idle gap between passes is out
    assert s.mean_running == pytest.approx(22 / 17) and s.output_tokens == 2 * 22
    assert (s.start_t_window_s, s.end_t_window_s) == pytest.approx((0.5, 12.625))


def test_the_window_ends_when_a_refill_leaves_a_slot_empty():
    # Three requests due at 0 on 2 slots: r2 takes one of the two slots r0 and r1 free
    # together at 0.5 s, so the batch falls 2 -> 1 there and the drain begins.
    stream = scripted_engine([0.0] * 3, max_num_seqs=2, step_s=0.125, output_tokens=4)
    s = steady_of([stream], 2)
    assert (s.start_t_window_s, s.end_t_window_s) == pytest.approx((0.0, 0.5))
    assert s.saturation == pytest.approx(1.0) and s.unsaturated is False
    assert s.output_tokens == 8  # r0's and r1's; r2 runs in the drain
