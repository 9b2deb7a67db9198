"""Warmup until stable and windows of at least `min_window_s`, on the embedded model."""

from __future__ import annotations

import pytest

from llenergymeasure.backends.transformers import TransformersBackend
from llenergymeasure.config import plan_campaign
from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.measure.session import measure
from llenergymeasure.measure.warmup import warm_up

pytestmark = pytest.mark.slow


def one_run(campaign, **measurement):
    campaign = {
        **campaign,
        "grid": {},
        "settings": {"batch_size": 1, "num_prompts": 2, "max_new_tokens": 4, "min_new_tokens": 4},
        "measurement": {"meter": "none", "warmup_batches": 0, **measurement},
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    return config


@pytest.fixture(scope="module")
def backend(embedded_model):
    config = one_run({"name": "w", "models": ["smollm2-135m"]})
    backend = TransformersBackend(config)
    backend.load()
    return backend


@pytest.mark.parametrize(
    ("measurement", "batches", "converged"),
    [
        # generous threshold: stable as soon as k = 3 batches can be judged
        ({"warmup_batches": 2, "warmup_max_batches": 6, "warmup_cv_threshold": 10.0}, 3, True),
        # a threshold no machine meets: bounded by the maximum, and says so
        ({"warmup_batches": 1, "warmup_max_batches": 4, "warmup_cv_threshold": 1e-12}, 4, False),
        # a fixed count: stability is not judged
        ({"warmup_batches": 2, "warmup_max_batches": 2}, 2, None),
    ],
)
def test_warmup_runs_until_stable_bounded_by_its_maximum(backend, measurement, batches, converged):
    record = warm_up(backend, backend.prepare_prompts(), 1, MeasurementConfig(**measurement))
    assert record.batches == batches == len(record.batch_s_per_token)
    assert record.converged is converged
    assert all(s > 0 for s in record.batch_s_per_token)
    if converged is False:
        assert record.note.startswith("not stable after 4 batches")


def test_min_window_s_repeats_the_prompt_set_until_the_window_is_long_enough(
    campaign, embedded_model
):
    config = one_run(campaign, min_window_s=1.5)
    result = measure(config)
    passes = result.timing.window_passes
    assert result.timing.window_s >= 1.5
    assert passes >= 2 and result.tokens.num_requests == 2 * passes
    assert sorted({r.pass_index for r in result.requests}) == list(range(passes))
    assert result.tokens.output_tokens == 4 * 2 * passes
    assert result.timing.cooldown.null_reason.startswith("meter 'none' gives no device telemetry")
