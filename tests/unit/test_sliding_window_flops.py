"""Sliding-window attention counted with its window, against real transformers models."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llenergymeasure.measure.architecture import Architecture
from llenergymeasure.measure.attention_layout import causal_keys
from llenergymeasure.measure.flops import run_flops
from llenergymeasure.results.models import RequestResult

DIMS = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "intermediate_size": 48,
    "vocab_size": 64,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": 0,
}
PAIR_PER_LAYER = 2 * 2 * (16 + 16)  # score + value: 2 FLOPs x heads x (key + value width)
SLIDING, FULL = "sliding_attention", "full_attention"


def request(input_tokens: int, output_tokens: int) -> RequestResult:
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


def keys_by_definition(positions: int, windows: tuple[int, ...]) -> int:
    """Keys read over every layer: query p reads min(p + 1, window), or p + 1 when full."""
    return sum(min(p + 1, w) if w else p + 1 for w in windows for p in range(positions))


def sliding_configs():
    import transformers as t

    return [
        (t.MistralConfig(**DIMS, sliding_window=4), (4, 4, 4, 4)),
        (t.Gemma2Config(**DIMS, sliding_window=4), (4, 0, 4, 0)),  # local/global alternate
        (
            t.Gemma3TextConfig(
                **DIMS, sliding_window=4, layer_types=[SLIDING, FULL, SLIDING, SLIDING]
            ),
            (4, 0, 4, 4),
        ),
        (  # Qwen2: layers from max_window_layers on slide
            t.Qwen2Config(**DIMS, use_sliding_window=True, sliding_window=4, max_window_layers=2),
            (0, 0, 4, 4),
        ),
    ]


def real_keys_read(config, prompt_tokens: int, decode_steps: int) -> int:
    """(query, key) pairs with a nonzero attention weight in a real eager generation.

    Eager attention adds the dtype's minimum to masked scores, so their softmax weights are
    exactly 0: the nonzero weights of one head are the keys that head's queries read.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    ids = torch.randint(1, 64, (1, prompt_tokens))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True, output_attentions=True)
        total = sum(int((a[0, 0] > 0).sum()) for a in out.attentions)
        past = out.past_key_values
        for _ in range(decode_steps):
            out = model(
                input_ids=torch.tensor([[5]]),
                past_key_values=past,
                use_cache=True,
                output_attentions=True,
            )
            past = out.past_key_values
            total += sum(int((a[0, 0] > 0).sum()) for a in out.attentions)
    return total


@pytest.mark.parametrize(
    ("config", "windows"), sliding_configs(), ids=lambda c: getattr(c, "model_type", "")
)
def test_windowed_count_equals_the_keys_a_real_model_reads(config, windows):
    """A 7-token prompt and 3 decode steps against a window of 4: prompt longer than window."""
    arch = Architecture.from_config(config)
    assert arch.windows == windows
    keys = real_keys_read(config, prompt_tokens=7, decode_steps=3)
    assert keys == keys_by_definition(10, windows)
    generation = arch.generation([(7, 4)])
    linear = 10 * arch.linear_per_token() + 4 * arch.lm_head()
    assert generation == linear + PAIR_PER_LAYER * keys
    flops = run_flops(config, [request(7, 4)], "fp32")
    assert flops.primary.value == generation and flops.primary.confidence == "high"
    assert any("sliding-window attention in" in n for n in flops.primary.notes)


def test_hand_count_of_one_window():
    # Window 4, 6 positions: 1 + 2 + 3 + 4 + 4 + 4 = 18 keys, against 21 for full causal.
    assert causal_keys(6, 4) == 18 and causal_keys(6) == causal_keys(6, 0) == 21
    assert causal_keys(3, 4) == causal_keys(3) == 6


def test_a_generation_within_the_window_counts_as_full_causal():
    from transformers import MistralConfig

    windowed = MistralConfig(**DIMS, sliding_window=16)
    full = MistralConfig(**DIMS, sliding_window=None)
    assert Architecture.from_config(full).windows == ()
    within = [request(10, 7), request(3, 2)]  # at most 16 positions: the window never bites
    assert (
        run_flops(windowed, within, "bf16").primary.value
        == run_flops(full, within, "bf16").primary.value
    )
    beyond = [request(20, 4)]  # 23 positions: positions 16..22 read 16 keys, not p + 1
    saved = DIMS["num_hidden_layers"] * sum(p + 1 - 16 for p in range(16, 23))
    difference = (
        run_flops(full, beyond, "bf16").primary.value
        - run_flops(windowed, beyond, "bf16").primary.value
    )
    assert difference == PAIR_PER_LAYER * saved


def test_full_square_variant_keeps_the_square_prefill_and_windowed_decode():
    """What eager kernels compute: the masked L x L square in prefill, a window-capped cache."""
    from transformers import MistralConfig

    arch = Architecture.from_config(MistralConfig(**DIMS, sliding_window=4))
    square_prefill = arch.attention(7, 7)
    windowed_decode = PAIR_PER_LAYER * 4 * (4 * 3)  # 3 steps, 4 keys each, 4 layers
    linear = 10 * arch.linear_per_token() + 4 * arch.lm_head()
    assert arch.generation([(7, 4)], causal=False) == linear + square_prefill + windowed_decode


def test_sliding_switched_off_and_older_configs_are_read():
    from transformers import Qwen2Config

    assert Architecture.from_config(Qwen2Config(**DIMS, sliding_window=4)).windows == ()
    base = {
        "num_hidden_layers": 4,
        "hidden_size": 8,
        "num_attention_heads": 2,
        "intermediate_size": 16,
        "vocab_size": 10,
    }
    # A Qwen config of an older transformers: the window is set but switched off.
    old_qwen = SimpleNamespace(
        model_type="qwen2", use_sliding_window=False, sliding_window=4, **base
    )
    assert Architecture.from_config(old_qwen).windows == ()
    # Gemma 2 before `layer_types`: every other layer local, from the first.
    old_gemma2 = SimpleNamespace(model_type="gemma2", sliding_window=4, **base)
    assert Architecture.from_config(old_gemma2).windows == (4, 0, 4, 0)
    # Gemma 3 configs on the Hub carrying `sliding_window_pattern`.
    old_gemma3 = SimpleNamespace(
        model_type="gemma3_text", sliding_window=4, sliding_window_pattern=2, **base
    )
    assert Architecture.from_config(old_gemma3).windows == (4, 0, 4, 0)


@pytest.mark.parametrize(
    ("extra", "approximation"),
    [
        ({"layer_types": ["chunked_attention", FULL, FULL, FULL]}, "chunked_attention counted"),
        ({"layer_types": [SLIDING, FULL], "sliding_window": 4}, "layer_types lists 2 layers for 4"),
        ({"sliding_window": 4}, "assumed to apply to every layer"),
        (
            {
                "layer_types": [SLIDING, FULL] * 2,
                "sliding_window": 4,
                "use_bidirectional_attention": True,
            },
            "bidirectional attention counted as causal",
        ),
    ],
)
def test_what_the_count_cannot_follow_lowers_its_confidence(extra, approximation, tmp_path):
    config = SimpleNamespace(
        model_type="novel",
        num_hidden_layers=4,
        hidden_size=8,
        num_attention_heads=2,
        intermediate_size=16,
        vocab_size=10,
        **extra,
    )
    profile = tmp_path / "profile.json"
    profile.write_text(
        json.dumps(
            {
                "ratio": 1.0,
                "shapes": [{"batch": 1, "seq_len": 8}],
                "calflops_version": "0.3.2",
                "attention": "eager",
                "duration_s": 1.0,
            }
        )
    )
    flops = run_flops(config, [request(9, 3)], "bf16", profile)
    assert flops.primary.value is not None and flops.primary.confidence == "medium"
    assert any(n.startswith("approximated: ") and approximation in n for n in flops.primary.notes)
    scaled = flops.alternatives[0]
    assert scaled.method == "architecture_scaled_by_calflops_ratio"
    assert scaled.value is not None and scaled.confidence == "low"
