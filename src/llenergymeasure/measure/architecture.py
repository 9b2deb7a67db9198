"""The dimensions of a decoder-only transformer, read from its (text) model config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llenergymeasure.errors import ArchitectureError
from llenergymeasure.measure.attention_layout import causal_keys, describe_layout, read_layout

# Model types whose MLP is gated (gate, up and down projections: three matrices).
GATED_MLP_TYPES = {
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma",
    "gemma2", "gemma3", "gemma3_text", "phi3", "olmo", "olmo2", "granite", "cohere",
    "deepseek_v2", "deepseek_v3", "stablelm",
}  # fmt: skip
# Model types with a plain two-matrix MLP whatever their activation.
PLAIN_MLP_TYPES = {"gpt2", "gpt_bigcode", "gptj", "codegen", "gpt_neox", "opt", "bloom", "falcon"}
# Model types whose MLP is 4 x hidden when the config gives no width.
FOUR_X_MLP_TYPES = {"gpt2", "gpt_bigcode", "gptj", "codegen", "bloom", "falcon"}
# Model types with a learned absolute position table (parameters, no FLOPs).
LEARNED_POSITION_TYPES = {"gpt2", "gpt_bigcode", "opt"}
HIDDEN_NAMES = ("hidden_size", "n_embd", "d_model", "n_embed")
LAYER_NAMES = ("num_hidden_layers", "n_layer", "num_layers")


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters of the matrices and embedding tables (norms and biases excluded)."""

    total: int
    active: int
    embedding: int


@dataclass(frozen=True)
class Architecture:
    """The dimensions of a decoder-only transformer that set its FLOPs.

    `head_dim` is the query/key width per head, `v_head_dim` the value width (0: the same).
    `kv_lora_rank > 0` means multi-head latent attention (DeepSeek), with `q_lora_rank` and
    the decoupled `rope_head_dim`. Of the layers, `moe_layers` route each token to
    `experts_per_token` of `experts` experts of width `expert_intermediate`, plus shared
    experts of total width `shared_intermediate` and a router with `router_outputs` outputs;
    the other layers have a dense MLP of width `intermediate`. `windows` gives, per layer, the
    most keys a query reads (0: every earlier key; empty: no sliding window anywhere), and
    `attention_approximations` what the attention count could not follow exactly.
    """

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    mlp_matrices: int
    v_head_dim: int = 0
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    rope_head_dim: int = 0
    moe_layers: int = 0
    experts: int = 0
    experts_per_token: int = 0
    expert_intermediate: int = 0
    shared_intermediate: int = 0
    router_outputs: int = 0
    tied_embeddings: bool = False
    position_embeddings: int = 0
    windows: tuple[int, ...] = ()
    attention_approximations: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Any) -> Architecture:
        """Read the dimensions from a transformers `PretrainedConfig` (or a look-alike).

        Raises:
            ArchitectureError: The config lacks a dimension the formula needs.
        """
        return _read(text_config(config))

    def attention_parameters(self) -> int:
        """Parameters of one layer's attention projections."""
        v_dim = self.v_head_dim or self.head_dim
        if self.kv_lora_rank:
            q_in = self.q_lora_rank or self.hidden
            q = self.hidden * self.q_lora_rank + q_in * self.heads * self.head_dim
            nope = self.head_dim - self.rope_head_dim
            kv = self.hidden * (self.kv_lora_rank + self.rope_head_dim)
            kv += self.kv_lora_rank * self.heads * (nope + v_dim)
        else:
            q = self.hidden * self.heads * self.head_dim
            kv = self.hidden * self.kv_heads * (self.head_dim + v_dim)
        return q + kv + self.heads * v_dim * self.hidden

    def mlp_parameters(self, active: bool = True) -> int:
        """Parameters of every layer's MLP: routed experts used per token, or all of them."""
        dense = (self.layers - self.moe_layers) * self.hidden * self.intermediate
        routed = self.experts_per_token if active else self.experts
        width = routed * self.expert_intermediate + self.shared_intermediate
        moe = self.mlp_matrices * self.hidden * width + self.hidden * self.router_outputs
        return self.mlp_matrices * dense + self.moe_layers * moe

    def non_embedding_parameters(self, active: bool = True) -> int:
        """Parameters of the layers' matrices, active per token or all (norms excluded)."""
        return self.layers * self.attention_parameters() + self.mlp_parameters(active)

    def parameters(self) -> ParameterCounts:
        """Total (all experts) and active (per token) parameters, embeddings included."""
        embedding = self.hidden * (self.vocab + self.position_embeddings)
        embedding += 0 if self.tied_embeddings else self.hidden * self.vocab
        return ParameterCounts(
            total=embedding + self.non_embedding_parameters(active=False),
            active=embedding + self.non_embedding_parameters(active=True),
            embedding=embedding,
        )

    def linear_per_token(self) -> int:
        """Matmul FLOPs of one token through every layer (projections, active MLP, router)."""
        return 2 * self.non_embedding_parameters(active=True)

    def lm_head(self) -> int:
        """FLOPs of one position's logits."""
        return 2 * self.hidden * self.vocab

    def _pair_per_layer(self) -> int:
        """Score and value FLOPs of one (query, key) pair over every head of one layer."""
        return 2 * self.heads * (self.head_dim + (self.v_head_dim or self.head_dim))

    def attention(self, queries: int, keys: int) -> int:
        """Score and value matmuls of `queries` positions against all `keys` positions."""
        return self.layers * self._pair_per_layer() * queries * keys

    def causal_attention(self, seq_len: int, start: int = 0) -> int:
        """Score and value matmuls of the queries at positions start .. seq_len - 1.

        Position p reads p + 1 keys, or min(p + 1, window) in a sliding-window layer.
        """
        windows = self.windows or (0,) * self.layers
        keys = sum(causal_keys(seq_len, w) - causal_keys(start, w) for w in windows)
        return self._pair_per_layer() * keys

    def forward(self, batch: int, seq_len: int) -> int:
        """One full forward without cache, logits at every position, unmasked L x L attention.

        This is what calflops counts with eager attention, so the two can be compared (eager
        kernels mask a sliding window, they do not skip it: every layer computes the square).
        """
        return batch * (
            seq_len * (self.linear_per_token() + self.lm_head()) + self.attention(seq_len, seq_len)
        )

    def generation(self, requests: Sequence[tuple[int, int]], causal: bool = True) -> int:
        """FLOPs of generating (input_tokens, output_tokens) per request with a KV cache.

        Prefill: every prompt token through every layer, causal attention (or the full L x L
        square with `causal=False`, in every layer), logits at the last position only; then one
        forward per further output token against the growing cache (a query at position p
        reads p + 1 keys, at most the window in a sliding-window layer).
        """
        total = 0
        for input_tokens, output_tokens in requests:
            steps = max(output_tokens - 1, 0)
            if causal:
                total += self.causal_attention(input_tokens)
            else:
                total += self.attention(input_tokens, input_tokens)
            total += self.causal_attention(input_tokens + steps, start=input_tokens)  # decode
            total += (input_tokens + steps) * self.linear_per_token() + (1 + steps) * self.lm_head()
        return total

    def describe(self) -> list[str]:
        """Notes naming the dimensions, experts and parameter counts used."""
        v_dim = self.v_head_dim or self.head_dim
        notes = [
            f"{self.layers} layers, hidden {self.hidden}, {self.heads} heads ({self.kv_heads} KV), "
            f"head_dim {self.head_dim} (value {v_dim}), intermediate {self.intermediate} "
            f"({self.mlp_matrices} MLP matrices), vocab {self.vocab}"
        ]
        if self.kv_lora_rank:
            notes.append(
                f"multi-head latent attention: kv_lora_rank {self.kv_lora_rank}, q_lora_rank "
                f"{self.q_lora_rank}, rope dims {self.rope_head_dim} (unabsorbed projections)"
            )
        if self.moe_layers:
            notes.append(
                f"mixture of experts in {self.moe_layers} of {self.layers} layers: "
                f"{self.experts_per_token} of {self.experts} routed experts active per token "
                f"(width {self.expert_intermediate}), shared experts of width "
                f"{self.shared_intermediate}, router {self.router_outputs} outputs"
            )
        notes.extend(describe_layout(self.windows))
        notes.extend(f"approximated: {a}" for a in self.attention_approximations)
        counts = self.parameters()
        notes.append(
            f"parameters: {counts.total:,} total, {counts.active:,} active per token, of which "
            f"{counts.embedding:,} embedding ({'tied' if self.tied_embeddings else 'untied'} "
            "lm_head); norms and biases excluded"
        )
        return notes


def text_config(config: Any) -> Any:
    """The text decoder's config: `get_text_config()`, else `text_config`, else the config."""
    getter = getattr(config, "get_text_config", None)
    inner = getter(decoder=True) if callable(getter) else getattr(config, "text_config", None)
    return config if inner is None else inner


def _get(config: Any, *names: str) -> Any:
    """The first of `names` that the config sets to something other than None."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def _need(config: Any, *names: str) -> int:
    """The first of `names` the config sets, as an int.

    Raises:
        ArchitectureError: None of them is set.
    """
    value = _get(config, *names)
    if value is None:
        others = f" (nor {', '.join(names[1:])})" if len(names) > 1 else ""
        raise ArchitectureError(f"model config has no {names[0]}{others}")
    return int(value)


def _is_moe_layer(config: Any, index: int) -> bool:
    """Whether layer `index` routes to experts (Qwen-MoE and DeepSeek layer schedules)."""
    if index in (_get(config, "mlp_only_layers") or ()):
        return False
    if index < int(_get(config, "first_k_dense_replace") or 0):
        return False
    if (index + 1) % int(_get(config, "decoder_sparse_step") or 1):
        return False
    return index % int(_get(config, "moe_layer_freq") or 1) == 0


def _read(config: Any) -> Architecture:
    """The architecture of a (text) config; see `Architecture.from_config`."""
    model_type = str(getattr(config, "model_type", ""))
    hidden, layers = _need(config, *HIDDEN_NAMES), _need(config, *LAYER_NAMES)
    heads = _need(config, "num_attention_heads", "n_head", "num_heads")
    one_kv = bool(getattr(config, "multi_query", False))
    kv_heads = int(_get(config, "num_key_value_heads", "num_kv_heads") or (1 if one_kv else heads))
    widths = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "d_ff")
    intermediate = _get(config, *widths)
    if intermediate is None and (hasattr(config, "n_inner") or model_type in FOUR_X_MLP_TYPES):
        intermediate = 4 * hidden  # GPT-2 family: n_inner None means 4 x hidden
    if intermediate is None:
        _need(config, *widths)  # raises, naming the fields looked for
    act = str(_get(config, "hidden_act", "hidden_activation", "activation_function") or "")
    gated = model_type not in PLAIN_MLP_TYPES and (
        model_type in GATED_MLP_TYPES or any(a in act for a in ("silu", "swish", "swiglu"))
    )
    kv_lora = int(_get(config, "kv_lora_rank") or 0)
    mla: dict[str, int] = {}
    if kv_lora:
        rope = _need(config, "qk_rope_head_dim")
        head_dim = _need(config, "qk_nope_head_dim") + rope
        mla = {
            "v_head_dim": _need(config, "v_head_dim"),
            "q_lora_rank": int(_get(config, "q_lora_rank") or 0),
            "kv_lora_rank": kv_lora,
            "rope_head_dim": rope,
        }
    else:
        head_dim = int(_get(config, "head_dim") or hidden // heads)
    experts = int(_get(config, "num_local_experts", "num_experts", "n_routed_experts") or 0)
    moe: dict[str, int] = {}
    if experts > 1:
        expert_width = int(_get(config, "moe_intermediate_size") or intermediate)
        qwen_shared = int(_get(config, "shared_expert_intermediate_size") or 0)
        deepseek_shared = int(_get(config, "n_shared_experts") or 0) * expert_width
        moe = {
            "moe_layers": sum(_is_moe_layer(config, i) for i in range(layers)),
            "experts": experts,
            "experts_per_token": _need(config, "num_experts_per_tok", "experts_per_token"),
            "expert_intermediate": expert_width,
            "shared_intermediate": qwen_shared + deepseek_shared,
            # Qwen2-MoE gates its shared expert with one more output (hidden -> 1).
            "router_outputs": experts + (1 if qwen_shared else 0),
        }
    positions = _get(config, "n_positions", "max_position_embeddings")
    layout = read_layout(config, layers)
    return Architecture(
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=int(intermediate),
        vocab=_need(config, "vocab_size"),
        mlp_matrices=3 if gated else 2,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        position_embeddings=int(positions or 0) if model_type in LEARNED_POSITION_TYPES else 0,
        windows=layout.windows,
        attention_approximations=layout.approximations,
        **mla,
        **moe,
    )
