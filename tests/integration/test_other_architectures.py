"""Real `llem run` on tiny random GPT-2, Mixtral and Mamba models built here (no downloads).

Each model is saved with the embedded model's tokenizer into a local directory, planned as a
one-run campaign on that path and measured in a child process, as the workflow does. Their
FLOPs are then checked against torch's own count of a real KV-cached `generate`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.measure.architecture import Architecture
from llenergymeasure.results.models import RunResult
from tests.llem import llem_run

pytestmark = pytest.mark.slow

SETTINGS = {
    "max_new_tokens": 4,
    "num_prompts": 2,
    "max_input_tokens": 32,
    "dtype": "float32",
    "threads": 1,
}
MEASUREMENT = {"meter": "none", "warmup_batches": 0, "baseline_s": 0, "cooldown_max_s": 0}
DIMS = {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 128, "experts": 4, "top_k": 2}


@pytest.fixture(scope="module")
def tokenizer(embedded_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model)


def token_ids(tokenizer: Any) -> dict[str, int]:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def save(model: Any, path: Path, tokenizer: Any) -> Path:
    """A local model directory: random weights, config, generation config, tokenizer."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(**token_ids(tokenizer))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def measured(path: Path, work: Path) -> dict[str, Any]:
    """Plan a one-run campaign on the local path and run the real `llem run` on it."""
    campaign = {
        "name": "other",
        "models": [str(path)],
        "settings": SETTINGS,
        "measurement": MEASUREMENT,
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    assert config.model.source == "local"
    result = llem_run(config, work)
    assert (work / "run" / "result.json").is_file()
    RunResult.model_validate(result)  # the written result is a valid one
    assert result["tokens"]["num_requests"] == 2 and result["tokens"]["output_tokens"] > 0
    return result


def shapes_of(result: dict[str, Any]) -> list[tuple[int, int]]:
    return [(r["input_tokens"], r["output_tokens"]) for r in result["requests"]]


def by_method(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    flops = result["flops"]
    return {f["method"]: f for f in [flops["primary"], *flops["alternatives"]]}


def counted_generate_flops(path: Path, input_tokens: int, output_tokens: int) -> int:
    """Torch's FLOP count of a real eager, KV-cached `generate` of one request of this shape."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager"
    ).eval()
    ids = torch.randint(100, 1000, (1, input_tokens), generator=torch.Generator().manual_seed(0))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=output_tokens,
            min_new_tokens=output_tokens,
            do_sample=False,
        )
    return int(counter.get_total_flops())


def test_gpt2_run_counts_flops_by_its_architecture(tmp_path, tokenizer):
    import torch
    from transformers import AutoConfig, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=DIMS["layers"],
        n_embd=DIMS["hidden"],
        n_head=DIMS["heads"],
        n_positions=64,
        vocab_size=len(tokenizer),
        **token_ids(tokenizer),
    )
    model = GPT2LMHeadModel(config)
    path = save(model, tmp_path / "gpt2-tiny", tokenizer)
    result = measured(path, tmp_path)

    shapes = shapes_of(result)
    arch = Architecture.from_config(AutoConfig.from_pretrained(path))
    methods = by_method(result)
    primary = result["flops"]["primary"]
    assert (
        primary["method"] == "architecture"
        and primary["confidence"] == "high"
        and primary["precision"] == "fp32"
    )
    assert primary["value"] == float(arch.generation(shapes)) > 0
    # The formula's matrices are the model's own: Conv1D blocks (n_inner None: 4 x hidden).
    blocks = sum(p.numel() for p in model.transformer.h.parameters() if p.ndim >= 2)
    assert arch.non_embedding_parameters() == blocks
    tokens = sum(i + o for i, o in shapes)
    assert methods["parameter_estimate"]["value"] == 2 * blocks * tokens
    # The primary adds attention and logits to 2 x N x T, never more than every token's
    # logits plus attention over the longest context.
    longest = max(i + o for i, o in shapes)
    bound = tokens * (arch.lm_head() + arch.attention(1, longest))
    assert 2 * blocks * tokens < primary["value"] <= 2 * blocks * tokens + bound
    # Torch's count of a real cached generate of the first request's shape is the full-square
    # figure; the causal primary is that minus the i(i-1)/2 masked (query, key) pairs.
    i, o = shapes[0]
    counted = counted_generate_flops(path, i, o)
    assert counted == arch.generation([(i, o)], causal=False)
    assert counted - arch.generation([(i, o)]) == arch.attention(1, i * (i - 1) // 2)


def test_mixtral_run_counts_two_of_four_experts(tmp_path, tokenizer):
    import torch
    from transformers import AutoConfig, MistralConfig, MixtralConfig, MixtralForCausalLM

    h, n_layers, width, n_experts = (
        DIMS[k] for k in ("hidden", "layers", "intermediate", "experts")
    )
    shape = {
        "hidden_size": h,
        "num_hidden_layers": n_layers,
        "num_attention_heads": DIMS["heads"],
        "num_key_value_heads": 2,
        "intermediate_size": width,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 64,
        "tie_word_embeddings": False,
        **token_ids(tokenizer),
    }
    torch.manual_seed(0)
    config = MixtralConfig(**shape, num_local_experts=n_experts, num_experts_per_tok=DIMS["top_k"])
    model = MixtralForCausalLM(config)
    path = save(model, tmp_path / "mixtral-tiny", tokenizer)
    result = measured(path, tmp_path)

    shapes = shapes_of(result)
    moe = Architecture.from_config(AutoConfig.from_pretrained(path))
    primary = result["flops"]["primary"]
    assert primary["method"] == "architecture" and primary["confidence"] == "high"
    assert primary["value"] == float(moe.generation(shapes)) > 0
    assert any("2 of 4 routed experts active per token" in n for n in primary["notes"])
    # Per token: a dense model of the same shape with its gated MLP term twice (top-2), plus
    # the router (hidden -> experts) in every layer.
    dense = Architecture.from_config(MistralConfig(**shape))
    dense_mlp = 2 * n_layers * 3 * h * width
    router = 2 * n_layers * h * n_experts
    assert moe.linear_per_token() == dense.linear_per_token() + dense_mlp + router
    # All four experts are parameters (the model's real tensors); two are idle per token.
    matrices = sum(p.numel() for p in model.parameters() if p.ndim >= 2)
    assert moe.parameters().total == matrices
    assert moe.parameters().total - moe.parameters().active == n_layers * 2 * 3 * h * width
    # Torch's count of what a real cached generate ran: the top-2 figure, not the top-4 one.
    i, o = shapes[0]
    counted = counted_generate_flops(path, i, o)
    assert counted == moe.generation([(i, o)], causal=False)
    every_expert = dataclasses.replace(moe, experts_per_token=n_experts)
    assert counted < every_expert.generation([(i, o)], causal=False)


def test_mamba_run_has_no_attention_to_count_and_still_writes_its_result(tmp_path, tokenizer):
    """A real transformers causal LM the formula cannot read: a state-space model, no heads."""
    import torch
    from transformers import AutoConfig, MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    config = MambaConfig(
        hidden_size=DIMS["hidden"],
        num_hidden_layers=DIMS["layers"],
        state_size=8,
        vocab_size=len(tokenizer),
        **token_ids(tokenizer),
    )
    path = save(MambaForCausalLM(config), tmp_path / "mamba-tiny", tokenizer)
    assert AutoConfig.from_pretrained(path).architectures == ["MambaForCausalLM"]
    result = measured(path, tmp_path)

    primary = result["flops"]["primary"]
    assert primary["method"] == "architecture"
    assert primary["value"] is None and primary["confidence"] is None
    assert "cannot read the model architecture" in primary["null_reason"]
    assert "num_attention_heads" in primary["null_reason"]
    calflops, estimate = result["flops"]["alternatives"]
    assert calflops["method"] == "architecture_scaled_by_calflops_ratio"
    assert calflops["value"] is None
    assert calflops["null_reason"]
    # No transformer formula is applied to what is not one: no estimate either.
    assert estimate["method"] == "parameter_estimate" and estimate["value"] is None
    assert "num_attention_heads" in estimate["null_reason"]
    # The measured run is whole; only the FLOP-based metrics are null, and flagged.
    assert result["throughput"]["output_tokens_per_s"] > 0
    assert result["normalised"]["flops_per_output_token"] is None
    assert result["normalised"]["low_confidence"]
    assert any("FLOPs are null" in r for r in result["normalised"]["low_confidence_reasons"])
