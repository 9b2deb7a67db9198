from __future__ import annotations

import pytest

from llenergymeasure.backends.base import RequestTiming
from llenergymeasure.backends.transformers import count_output_tokens
from llenergymeasure.measure.latency import latency_summary, request_result, stats


def timing(times, submit=10.0, arrival=None, chunks=None):
    return RequestTiming(
        index=0,
        batch_index=0,
        input_tokens=5,
        arrival_s=submit if arrival is None else arrival,
        submit_s=submit,
        token_times_s=tuple(times),
        output_ids=tuple(range(len(times))),
        stopped_by_eos=False,
        chunk_sizes=chunks,
    )


def test_request_result_derives_ttft_itl_and_latency():
    r = request_result(timing([10.5, 10.6, 10.8, 11.1]))
    assert r.ttft_s == pytest.approx(0.5)
    assert r.latency_s == pytest.approx(1.1)
    assert r.itl_s == pytest.approx([0.1, 0.2, 0.3])
    assert r.output_tokens == 4


def test_trimmed_itl_drops_first_and_last_interval_of_each_request():
    requests = [request_result(timing([1, 2, 4, 7, 11], submit=0))]  # itl 1,2,3,4
    summary = latency_summary(requests)
    assert summary.itl_s.n == 4
    assert summary.itl_trimmed_s.n == 2
    assert summary.itl_trimmed_s.mean == pytest.approx(2.5)


def test_stats_percentiles_and_empty_sample():
    s = stats(list(range(1, 101)))
    assert s.median == pytest.approx(50.5)
    assert s.p95 == pytest.approx(95.05)
    assert s.min == 1 and s.max == 100
    assert stats([]) is None


def test_single_token_requests_have_null_itl_with_a_note():
    summary = latency_summary([request_result(timing([1.0], submit=0))])
    assert summary.itl_s is None and summary.ttft_s is not None
    assert any("itl_s is null" in n for n in summary.notes)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([5, 6, 2, 2, 2], (3, True)),  # EOS counted, padding after it not
        ([5, 6, 7], (3, False)),
        ([2, 2, 2], (1, True)),
        ([5, 2, 9, 2], (2, True)),  # nothing after the first EOS
    ],
)
def test_count_output_tokens_stops_at_first_eos(row, expected):
    assert count_output_tokens(row, {2}) == expected


def test_ttft_counts_from_arrival_and_queue_time_is_separate():
    t = RequestTiming(
        index=4,
        batch_index=1,
        input_tokens=5,
        arrival_s=0.0,
        submit_s=2.0,
        token_times_s=(2.5, 2.6),
        output_ids=(1, 2),
        stopped_by_eos=False,
    )
    r = request_result(t)
    assert r.queue_s == pytest.approx(2.0)
    assert r.ttft_s == pytest.approx(2.5)
    assert r.latency_s == pytest.approx(2.6)


def test_a_request_that_yields_no_token_has_null_latency_and_the_run_still_summarises():
    empty = request_result(timing([], submit=1.0))
    assert empty.output_tokens == 0
    assert empty.ttft_s is None and empty.latency_s is None and empty.service_ttft_s is None
    assert empty.null_reason == "the request yielded no token"
    summary = latency_summary([empty, request_result(timing([1.5, 1.7], submit=1.0))])
    assert summary.ttft_s.n == 1 and summary.ttft_s.mean == pytest.approx(0.5)
    assert summary.request_latency_s.n == 1
    assert summary.zero_token_requests == 1
    assert any("1 requests yielded no token" in n for n in summary.notes)


def test_tokens_delivered_in_one_chunk_give_no_zero_intervals():
    # 5 tokens in 3 arrivals: [1], [2, 2, 2] (one chunk of 3), [3]
    r = request_result(timing([1.0, 2.0, 2.0, 2.0, 3.0], submit=0.0, chunks=(1, 3, 1)))
    assert r.itl_s == pytest.approx([1.0, 1.0])
    assert 0.0 not in r.itl_s
    assert r.itl_excluded == 2
    summary = latency_summary([r])
    assert summary.itl_s.n == 2 and summary.itl_s.min == pytest.approx(1.0)
    assert summary.itl_excluded_intervals == 2


def test_scheduled_arrival_counts_lateness_in_ttft_and_service_ttft_without_it():
    # due at 1.0, submitted late at 1.4 (event loop busy), first token at 1.5
    r = request_result(timing([1.5, 1.6], submit=1.4, arrival=1.0))
    assert r.ttft_s == pytest.approx(0.5)
    assert r.service_ttft_s == pytest.approx(0.1)
    assert r.queue_s == pytest.approx(0.4)
    summary = latency_summary([r])
    assert summary.queue_s.median == pytest.approx(0.4)
    assert summary.service_ttft_s.median == pytest.approx(0.1)
