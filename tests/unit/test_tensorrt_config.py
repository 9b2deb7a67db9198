"""TensorRT-LLM settings: validation at plan time, engine arguments, precision (no engine)."""

from __future__ import annotations

import json
import shutil

import pytest

from llenergymeasure.backends.arrivals import arrival_offsets_s
from llenergymeasure.backends.tensorrt import (
    check_quantization,
    checkpoint_kv_cache_quant_algo,
    kv_cache_dtype,
    llm_arguments,
    sampler_record,
)
from llenergymeasure.config import plan_campaign
from llenergymeasure.config.loader import gpus_needed
from llenergymeasure.config.models import TensorrtSettings
from llenergymeasure.errors import ConfigError
from llenergymeasure.measure.precision import precision_for


def trt_campaign(campaign, **engine):
    return {
        **campaign,
        "backends": ["tensorrt"],
        "settings": {**campaign["settings"], "tensorrt": engine},
        "measurement": {**campaign["measurement"], "device": "cuda"},
    }


def test_batch_size_is_max_batch_size_and_settings_only_reach_tensorrt_runs(campaign):
    campaign = trt_campaign(
        campaign,
        free_gpu_memory_fraction=0.5,
        kv_cache_dtype="fp8",
        max_seq_len=2048,
        capacity_scheduler_policy="MAX_UTILIZATION",
        llm_kwargs={"disable_overlap_scheduler": True},
    )
    campaign["backends"] = ["transformers", "vllm", "tensorrt"]
    runs = plan_campaign(campaign, "c.yaml").runs.values()
    for run in runs:
        if run.backend != "tensorrt":
            assert run.settings.tensorrt is None
            continue
        assert run.settings.tensorrt.max_batch_size == run.settings.batch_size
        kwargs = llm_arguments(run)
        assert kwargs["max_batch_size"] == run.settings.batch_size
        assert kwargs["dtype"] == run.settings.dtype
        assert kwargs["model"] == kwargs["tokenizer"] == run.model.path
        # Block reuse (TensorRT-LLM's prefix caching, on by its default) is always off.
        assert kwargs["kv_cache_config"] == {
            "enable_block_reuse": False,
            "free_gpu_memory_fraction": 0.5,
            "dtype": "fp8",
        }
        assert kwargs["scheduler_config"] == {"capacity_scheduler_policy": "MAX_UTILIZATION"}
        assert kwargs["max_seq_len"] == 2048 and kwargs["disable_overlap_scheduler"] is True
        assert "max_num_tokens" not in kwargs  # None keeps TensorRT-LLM's default
    assert sorted(r.backend for r in runs) == ["tensorrt"] * 2 + ["transformers"] * 2 + ["vllm"] * 2


def test_gpus_are_tensor_times_pipeline_parallel(campaign):
    campaign = trt_campaign(campaign, tensor_parallel_size=2, pipeline_parallel_size=3)
    assert {gpus_needed(r) for r in plan_campaign(campaign, "c.yaml").runs.values()} == {6}


def test_a_swept_tensorrt_setting_gives_one_run_per_value(campaign):
    campaign = trt_campaign(campaign)
    campaign["grid"] = {"tensorrt": [{"max_num_tokens": 512}, {"max_num_tokens": 2048}]}
    runs = plan_campaign(campaign, "c.yaml").runs.values()
    assert sorted(r.settings.tensorrt.max_num_tokens for r in runs) == [512, 2048]


@pytest.mark.parametrize(
    ("engine", "key", "reason"),
    [
        ({"llm_kwargs": {"dtype": "half"}}, "settings.tensorrt", "llm_kwargs may not set dtype"),
        ({"llm_kwargs": {"kv_cache_config": {}}}, "settings.tensorrt", "kv_cache_config"),
        ({"llm_kwargs": {"max_seq_len": 8}}, "settings.tensorrt", "may not set max_seq_len"),
        ({"arrival": "poisson"}, "settings.tensorrt", "needs request_rate"),
        ({"request_rate": 2.0}, "settings.tensorrt", "request_rate needs arrival"),
        ({"max_seq_lenn": 16}, "settings.tensorrt.max_seq_lenn", "unknown key"),
        ({"quantization": "int8"}, "settings.tensorrt.quantization", "is not allowed"),
        ({"max_batch_size": 8}, "settings.tensorrt.max_batch_size", "differs from batch_size"),
        # TensorRT-LLM 1.2 takes any KvCacheConfig.dtype string but acts on auto and fp8 only
        ({"kv_cache_dtype": "float16"}, "settings.tensorrt.kv_cache_dtype", "auto"),
    ],
)
def test_bad_tensorrt_settings_fail_at_plan_time(campaign, engine, key, reason):
    campaign["grid"] = {}
    with pytest.raises(ConfigError) as info:
        plan_campaign(trt_campaign(campaign, **engine), "c.yaml")
    assert info.value.key == key
    assert reason in info.value.reason


def test_tensorrt_on_cpu_fails_at_plan_time(campaign):
    campaign = trt_campaign(campaign)
    campaign["measurement"]["device"] = "cpu"
    with pytest.raises(ConfigError) as info:
        plan_campaign(campaign, "c.yaml")
    assert info.value.key == "measurement.device"
    assert "tensorrt needs measurement.device cuda" in info.value.reason


def test_transformers_quantisation_is_refused_for_tensorrt(campaign):
    campaign = trt_campaign(campaign)
    campaign["settings"]["quantization"] = "torchao-int8-weight"
    with pytest.raises(ConfigError, match=r"settings.tensorrt.quantization"):
        plan_campaign(campaign, "c.yaml")


def test_runs_that_do_not_use_tensorrt_keep_their_ids(campaign):
    # Pinned ids: a change re-measures every campaign already run, so it must be
    # deliberate. Last deliberate change: the cooldown-to-rest keys (#23 item 3).
    ids = {
        "transformers": [
            "smollm2-135m_transformers_f4d25ecc771d",
            "smollm2-135m_transformers_f4d6b1db4dc3",
        ],
        "vllm": ["smollm2-135m_vllm_472053bf6c45", "smollm2-135m_vllm_64f82b76fd30"],
    }
    for backend, expected in ids.items():
        campaign["backends"] = [backend]
        campaign["settings"].pop("tensorrt", None)
        assert sorted(plan_campaign(campaign, "c.yaml").runs) == expected
        # tensorrt settings do not reach the ids of runs on other backends
        campaign["settings"]["tensorrt"] = {"max_num_tokens": 1024}
        assert sorted(plan_campaign(campaign, "c.yaml").runs) == expected


def test_arrival_schedules_apply_to_tensorrt_settings():
    engine = TensorrtSettings(arrival="constant", request_rate=4.0)
    assert arrival_offsets_s(engine, 3) == pytest.approx([0, 0.25, 0.5])
    poisson = TensorrtSettings(arrival="poisson", request_rate=5.0, arrival_seed=3)
    assert arrival_offsets_s(poisson, 50) == arrival_offsets_s(poisson, 50)
    assert arrival_offsets_s(TensorrtSettings(), 2) == [0.0, 0.0]


@pytest.mark.parametrize(
    ("quantization", "weights", "compute", "factor"),
    [(None, "bf16", "bf16", 1.0), ("fp8", "fp8", "fp8", 0.5), ("int4_awq", "int4", "bf16", 1.0)],
)
def test_precision_of_pre_quantised_checkpoints(quantization, weights, compute, factor):
    p = precision_for("bfloat16", "none", None, quantization)
    assert (p.weights, p.compute, p.precision_factor) == (weights, compute, factor)
    if quantization:
        assert p.quantization_method.startswith("TensorRT-LLM ModelOpt") and p.notes
        assert p.weight_bits == {"fp8": 8, "int4_awq": 4}[quantization]


def checkpoint(tmp_path, embedded_model, quant_algo=None, kv_cache_quant_algo=None):
    path = tmp_path / "ckpt"
    path.mkdir()
    shutil.copy(embedded_model / "config.json", path / "config.json")
    if quant_algo or kv_cache_quant_algo:
        section = {"quant_algo": quant_algo, "kv_cache_quant_algo": kv_cache_quant_algo}
        (path / "hf_quant_config.json").write_text(json.dumps({"quantization": section}))
    return str(path)


def test_an_fp8_kv_cache_comes_from_the_setting_or_the_checkpoint(tmp_path, embedded_model):
    fp8_kv = checkpoint(tmp_path, embedded_model, "FP8", kv_cache_quant_algo="FP8")
    assert checkpoint_kv_cache_quant_algo(fp8_kv) == "FP8"
    assert checkpoint_kv_cache_quant_algo(str(embedded_model)) is None
    assert kv_cache_dtype(None, "FP8", "bfloat16").startswith("fp8 (the checkpoint's")
    assert kv_cache_dtype("auto", "FP8", "bfloat16").startswith("fp8 (the checkpoint's")
    assert kv_cache_dtype("fp8", None, "bfloat16") == "fp8 (settings.tensorrt.kv_cache_dtype)"
    assert kv_cache_dtype("auto", None, "float16") == "float16 (the model dtype)"


def test_the_seed_is_honoured_only_by_trtllm_sampler(campaign):
    campaign = trt_campaign(campaign)
    campaign["grid"] = {}
    campaign["settings"].update(decoding="sample", temperature=0.7, seed=3)
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    assert sampler_record(config)["sampler"] == "TorchSampler"
    assert sampler_record(config)["seed_honoured"] is False
    campaign["settings"]["tensorrt"] = {"llm_kwargs": {"sampler_type": "TRTLLMSampler"}}
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    assert sampler_record(config)["seed_honoured"] is True
    campaign["settings"].update(decoding="greedy", temperature=None, seed=None)
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    assert sampler_record(config)["seed_honoured"] is None


def test_quantisation_setting_must_describe_the_checkpoint(tmp_path, embedded_model):
    fp8 = checkpoint(tmp_path, embedded_model, "FP8")
    check_quantization(fp8, "fp8")
    with pytest.raises(ConfigError, match=r"quantised \(FP8\) but the setting is not set"):
        check_quantization(fp8, None)
    with pytest.raises(ConfigError, match=r"'int4_awq' but the checkpoint is quantised with FP8"):
        check_quantization(fp8, "int4_awq")
    plain = str(embedded_model)
    check_quantization(plain, None)
    with pytest.raises(ConfigError, match=r"'fp8' but the checkpoint is not quantised"):
        check_quantization(plain, "fp8")
    # A hub model that is not in the local cache cannot be checked before the engine starts.
    check_quantization("nobody/not-cached-model", "int4_awq")
