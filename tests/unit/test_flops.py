"""FLOP formulas, precision factors and normalised metrics on known numbers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.errors import ConfigError
from llenergymeasure.measure.efficiency import normalised_metrics
from llenergymeasure.measure.flops import Architecture, run_flops
from llenergymeasure.measure.precision import precision_for
from llenergymeasure.results.models import Energy, Flops, FlopsResult, RequestResult

TINY = SimpleNamespace(
    model_type="llama",
    num_hidden_layers=2,
    hidden_size=8,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=4,
    intermediate_size=16,
    vocab_size=10,
    hidden_act="silu",
)


def test_architecture_counts_by_hand():
    arch = Architecture.from_config(TINY)
    # per layer: q,o 2*2*8*8=256; k,v 2*2*8*4=128; gated mlp 2*3*8*16=768 -> 1152; x2 layers
    assert arch.linear_per_token() == 2304
    assert arch.lm_head() == 160
    assert arch.attention(3, 5) == 4 * 2 * 2 * 4 * 3 * 5
    assert arch.non_embedding_parameters() == 1152


def test_generation_is_prefill_plus_cached_decode_steps():
    arch = Architecture.from_config(TINY)
    prefill = 3 * 2304 + arch.attention(3, 3) + 160
    decode = sum(2304 + 160 + arch.attention(1, 3 + k) for k in (1, 2))
    assert arch.generation([(3, 3)]) == prefill + decode
    # One output token needs only the prefill.
    assert arch.generation([(3, 1)]) == prefill


def request(input_tokens, output_tokens):
    return RequestResult(
        index=0,
        batch_index=0,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        stopped_by_eos=False,
        queue_s=0,
        ttft_s=0.1,
        latency_s=0.2,
        itl_s=[],
    )


def test_run_flops_reports_every_method_with_confidence():
    flops = run_flops(TINY, [request(3, 3), request(5, 1)], "bf16")
    assert flops.primary.method == "architecture" and flops.primary.confidence == "high"
    methods = {f.method: f for f in flops.alternatives}
    assert methods["parameter_estimate"].confidence == "low"
    assert methods["parameter_estimate"].value == 2 * 1152 * (3 + 3 + 5 + 1)
    assert methods["calflops"].value is None and methods["calflops"].null_reason


@pytest.mark.parametrize(
    ("dtype", "quantization", "engine", "weights", "compute", "factor"),
    [
        ("float32", "none", None, "fp32", "fp32", 1.0),
        ("bfloat16", "none", None, "bf16", "bf16", 1.0),
        ("bfloat16", "torchao-int8-weight", None, "int8", "bf16", 1.0),
        ("float16", "bnb-8bit", None, "int8", "mixed", 0.75),
        ("bfloat16", "bnb-4bit", None, "int4", "bf16", 1.0),
        ("bfloat16", "none", "fp8", "fp8", "fp8", 0.5),
        ("float16", "none", "awq", "int4", "fp16", 1.0),
    ],
)
def test_precision_factor_follows_compute_precision(
    dtype, quantization, engine, weights, compute, factor
):
    p = precision_for(dtype, quantization, engine)
    assert (p.weights, p.compute, p.precision_factor) == (weights, compute, factor)
    if quantization in ("torchao-int8-weight", "bnb-4bit"):
        assert "dequantised before the matmul" in p.notes[0]


def energy(energy_j, confidence="measured", adjusted=None):
    return Energy(
        energy_j=energy_j,
        method="rapl",
        confidence=confidence,
        interval_s=0.1,
        devices=[],
        adjusted_energy_j=adjusted,
    )


def test_normalised_metrics():
    flops = Flops(
        primary=FlopsResult(value=4e15, method="architecture", confidence="high", precision="int8")
    )
    precision = precision_for("bfloat16", "bnb-8bit", None)
    m = normalised_metrics(100, 10.0, energy(50.0, adjusted=20.0), flops, precision)
    assert m.tokens_per_joule == pytest.approx(2.0)
    assert m.tokens_per_joule_adjusted == pytest.approx(5.0)
    assert m.tokens_per_second_per_watt == pytest.approx(2.0)
    assert m.flops_per_output_token == pytest.approx(4e13)
    assert m.effective_flops == pytest.approx(3e15)
    assert m.tokens_per_effective_pflop == pytest.approx(100 / 3)
    assert not m.low_confidence


def test_estimated_or_missing_inputs_are_flagged_and_null_never_zero():
    flops = Flops(
        primary=FlopsResult(
            value=1e12, method="parameter_estimate", confidence="low", precision="bf16"
        )
    )
    m = normalised_metrics(
        10, 1.0, energy(None, confidence=None), flops, precision_for("bfloat16", "none", None)
    )
    assert m.tokens_per_joule is None and m.tokens_per_second_per_watt is None
    assert m.low_confidence
    assert "energy is null" in m.low_confidence_reasons
    m = normalised_metrics(
        10, 1.0, energy(5.0, confidence="estimated"), flops, precision_for("bfloat16", "none", None)
    )
    assert any("estimated" in r for r in m.low_confidence_reasons)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"settings": {"quantization": "bnb-4bit"}}, "needs bitsandbytes on a CUDA device"),
        (
            {"backends": ["vllm"], "settings": {"quantization": "torchao-int8-weight"}},
            "for vllm use settings.vllm.quantization",
        ),
    ],
)
def test_combinations_a_backend_cannot_run_fail_at_plan_time(campaign, change, reason):
    with pytest.raises(ConfigError) as info:
        plan_campaign({**campaign, **change}, "c.yaml")
    assert info.value.key == "settings.quantization"
    assert reason in info.value.reason
