"""FLOP formulas, precision factors and normalised metrics on known numbers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.errors import ArchitectureError, ConfigError, LlemError
from llenergymeasure.measure import flops as flops_module
from llenergymeasure.measure.architecture import Architecture
from llenergymeasure.measure.efficiency import normalised_metrics
from llenergymeasure.measure.flops import run_flops
from llenergymeasure.measure.precision import (
    PRECISION_FACTOR_SOURCES,
    PRECISION_FACTORS,
    precision_for,
)
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
    # Causal prefill (the primary convention): positions 0, 1, 2 see 1, 2, 3 keys.
    prefill = 3 * 2304 + arch.attention(1, 1 + 2 + 3) + 160
    decode = sum(2304 + 160 + arch.attention(1, 3 + k) for k in (1, 2))
    assert arch.generation([(3, 3)]) == prefill + decode
    # One output token needs only the prefill.
    assert arch.generation([(3, 1)]) == prefill
    # The full-square variant (what eager kernels and calflops count) differs only in prefill.
    square_prefill = 3 * 2304 + arch.attention(3, 3) + 160
    assert arch.generation([(3, 3)], causal=False) == square_prefill + decode


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
    scaled = methods["architecture_scaled_by_calflops_ratio"]
    assert scaled.value is None and scaled.null_reason


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
    assert p.precision_factor_basis == "convention"
    assert p.precision_factor_source == PRECISION_FACTOR_SOURCES[compute]
    if quantization in ("torchao-int8-weight", "bnb-4bit"):
        assert "dequantised before the matmul" in p.notes[0]


def test_every_precision_factor_names_its_source():
    assert set(PRECISION_FACTOR_SOURCES) == set(PRECISION_FACTORS)
    # Datasheet ratios where there is one, named with the figures; llem's own choices say so.
    assert "H100" in PRECISION_FACTOR_SOURCES["fp8"]
    assert "1,979 vs FP16/BF16 989.5" in PRECISION_FACTOR_SOURCES["fp8"]
    assert "INT4 1,248 TOPS vs FP16/BF16 312" in PRECISION_FACTOR_SOURCES["int4"]
    assert "INT8 624 TOPS" in PRECISION_FACTOR_SOURCES["int8"]
    assert "llem's own" in PRECISION_FACTOR_SOURCES["mixed"]
    assert all("llem's convention" in PRECISION_FACTOR_SOURCES[p] for p in ("fp32", "tf32"))


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
    assert m.effective_flops_basis is not None
    assert m.effective_flops_basis.startswith("convention-scaled")
    assert "precision_factor 0.75 for mixed compute" in m.effective_flops_basis
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
    assert m.effective_flops == pytest.approx(1e12) and m.effective_flops_basis
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


# --- any model: published parameter counts, real forwards, odd configs ---------------------


def llama3_8b():
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        tie_word_embeddings=False,
    )


def mixtral_8x7b():
    from transformers import MixtralConfig

    return MixtralConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        num_local_experts=8,
        num_experts_per_tok=2,
        vocab_size=32000,
        tie_word_embeddings=False,
    )


def qwen15_moe_a27b():
    from transformers import Qwen2MoeConfig

    return Qwen2MoeConfig(
        hidden_size=2048,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=16,
        intermediate_size=5632,
        moe_intermediate_size=1408,
        shared_expert_intermediate_size=5632,
        num_experts=60,
        num_experts_per_tok=4,
        vocab_size=151936,
        tie_word_embeddings=False,
    )


@pytest.mark.parametrize(
    ("make", "total_b", "active_b"),
    [
        (llama3_8b, 8.03, 8.03),  # Meta: 8.03 B
        (mixtral_8x7b, 46.7, 12.9),  # Mistral AI: 46.7 B total, 12.9 B used per token
        (qwen15_moe_a27b, 14.3, 2.7),  # Qwen1.5-MoE-A2.7B: 14.3 B total, 2.7 B activated
    ],
)
def test_parameter_counts_match_published_ones(make, total_b, active_b):
    arch = Architecture.from_config(make())
    counts = arch.parameters()
    assert counts.total == pytest.approx(total_b * 1e9, rel=0.01)
    assert counts.active == pytest.approx(active_b * 1e9, rel=0.01)
    # A token's matmuls cost 2 FLOPs per active non-embedding parameter (router included).
    assert arch.linear_per_token() == pytest.approx(
        2 * (active_b * 1e9 - counts.embedding), rel=0.01
    )


def test_moe_counts_the_active_experts_and_the_router_by_hand():
    arch = Architecture.from_config(mixtral_8x7b())
    attention = 4096 * 4096 * 2 + 4096 * 1024 * 2  # q, o; k, v with 8 KV heads of 128
    expert = 3 * 4096 * 14336
    assert arch.linear_per_token() == 2 * 32 * (attention + 2 * expert + 4096 * 8)
    assert arch.parameters().total - arch.parameters().active == 32 * 6 * expert
    notes = run_flops(mixtral_8x7b(), [request(4, 2)], "bf16").primary.notes
    assert any("2 of 8 routed experts active per token" in n for n in notes)


def tiny_configs():
    import transformers as t

    dims = {
        "hidden_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 128,
        "intermediate_size": 96,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
    }
    moe = {"moe_intermediate_size": 32, "num_experts_per_tok": 2}
    return [
        t.LlamaConfig(**dims),
        t.MixtralConfig(**dims, num_local_experts=4, num_experts_per_tok=2),
        t.Qwen2MoeConfig(
            **dims, **moe, num_experts=6, shared_expert_intermediate_size=48, mlp_only_layers=[0]
        ),
        t.Qwen3MoeConfig(**dims, **moe, head_dim=32, num_experts=6, decoder_sparse_step=2),
        t.DeepseekV3Config(
            **{**dims, "num_key_value_heads": 4},
            **moe,
            n_routed_experts=8,
            n_shared_experts=1,
            first_k_dense_replace=1,
            q_lora_rank=24,
            kv_lora_rank=16,
            qk_rope_head_dim=8,
            qk_nope_head_dim=16,
            v_head_dim=16,
            n_group=2,
            topk_group=1,
        ),
        t.GPT2Config(n_embd=64, n_layer=3, n_head=4, vocab_size=128, n_positions=32),
    ]


@pytest.mark.parametrize("config", tiny_configs(), ids=lambda c: c.model_type)
def test_formula_equals_a_real_forward_and_real_parameter_tensors(config):
    """Torch's own FLOP counter over a real eager forward, and the model's real matrices."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        config, attn_implementation="eager", experts_implementation="eager"
    ).eval()
    arch = Architecture.from_config(config)
    matrices = sum(p.numel() for p in model.parameters() if p.ndim >= 2)  # norms, biases: 1-D
    assert arch.parameters().total == matrices
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(input_ids=torch.randint(0, 128, (2, 10)))
    assert counter.get_total_flops() == arch.forward(2, 10)


def test_gpt2_config_without_intermediate_size_is_counted():
    from transformers import GPT2Config

    config = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_inner=None, vocab_size=100)
    assert not hasattr(config, "intermediate_size")
    flops = run_flops(config, [request(5, 3)], "fp32")
    assert flops.primary.value is not None and flops.primary.value > 0
    arch = Architecture.from_config(config)
    assert (arch.intermediate, arch.mlp_matrices) == (4 * 64, 2)  # n_inner None: 4 x hidden
    assert Architecture.from_config(GPT2Config()).parameters().total == pytest.approx(
        124e6, rel=0.01
    )  # GPT-2 small: 124 M


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            SimpleNamespace(**{k: v for k, v in vars(TINY).items() if k != "intermediate_size"}),
            "model config has no intermediate_size",
        ),
        (SimpleNamespace(model_type="weird"), "model config has no hidden_size"),
        (None, "model config has no hidden_size"),
    ],
)
def test_unreadable_config_gives_null_with_a_reason_never_raises(config, reason, tmp_path):
    flops = run_flops(config, [request(3, 3)], "bf16", tmp_path / "missing.json")
    assert flops.primary.method == "architecture"
    assert flops.primary.value is None and reason in (flops.primary.null_reason or "")
    methods = [f.method for f in flops.alternatives]
    # Same places as a counted run.
    assert methods == ["architecture_scaled_by_calflops_ratio", "parameter_estimate"]
    calflops, estimate = flops.alternatives
    assert calflops.value is None and calflops.null_reason
    assert estimate.value is None and reason in (estimate.null_reason or "")


def test_nested_text_config_counts_like_its_text_config():
    from transformers import LlamaConfig, LlavaConfig

    inner = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=100,
    )
    composite = LlavaConfig(text_config=inner)
    assert not hasattr(composite, "intermediate_size")
    assert Architecture.from_config(composite) == Architecture.from_config(inner)
    requests = [request(7, 4), request(3, 1)]
    nested, plain = run_flops(composite, requests, "bf16"), run_flops(inner, requests, "bf16")
    assert nested.primary.value == plain.primary.value is not None
    assert [f.value for f in nested.alternatives] == [f.value for f in plain.alternatives]
    assert any("composite config" in n for n in nested.primary.notes)
    # A look-alike with only a `text_config` attribute is read the same way.
    look_alike = SimpleNamespace(model_type="llava", text_config=TINY)
    assert Architecture.from_config(look_alike) == Architecture.from_config(TINY)


@pytest.mark.parametrize("seq_len", [1, 2, 5, 16])
def test_causal_prefill_is_the_square_minus_the_masked_half(seq_len, tmp_path):
    arch = Architecture.from_config(TINY)
    per_pair = 4 * 2 * 2 * 4  # score + value: 2 FLOPs x 2 matmuls x layers x heads x head_dim
    masked = per_pair * seq_len * (seq_len - 1) // 2  # keys after the query, never needed
    assert arch.attention(seq_len, seq_len) == per_pair * seq_len**2
    assert arch.causal_attention(seq_len) == arch.attention(seq_len, seq_len) - masked
    square = arch.generation([(seq_len, 3)], causal=False)
    assert square - arch.generation([(seq_len, 3)]) == masked
    # forward() (compared with calflops) keeps the full square.
    assert arch.forward(1, seq_len) == seq_len * (2304 + 160) + per_pair * seq_len**2
    profile = tmp_path / "profile.json"
    profile.write_text(
        '{"ratio": 1.25, "shapes": [{"batch": 1, "seq_len": 8}], "calflops_version": "0.3.2",'
        ' "attention": "eager", "duration_s": 1.0}'
    )
    flops = run_flops(TINY, [request(seq_len, 3)], "bf16", profile)
    assert flops.primary.value == arch.generation([(seq_len, 3)])
    assert any("causal L(L+1)/2" in n for n in flops.primary.notes)
    scaled = flops.alternatives[0]
    assert scaled.method == "architecture_scaled_by_calflops_ratio"
    assert scaled.value == pytest.approx(square * 1.25) and scaled.confidence == "medium"
    assert any("full L x L square" in n for n in scaled.notes)
    assert any("not a calflops count of this run" in n for n in scaled.notes)


def test_broken_calflops_profile_costs_only_that_alternative(tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text("{not json")
    flops = run_flops(TINY, [request(3, 3)], "bf16", profile)
    assert flops.primary.value is not None
    assert flops.alternatives[0].value is None
    assert "unreadable calflops profile" in (flops.alternatives[0].null_reason or "")


def test_architecture_names_stay_importable_from_flops_and_errors_are_llem_errors():
    assert flops_module.Architecture is Architecture
    assert flops_module.ArchitectureError is ArchitectureError
    assert issubclass(ArchitectureError, LlemError)
    with pytest.raises(ArchitectureError, match="no hidden_size"):
        Architecture.from_config(SimpleNamespace(model_type="weird"))


def test_results_written_before_the_rename_read_back_into_the_renamed_column():
    """1.7.0 results named the scaled alternative "calflops" and recorded no factor source."""
    from llenergymeasure.results.models import PrecisionMetadata, RunResult
    from llenergymeasure.results.tables import RUNS_SCHEMA, _efficiency_columns

    old_flops = Flops.model_validate(
        {
            "primary": {"value": 10.0, "method": "architecture", "confidence": "high"}
            | {"precision": "bf16"},
            "alternatives": [
                {"value": 12.5, "method": "calflops", "confidence": "medium", "precision": "bf16"}
            ],
        }
    )
    old_precision = PrecisionMetadata.model_validate(
        {"weights": "bf16", "activations": "bf16", "compute": "bf16"}
        | {"quantization_method": "none", "weight_bits": 16, "precision_factor": 1.0}
    )
    assert old_precision.precision_factor_basis == "convention"
    assert old_precision.precision_factor_source is None
    result = RunResult.model_construct(flops=old_flops, precision=old_precision, normalised=None)
    columns = _efficiency_columns(result)
    assert columns["flops_architecture_scaled_by_calflops_ratio"] == 12.5
    assert "flops_calflops" not in RUNS_SCHEMA.names
    assert "flops_architecture_scaled_by_calflops_ratio" in RUNS_SCHEMA.names
