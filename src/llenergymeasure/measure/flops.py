"""FLOPs of a run's useful work: architecture formula, calflops calibration, 2·N·T estimate."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llenergymeasure.results.models import Flops, FlopsResult, RequestResult

# Model types whose MLP is gated (gate, up and down projections: three matrices).
GATED_MLP_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"}


@dataclass(frozen=True)
class Architecture:
    """The dimensions of a decoder-only transformer that set its FLOPs."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    mlp_matrices: int

    @classmethod
    def from_config(cls, config: Any) -> Architecture:
        """Read the dimensions from a transformers `PretrainedConfig`."""
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        gated = config.model_type in GATED_MLP_TYPES or "silu" in str(config.hidden_act)
        return cls(
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            intermediate=config.intermediate_size,
            vocab=config.vocab_size,
            mlp_matrices=3 if gated else 2,
        )

    def linear_per_token(self) -> int:
        """Matmul FLOPs of one token through every layer (projections and MLP)."""
        q_o = 2 * 2 * self.hidden * self.heads * self.head_dim
        k_v = 2 * 2 * self.hidden * self.kv_heads * self.head_dim
        mlp = 2 * self.mlp_matrices * self.hidden * self.intermediate
        return self.layers * (q_o + k_v + mlp)

    def lm_head(self) -> int:
        """FLOPs of one position's logits."""
        return 2 * self.hidden * self.vocab

    def attention(self, queries: int, keys: int) -> int:
        """Score and value matmuls of `queries` positions against `keys` cached positions."""
        return 4 * self.layers * self.heads * self.head_dim * queries * keys

    def non_embedding_parameters(self) -> int:
        """Parameters of the layers' matrices (norms and embeddings excluded)."""
        return self.linear_per_token() // 2

    def forward(self, batch: int, seq_len: int) -> int:
        """One full forward without cache, logits at every position, unmasked L x L attention.

        This is what calflops counts with eager attention, so the two can be compared.
        """
        return batch * (
            seq_len * (self.linear_per_token() + self.lm_head()) + self.attention(seq_len, seq_len)
        )

    def generation(self, requests: Sequence[tuple[int, int]]) -> int:
        """Useful FLOPs of generating (input_tokens, output_tokens) per request with a KV cache.

        Prefill: every prompt token through every layer, L x L attention, logits at the last
        position only; then one forward per further output token against the growing cache.
        """
        total = 0
        for input_tokens, output_tokens in requests:
            total += (
                input_tokens * self.linear_per_token()
                + self.attention(input_tokens, input_tokens)
                + self.lm_head()
            )
            for step in range(1, output_tokens):
                total += self.linear_per_token() + self.lm_head()
                total += self.attention(1, input_tokens + step)
        return total


def run_flops(
    model_config: Any,
    requests: Sequence[RequestResult],
    compute_precision: str,
    calflops_profile: Path | None = None,
) -> Flops:
    """FLOPs of the run by every method that can run; the best one is primary."""
    arch = Architecture.from_config(model_config)
    shapes = [(r.input_tokens, r.output_tokens) for r in requests]
    architecture_flops = arch.generation(shapes)
    scope = (
        "useful work over real tokens: padding and tokens after EOS in a static batch are not "
        "counted; prefill attention counted as full L x L matmuls"
    )
    architecture = FlopsResult(
        value=float(architecture_flops),
        method="architecture",
        confidence="high",
        precision=compute_precision,
        notes=[
            f"{arch.layers} layers, hidden {arch.hidden}, {arch.heads} heads "
            f"({arch.kv_heads} KV), head_dim {arch.head_dim}, intermediate {arch.intermediate} "
            f"({arch.mlp_matrices} MLP matrices), vocab {arch.vocab}",
            scope,
        ],
    )
    tokens = sum(i + o for i, o in shapes)
    estimate = FlopsResult(
        value=float(2 * arch.non_embedding_parameters() * tokens),
        method="parameter_estimate",
        confidence="low",
        precision=compute_precision,
        notes=[
            f"2 x {arch.non_embedding_parameters():,} non-embedding parameters x {tokens} "
            "tokens: ignores attention and the lm_head"
        ],
    )
    calibrated = calflops_result(calflops_profile, architecture_flops, compute_precision)
    return Flops(primary=architecture, alternatives=[calibrated, estimate])


def calflops_result(
    profile_path: Path | None, architecture_flops: int, compute_precision: str
) -> FlopsResult:
    """The run's FLOPs scaled by calflops' own count of reference forwards of this model."""
    if profile_path is None or not profile_path.exists():
        return FlopsResult(
            value=None,
            method="calflops",
            confidence=None,
            precision=compute_precision,
            null_reason="no calflops profile of this model was given",
        )
    profile = json.loads(profile_path.read_text())
    if profile.get("ratio") is None:
        return FlopsResult(
            value=None,
            method="calflops",
            confidence=None,
            precision=compute_precision,
            null_reason=f"calflops failed on this model: {profile.get('null_reason')}",
        )
    shapes = ", ".join(f"{s['batch']}x{s['seq_len']}" for s in profile["shapes"])
    return FlopsResult(
        value=architecture_flops * profile["ratio"],
        method="calflops",
        confidence="medium",
        precision=compute_precision,
        notes=[
            f"calflops {profile['calflops_version']} counted forwards of shapes {shapes} "
            f"with {profile['attention']} attention in {profile['duration_s']:.1f} s (once per "
            "model, outside any window); the run's architecture count is scaled by "
            f"calflops/architecture = {profile['ratio']:.5f}: calflops cannot follow a "
            "KV-cached generation loop itself",
        ],
    )
