"""Real inference on the embedded model: token counting, per-token timing."""

from __future__ import annotations

import json

import pytest

from llenergymeasure.backends.transformers import TransformersBackend
from llenergymeasure.config import plan_campaign
from llenergymeasure.measure.session import measure

pytestmark = pytest.mark.slow

# Short factual questions end early with EOS; the essay request runs to the limit.
RAGGED = [
    "What is 2+2? Answer with one number.",
    "Write a long essay about the history of the Roman Empire.",
    "Say hi.",
    "Describe, in great detail, how a jet engine works.",
]


def _config(tmp_path, campaign, **settings):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in RAGGED))
    campaign = {
        **campaign,
        "settings": {"max_new_tokens": 24, "num_prompts": 4, "dtype": "float32", **settings},
        "grid": {},
        "prompts": {"source": "jsonl", "path": str(path)},
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    return config


def test_ragged_batch_counts_tokens_up_to_eos_and_no_padding(tmp_path, campaign, embedded_model):
    backend = TransformersBackend(_config(tmp_path, campaign, batch_size=4))
    backend.load()
    prompts = backend.prepare_prompts()
    timings = backend.generate(prompts, batch_index=0, first_index=0)

    assert [t.input_tokens for t in timings] == [len(p.token_ids) for p in prompts]
    assert len({t.input_tokens for t in timings}) > 1, "prompts should differ in length"
    by_eos = [t for t in timings if t.stopped_by_eos]
    to_limit = [t for t in timings if not t.stopped_by_eos]
    assert by_eos and to_limit, "the batch should be ragged: some stop early on EOS"
    for t in by_eos:
        assert t.output_ids[-1] in backend.eos_ids
        assert not set(t.output_ids[:-1]) & backend.eos_ids
        assert len(t.output_ids) <= 24
    assert min(len(t.output_ids) for t in by_eos) < 24, "one sequence should end early"
    for t in to_limit:
        assert len(t.output_ids) == 24
        assert not set(t.output_ids) & backend.eos_ids
    for t in timings:
        assert len(t.token_times_s) == len(t.output_ids)

    # Each sequence's tokens equal what it generates alone: padding changes nothing counted.
    alone = backend.generate(prompts[2:3], batch_index=0, first_index=0)[0]
    assert alone.output_ids == timings[2].output_ids


@pytest.mark.parametrize("batch_size", [1, 4])
def test_every_request_has_ttft_and_itl(tmp_path, campaign, embedded_model, batch_size):
    result = measure(_config(tmp_path, campaign, batch_size=batch_size, max_new_tokens=8))
    assert result.tokens.num_requests == 4
    assert len(result.requests) == 4
    for r in result.requests:
        assert 0 < r.ttft_s <= r.latency_s
        assert len(r.itl_s) == r.output_tokens - 1
        assert all(x > 0 for x in r.itl_s)
        assert r.batch_index == r.index // batch_size
    assert result.tokens.output_tokens == sum(r.output_tokens for r in result.requests)
    assert result.latency.ttft_s.n == 4
    assert result.throughput.output_tokens_per_s == pytest.approx(
        result.tokens.output_tokens / result.timing.window_s
    )
    assert result.energy.energy_j is None and "meter 'none'" in result.energy.null_reason
    assert result.energy_per_output_token_j is None
