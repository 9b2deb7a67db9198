"""The TensorRT-LLM adapter against the stand-in `tensorrt_llm` (tests/fakes/tensorrt_llm).

The real TensorRT-LLM needs an NVIDIA GPU: these tests drive the adapter's own code (timing,
token counting, EOS rules, engine timings, settings) through a stand-in that accepts only
the real API's keyword names, streams scripted outputs and behaves as TensorRT-LLM 1.2
does where llem's numbers depend on it (see its `_engine` module). The stand-in is put on
`sys.path` (or `PYTHONPATH`) only here.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from llenergymeasure.backends.arrivals import arrival_offsets_s
from llenergymeasure.backends.tensorrt import TensorrtBackend
from llenergymeasure.config import plan_campaign
from llenergymeasure.errors import BackendError
from llenergymeasure.measure.failure import classify
from llenergymeasure.measure.latency import latency_summary, request_result
from tests.fakes.nvml import FakeDevice, FakeScenario

pytest_plugins = ["tests.fakes.nvml.fixtures"]
FAKES = Path(__file__).parents[1] / "fakes"
SCENARIO_ENV = "FAKE_TRTLLM_SCENARIO"


@pytest.fixture
def fake_trtllm(monkeypatch):
    """The stand-in `tensorrt_llm`, importable for this test only."""
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delenv(SCENARIO_ENV, raising=False)
    yield
    for name in [m for m in sys.modules if m == "tensorrt_llm" or m.startswith("tensorrt_llm.")]:
        del sys.modules[name]


def scenario(monkeypatch, **script):
    monkeypatch.setenv(SCENARIO_ENV, json.dumps(script))


def config_for(campaign, model=None, **settings):
    data = {
        **campaign,
        "models": [model or "smollm2-135m"],
        "backends": ["tensorrt"],
        "settings": {"num_prompts": 12, "max_new_tokens": 16, "batch_size": 4, **settings},
        "grid": {},
        "measurement": {"device": "cuda", "meter": "none"},
    }
    (config,) = plan_campaign(data, "c.yaml").runs.values()
    return config


def loaded(config):
    backend = TensorrtBackend(config)
    backend.load()
    return backend


def test_the_stand_in_refuses_what_the_real_api_refuses(fake_trtllm, embedded_model):
    from tensorrt_llm import LLM, SamplingParams
    from tensorrt_llm.llmapi import KvCacheConfig

    with pytest.raises(TypeError):
        SamplingParams(max_new_tokens=4)  # the real name is max_tokens
    with pytest.raises(ValidationError, match="max_batch_sise"):
        LLM(model=str(embedded_model), max_batch_sise=4)
    with pytest.raises(ValidationError, match="free_gpu_memory_frac"):
        KvCacheConfig(free_gpu_memory_frac=0.5)


def test_every_token_of_every_request_is_timestamped(fake_trtllm, campaign, embedded_model):
    backend = loaded(config_for(campaign))
    try:
        timings = backend.run(backend.prepare_prompts())
    finally:
        backend.close()
    assert len(timings) == 12
    for t in timings:
        assert len(t.token_times_s) == len(t.output_ids) > 0
        assert sum(t.chunk_sizes) == len(t.output_ids)
        assert len(set(t.token_times_s)) == len(t.chunk_sizes), "one arrival per update"
        assert list(t.token_times_s) == sorted(t.token_times_s)
        assert t.token_times_s[0] > t.submit_s >= t.arrival_s
    # The stand-in yields several tokens per update (speculative decoding): one chunk each.
    assert any(size > 1 for t in timings for size in t.chunk_sizes)
    result = request_result(timings[0])
    assert result.itl_excluded == sum(size - 1 for size in timings[0].chunk_sizes)
    assert len(result.itl_s) == len(timings[0].chunk_sizes) - 1
    assert latency_summary([request_result(t) for t in timings]).itl_excluded_intervals > 0


def test_tokens_are_counted_with_the_eos_rules_of_every_backend(
    fake_trtllm, campaign, embedded_model
):
    backend = loaded(config_for(campaign))
    try:
        timings = backend.run(backend.prepare_prompts())
    finally:
        backend.close()
    stopped = [t for t in timings if t.stopped_by_eos]
    at_length = [t for t in timings if not t.stopped_by_eos]
    assert stopped and at_length, "both finish reasons occur"
    for t in stopped:  # the stand-in's EOS comes 5th; it is counted, nothing after it
        assert len(t.output_ids) == 5 and t.output_ids[-1] == 2
    for t in at_length:
        assert len(t.output_ids) == 16 and 2 not in t.output_ids


def eos_model(tmp_path, embedded_model, eos_ids):
    """The embedded model's tokenizer with a generation config ending on several EOS ids."""
    path = tmp_path / "two-eos"
    path.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedded_model / name, path / name)
    if (embedded_model / "chat_template.jinja").exists():
        shutil.copy(embedded_model / "chat_template.jinja", path / "chat_template.jinja")
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_ids}))
    return str(path)


def test_an_eos_among_stop_token_ids_is_kept_and_counted(
    fake_trtllm, monkeypatch, tmp_path, campaign, embedded_model
):
    scenario(monkeypatch, eos="stop_token", eos_after=3)
    backend = loaded(config_for(campaign, model=eos_model(tmp_path, embedded_model, [2, 7])))
    try:
        assert backend.eos_ids == {2, 7} and backend.end_id == 2
        params = backend.sampling_params()
        assert params.stop_token_ids == [7] and params.include_stop_str_in_output
        timings = backend.run(backend.prepare_prompts())
    finally:
        backend.close()
    for t in timings:
        assert t.stopped_by_eos and t.output_ids[-1] == 7 and len(t.output_ids) == 3


def test_an_end_id_the_engine_does_not_return_still_counts(
    fake_trtllm, monkeypatch, campaign, embedded_model
):
    scenario(monkeypatch, eos="end_id", eos_after=4, strip_end_id=True)
    backend = loaded(config_for(campaign))
    try:
        timings = backend.run(backend.prepare_prompts())
    finally:
        backend.close()
    for t in timings:
        assert t.stopped_by_eos and len(t.output_ids) == 4 and t.output_ids[-1] == 2
        assert sum(t.chunk_sizes) == 4 and t.token_times_s[-1] == max(t.token_times_s)


def test_ignore_eos_and_min_new_tokens_fix_the_length(
    fake_trtllm, monkeypatch, campaign, embedded_model
):
    scenario(monkeypatch, eos="end_id", eos_after=3)
    backend = loaded(config_for(campaign, max_new_tokens=10, tensorrt={"ignore_eos": True}))
    try:
        timings = backend.run(backend.prepare_prompts())
    finally:
        backend.close()
    for t in timings:  # the EOS the engine generated and ignored is an ordinary token here
        assert len(t.output_ids) == 10 and not t.stopped_by_eos and 2 in t.output_ids
    backend = loaded(config_for(campaign, max_new_tokens=10, min_new_tokens=6))
    try:
        assert backend.sampling_params().min_tokens == 6
        timings = backend.run(backend.prepare_prompts())
    finally:
        backend.close()
    assert all(t.stopped_by_eos and len(t.output_ids) == 7 for t in timings)


def stream(llm, prompt, params):
    """Every token id the stand-in streams for one request, and how it finished."""

    async def collect():
        request = llm.generate_async(prompt, sampling_params=params, streaming=True)
        async for _ in request:
            pass
        out = request.outputs[0]
        return out.token_ids, out.finish_reason, out.stop_reason

    return asyncio.run(collect())


def test_the_stand_in_behaves_as_tensorrt_llm_1_2(
    fake_trtllm, monkeypatch, tmp_path, embedded_model
):
    from tensorrt_llm import LLM, SamplingParams

    scenario(monkeypatch, eos="stop_token", eos_after=3)
    llm = LLM(model=str(embedded_model), max_seq_len=40, max_num_tokens=32)
    prompt = list(range(10, 30))
    # ignore_eos disables end_id only: a stop token still ends the request (3rd, dropped
    # from the output without include_stop_str_in_output)
    params = SamplingParams(end_id=2, stop_token_ids=[7], ignore_eos=True)
    assert stream(llm, prompt, params)[1:] == ("stop", 7)
    assert len(stream(llm, prompt, params)[0]) == 2
    # min_tokens bans end_id only: the stop token ends the request 3rd all the same
    params = SamplingParams(end_id=2, stop_token_ids=[7], min_tokens=6, max_tokens=10)
    assert stream(llm, prompt, params)[1:] == ("stop", 7)
    assert len(stream(llm, prompt, params)[0]) == 2
    # ...and end_id from the 7th token on; older builds count the prompt, so not at all here
    scenario(monkeypatch, eos="end_id", eos_after=3)
    llm = LLM(model=str(embedded_model))
    params = SamplingParams(end_id=2, min_tokens=6, max_tokens=10)
    assert len(stream(llm, prompt, params)[0]) == 7
    scenario(monkeypatch, eos="end_id", eos_after=3, min_tokens_counts_prompt=True)
    llm = LLM(model=str(embedded_model))
    assert len(stream(llm, prompt, params)[0]) == 3
    # prompt + max_tokens over max_seq_len: clamped to 40 - 20 tokens, no error
    scenario(monkeypatch, eos="never")
    llm = LLM(model=str(embedded_model), max_seq_len=40, max_num_tokens=32)
    ids, reason, _ = stream(llm, prompt, SamplingParams(end_id=2, max_tokens=64))
    assert (len(ids), reason) == (20, "length")
    with pytest.raises(ValueError, match=r"should not exceed max_num_tokens \(32\)"):
        stream(llm, list(range(10, 43)), SamplingParams(end_id=2))
    chunked = LLM(model=str(embedded_model), max_num_tokens=32, enable_chunked_prefill=True)
    assert len(stream(chunked, list(range(10, 43)), SamplingParams(end_id=2, max_tokens=4))[0]) == 4
    # kv_cache_config.dtype: auto keeps the checkpoint's (none here), fp8 overrides it; a
    # dtype name such as float16 is taken by KvCacheConfig and refused when the model loads
    from tensorrt_llm.llmapi import KvCacheConfig

    auto = LLM(model=str(embedded_model), kv_cache_config=KvCacheConfig(dtype="auto"))
    fp8 = LLM(model=str(embedded_model), kv_cache_config=KvCacheConfig(dtype="fp8"))
    assert auto.args.quant_config.kv_cache_quant_algo is None
    assert fp8.args.quant_config.kv_cache_quant_algo == "FP8"
    with pytest.raises(ValueError, match="invalid type"):
        LLM(model=str(embedded_model), kv_cache_config=KvCacheConfig(dtype="float16"))


def test_ignore_eos_passes_no_stop_token_ids(
    fake_trtllm, monkeypatch, tmp_path, campaign, embedded_model
):
    # Every prompt would end on the second EOS id (a stop token) 3rd: with ignore_eos the
    # engine still stops there if it is among stop_token_ids.
    scenario(monkeypatch, eos="stop_token", eos_after=3)
    model = eos_model(tmp_path, embedded_model, [2, 7])
    backend = loaded(
        config_for(campaign, model=model, max_new_tokens=10, tensorrt={"ignore_eos": True})
    )
    try:
        params = backend.sampling_params()
        assert params.stop_token_ids is None and params.ignore_eos
        timings = backend.run(backend.prepare_prompts())
        facts = backend.engine_facts()
    finally:
        backend.close()
    assert all(len(t.output_ids) == 10 and not t.stopped_by_eos for t in timings)
    assert facts["stop_token_ids"] == [] and facts["clamped_prompts"] == 0


def test_min_new_tokens_bans_end_id_only(
    fake_trtllm, monkeypatch, tmp_path, campaign, embedded_model
):
    scenario(monkeypatch, eos="stop_token", eos_after=3)
    model = eos_model(tmp_path, embedded_model, [2, 7])
    backend = loaded(config_for(campaign, model=model, max_new_tokens=10, min_new_tokens=6))
    try:
        timings = backend.run(backend.prepare_prompts())
        facts = backend.engine_facts()
    finally:
        backend.close()
    # The other EOS id is not banned by min_tokens: it ends every request 3rd, counted so.
    assert all(
        t.stopped_by_eos and t.output_ids[-1] == 7 and len(t.output_ids) == 3 for t in timings
    )
    assert "bans end_id (2) only" in facts["min_tokens_note"] and "[7]" in facts["min_tokens_note"]
    # With ignore_eos it is moot and not passed (some 1.2 builds would ban id -1 instead).
    backend = loaded(
        config_for(campaign, max_new_tokens=10, min_new_tokens=6, tensorrt={"ignore_eos": True})
    )
    try:
        assert backend.sampling_params().min_tokens is None
    finally:
        backend.close()


def test_a_build_that_counts_the_prompt_toward_min_tokens_fails_the_run(
    fake_trtllm, monkeypatch, campaign, embedded_model
):
    scenario(monkeypatch, eos="end_id", eos_after=3, min_tokens_counts_prompt=True)
    backend = loaded(config_for(campaign, max_new_tokens=10, min_new_tokens=6))
    try:
        with pytest.raises(BackendError, match="counts the prompt toward min_tokens"):
            backend.run(backend.prepare_prompts())
    finally:
        backend.close()


def sampled_outputs(campaign, seed, **tensorrt):
    config = config_for(campaign, decoding="sample", temperature=0.8, seed=seed, tensorrt=tensorrt)
    backend = loaded(config)
    try:
        timings = backend.run(backend.prepare_prompts())
        return [t.output_ids for t in timings], backend.engine_facts()
    finally:
        backend.close()


def test_the_seed_is_recorded_as_ignored_under_torch_sampler(
    fake_trtllm, monkeypatch, campaign, embedded_model
):
    scenario(monkeypatch, eos="never")
    five, facts = sampled_outputs(campaign, 5)
    six, _ = sampled_outputs(campaign, 6)
    assert five == six, "TorchSampler draws the same whatever the seed"
    assert (facts["sampler"], facts["seed_honoured"]) == ("TorchSampler", False)
    assert "ignores SamplingParams.seed" in facts["seed_note"]
    trt = {"llm_kwargs": {"sampler_type": "TRTLLMSampler"}}
    five, facts = sampled_outputs(campaign, 5, **trt)
    again, _ = sampled_outputs(campaign, 5, **trt)
    six, _ = sampled_outputs(campaign, 6, **trt)
    assert five == again and five != six
    assert (facts["sampler"], facts["seed_honoured"]) == ("TRTLLMSampler", True)


def prompt_lengths(campaign):
    backend = loaded(config_for(campaign))
    try:
        return [len(p.token_ids) for p in backend.prepare_prompts()]
    finally:
        backend.close()


def test_outputs_clamped_to_max_seq_len_are_recorded(
    fake_trtllm, monkeypatch, campaign, embedded_model
):
    scenario(monkeypatch, eos="never")
    lengths = prompt_lengths(campaign)
    limit = max(lengths) + 4  # the longest prompt has room for 4 of the 16 tokens
    backend = loaded(config_for(campaign, tensorrt={"max_seq_len": limit}))
    try:
        timings = backend.run(backend.prepare_prompts())
        facts = backend.engine_facts()
    finally:
        backend.close()
    expected = [min(16, limit - n) for n in lengths]
    assert [len(t.output_ids) for t in timings] == expected
    clamped = sum(e < 16 for e in expected)
    assert clamped > 0 and facts["clamped_prompts"] == clamped
    assert facts["max_seq_len"] == limit and facts["max_seq_len_source"].startswith("settings")
    assert "clamps the output to max_seq_len - prompt" in facts["clamped_note"]
    # Unset, the engine takes the model's limit, and nothing is clamped here.
    backend = loaded(config_for(campaign))
    try:
        backend.run(backend.prepare_prompts())
        facts = backend.engine_facts()
    finally:
        backend.close()
    assert facts["max_seq_len_source"] == "the model's max_position_embeddings"
    assert facts["clamped_prompts"] == 0 and facts["clamped_note"] is None


def test_prompts_the_engine_would_refuse_fail_before_the_window(
    fake_trtllm, campaign, embedded_model
):
    lengths = prompt_lengths(campaign)
    budget = max(lengths) - 1
    backend = loaded(config_for(campaign, tensorrt={"max_num_tokens": budget}))
    try:
        with pytest.raises(
            BackendError, match=rf"exceeds the engine's max_num_tokens \({budget}\)"
        ):
            backend.prepare_prompts()
    finally:
        backend.close()
    chunked = {"max_num_tokens": budget, "enable_chunked_prefill": True}
    backend = loaded(config_for(campaign, tensorrt=chunked))
    try:
        assert len(backend.run(backend.prepare_prompts())) == 12
    finally:
        backend.close()
    assert max(lengths) >= 16, "a prompt must reach the smallest max_seq_len allowed"
    backend = loaded(config_for(campaign, tensorrt={"max_seq_len": max(lengths)}))
    try:
        with pytest.raises(BackendError, match="leaves no output under max_seq_len"):
            backend.prepare_prompts()
    finally:
        backend.close()


def quantised_checkpoint(tmp_path, embedded_model, kv_cache_quant_algo):
    path = Path(eos_model(tmp_path, embedded_model, [2]))
    section = {"quant_algo": "FP8", "kv_cache_quant_algo": kv_cache_quant_algo}
    (path / "hf_quant_config.json").write_text(json.dumps({"quantization": section}))
    return str(path)


@pytest.mark.parametrize(
    ("kv_algo", "setting", "recorded", "engine_algo"),
    [
        ("FP8", None, "fp8 (the checkpoint's kv_cache_quant_algo FP8)", "FP8"),
        ("FP8", "auto", "fp8 (the checkpoint's kv_cache_quant_algo FP8)", "FP8"),
        (None, None, "bfloat16 (the model dtype)", None),
        (None, "fp8", "fp8 (settings.tensorrt.kv_cache_dtype)", "FP8"),
    ],
)
def test_the_kv_cache_dtype_the_engine_runs_is_recorded(
    fake_trtllm, tmp_path, campaign, embedded_model, kv_algo, setting, recorded, engine_algo
):
    model = quantised_checkpoint(tmp_path, embedded_model, kv_algo)
    tensorrt = {"quantization": "fp8", **({"kv_cache_dtype": setting} if setting else {})}
    backend = loaded(config_for(campaign, model=model, tensorrt=tensorrt))
    try:
        assert backend.engine_facts()["kv_cache_dtype"] == recorded
        assert backend.engine.args.quant_config.kv_cache_quant_algo == engine_algo
    finally:
        backend.close()


def test_engine_timings_are_on_llems_clock(fake_trtllm, campaign, embedded_model):
    backend = loaded(config_for(campaign, num_prompts=8, batch_size=2))
    try:
        timings = backend.run(backend.prepare_prompts())
    finally:
        backend.close()
    for t in timings:
        e = t.engine_timing
        assert e is not None and e.clock.startswith("CLOCK_MONOTONIC")
        # TensorRT-LLM's steady_clock is CLOCK_MONOTONIC, time.perf_counter's clock on
        # Linux: the engine's times fall between llem's submit and llem's receipt.
        assert t.submit_s <= e.arrival_s <= e.first_scheduled_s <= e.first_token_s
        assert e.first_token_s <= t.token_times_s[0] and e.last_token_s <= t.token_times_s[-1]
        r = request_result(t)
        assert r.engine_timing.ttft_s == pytest.approx(e.first_token_s - e.arrival_s)
        assert r.engine_timing.queue_s == pytest.approx(e.first_scheduled_s - e.arrival_s)
        assert r.ttft_s == pytest.approx(t.token_times_s[0] - t.arrival_s)
    # Batch 2 of 8 requests at once: the (i+2)-th scheduled waited for the i-th to finish.
    scheduled = sorted(t.engine_timing.first_scheduled_s for t in timings)
    finished = sorted(t.engine_timing.last_token_s for t in timings)
    assert all(scheduled[i + 2] >= finished[i] for i in range(len(timings) - 2))


def test_sampling_settings_reach_sampling_params(fake_trtllm, campaign, embedded_model):
    backend = loaded(config_for(campaign))
    try:
        greedy = backend.sampling_params()
        assert greedy.top_k == 1 and greedy.temperature is None
        assert greedy.return_perf_metrics and greedy.end_id == 2 and greedy.max_tokens == 16
    finally:
        backend.close()
    sample = config_for(campaign, decoding="sample", temperature=0.7, top_p=0.9, seed=5)
    backend = loaded(sample)
    try:
        params = backend.sampling_params()
        assert (params.temperature, params.top_p, params.top_k, params.seed) == (0.7, 0.9, None, 5)
        assert backend.versions()["tensorrt_llm"] == "1.2.1"
    finally:
        backend.close()


def test_poisson_arrivals_follow_the_schedule(fake_trtllm, campaign, embedded_model):
    config = config_for(
        campaign, batch_size=8, tensorrt={"arrival": "poisson", "request_rate": 40.0}
    )
    backend = loaded(config)
    try:
        prompts = backend.prepare_prompts()
        schedule = arrival_offsets_s(config.settings.tensorrt, len(prompts))
        timings = backend.run(prompts)
        offline = backend.run(prompts, offline=True)
    finally:
        backend.close()
    due = min(t.arrival_s for t in timings)
    assert [t.arrival_s - due for t in timings] == pytest.approx(schedule, abs=1e-9)
    for t in timings:
        r = request_result(t)
        assert r.ttft_s == pytest.approx(r.service_ttft_s + r.queue_s)
    assert len({t.arrival_s for t in offline}) == 1, "warmup submits all at once"


def test_a_misspelt_engine_setting_fails_with_its_name(fake_trtllm, campaign, embedded_model):
    config = config_for(campaign, tensorrt={"llm_kwargs": {"max_num_tokenz": 64}})
    with pytest.raises(BackendError, match=r"does not accept engine setting\(s\) max_num_tokenz"):
        TensorrtBackend(config).load()
    backend = loaded(config_for(campaign, tensorrt={"llm_kwargs": {"print_iter_log": True}}))
    try:
        args = backend.engine.args
        assert args.print_iter_log is True and args.kv_cache_config.enable_block_reuse is False
    finally:
        backend.close()


def test_an_engine_that_fails_to_start_fails_in_one_classified_line(
    fake_trtllm, monkeypatch, campaign, embedded_model
):
    scenario(monkeypatch, fail_on_init="CUDA out of memory. Tried to allocate 2.00 GiB\nmore")
    with pytest.raises(BackendError) as info:
        TensorrtBackend(config_for(campaign)).load()
    assert str(info.value) == (
        "tensorrt_llm rejected the engine settings: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    assert classify(info.value) == "out_of_memory"
    scenario(monkeypatch, fail_on_init="Unsupported architecture GPT2LMHeadModel")
    with pytest.raises(BackendError) as info:
        TensorrtBackend(config_for(campaign)).load()
    assert classify(info.value) == "unsupported_config"


def test_doctor_says_the_backend_has_not_run_on_a_gpu(fake_trtllm):
    from llenergymeasure.doctor import _tensorrt_row

    name, available, detail = _tensorrt_row()
    assert (name, available) == ("tensorrt backend", True)
    assert "tensorrt_llm 1.2.1" in detail and "not been run on a GPU yet" in detail


def test_doctor_without_tensorrt_says_how_to_get_it():
    from llenergymeasure.doctor import _tensorrt_row

    name, available, detail = _tensorrt_row()
    assert not available and "not installed" in detail


@pytest.mark.slow
def test_llem_run_of_a_tensorrt_config_on_fake_gpus(
    tmp_path, campaign, embedded_model, fake_nvml_env
):
    """`llem run` end to end: device cuda, NVML (the fake library), the stand-in engine."""
    from tests.llem import llem_run

    data = {
        "name": "trt",
        "models": ["smollm2-135m"],
        "backends": ["tensorrt"],
        "settings": {
            "batch_size": 4,
            "num_prompts": 8,
            "max_new_tokens": 16,
            "tensorrt": {"free_gpu_memory_fraction": 0.4, "max_seq_len": 1024},
        },
        "measurement": {
            "device": "cuda",
            "meter": "nvml",
            "baseline_s": 0.5,
            "cooldown_max_s": 1,
            "warmup_batches": 1,
            "warmup_max_batches": 2,
            "min_window_s": 1.0,
        },
    }
    (config,) = plan_campaign(data, "c.yaml").runs.values()
    env = fake_nvml_env(FakeScenario(devices=[FakeDevice(name="NVIDIA H100 80GB HBM3")]))
    env["PYTHONPATH"] = f"{FAKES}:{env.get('PYTHONPATH', '')}".rstrip(":")
    env["FAKE_TRTLLM_TRACE"] = str(tmp_path / "trace.jsonl")
    result = llem_run(config, tmp_path, env)

    assert result["status"] == "succeeded"
    assert result["energy"]["method"] == "nvml" and result["energy"]["energy_j"] > 0
    gpu0 = "GPU-fa4e0000-0000-0000-0000-000000000000"
    assert [d["device"] for d in result["energy"]["per_device"]] == [gpu0]
    assert result["environment"]["backend"]["tensorrt_llm"] == "1.2.1"
    assert result["tokens"]["output_tokens"] == sum(r["output_tokens"] for r in result["requests"])
    assert result["latency"]["itl_excluded_intervals"] > 0
    assert "TensorRT-LLM" in result["memory"]["rss_scope"]
    assert result["cache"]["prefix_caching"] is False
    for r in result["requests"]:
        engine = r["engine_timing"]
        assert engine["ttft_s"] >= 0 and engine["clock"].startswith("CLOCK_MONOTONIC")
    facts = result["environment"]["engine"]
    assert facts["sampler"] == "TorchSampler" and facts["seed_honoured"] is None  # greedy
    assert facts["kv_cache_dtype"] == "bfloat16 (the model dtype)"
    assert facts["max_seq_len"] == 1024 and facts["clamped_prompts"] == 0
    (traced,) = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert traced["max_batch_size"] == 4 and traced["max_seq_len"] == 1024
    assert traced["kv_cache_config"]["free_gpu_memory_fraction"] == 0.4

    tables = tmp_path / "tables"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "llenergymeasure",
            "tables",
            str(tmp_path / "run" / "result.json"),
            "--out-dir",
            str(tables),
        ],
        check=True,
        capture_output=True,
    )
    runs = pd.read_parquet(tables / "runs.parquet")
    assert json.loads(runs.loc[0, "tensorrt_settings"])["max_batch_size"] == 4
    latency = pd.read_parquet(tables / "latency.parquet")
    assert latency["engine_ttft_s"].notna().all() and (latency["engine_queue_s"] >= 0).all()
