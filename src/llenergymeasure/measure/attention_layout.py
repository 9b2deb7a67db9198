"""Which keys each layer's attention reads: every earlier key, or a sliding window of them.

transformers' sliding-window mask keeps key k for query q when q - window < k <= q
(`masking_utils.sliding_window_overlay`), so a query at position p reads min(p + 1, window)
keys, in prefill and in decode alike (the KV cache of such a layer holds at most `window` keys).
Which layers slide comes from the config: `layer_types` ("sliding_attention" /
"full_attention") where transformers sets it (Gemma 2/3, Qwen2/3, Cohere2, gpt-oss, ...), else the
older fields (`sliding_window_pattern`, Qwen's `use_sliding_window` with `max_window_layers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FULL = "full_attention"
SLIDING = "sliding_attention"
# Local/global alternation of configs that predate `layer_types`: layer i slides unless
# (i + 1) % pattern == 0, as transformers derives `layer_types` for these model types.
DEFAULT_PATTERNS = {"gemma2": 2, "gemma3": 6, "gemma3_text": 6, "cohere2": 4}
# Model types whose `sliding_window` applies to every layer when no `layer_types` is given.
ALL_LAYERS_TYPES = {"mistral", "mixtral", "phi3", "starcoder2", "qwen2", "qwen3", "qwen2_moe"}


@dataclass(frozen=True)
class AttentionLayout:
    """Per layer, the most keys a query reads (0: every earlier key), and what was assumed.

    `windows` is empty when every layer is full causal. `approximations` names what the
    count could not follow exactly (empty: the count is exact for this config).
    """

    windows: tuple[int, ...] = ()
    approximations: tuple[str, ...] = ()


def causal_keys(positions: int, window: int = 0) -> int:
    """Keys read by the queries at positions 0 .. positions - 1 of one layer and head.

    Args:
        positions: How many query positions, from position 0.
        window: The sliding window in keys; 0 for full causal attention.
    """
    if not window or positions <= window:
        return positions * (positions + 1) // 2
    return window * (window + 1) // 2 + (positions - window) * window


def read_layout(config: Any, layers: int) -> AttentionLayout:
    """The attention layout of a (text) config with `layers` decoder layers."""
    model_type = str(getattr(config, "model_type", ""))
    window = int(getattr(config, "sliding_window", None) or 0)
    if getattr(config, "use_sliding_window", None) is False:
        window = 0  # Qwen2/3 keep a sliding_window value that is switched off
    approximations: list[str] = []
    if getattr(config, "use_bidirectional_attention", None):
        approximations.append("bidirectional attention counted as causal")
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        windows = _from_layer_types(list(layer_types), layers, window, approximations)
    elif not window:
        windows = [0] * layers
    elif getattr(config, "use_sliding_window", None) and getattr(config, "max_window_layers", None):
        first = int(config.max_window_layers)  # Qwen: layers from max_window_layers on slide
        windows = [window if i >= first else 0 for i in range(layers)]
    elif pattern := int(
        getattr(config, "sliding_window_pattern", None) or DEFAULT_PATTERNS.get(model_type, 0)
    ):
        windows = [0 if (i + 1) % pattern == 0 else window for i in range(layers)]
    else:
        windows = [window] * layers
        if model_type not in ALL_LAYERS_TYPES:
            approximations.append(
                f"sliding_window {window} without layer_types for model type {model_type!r}: "
                "assumed to apply to every layer"
            )
    return AttentionLayout(
        windows=tuple(windows) if any(windows) else (), approximations=tuple(approximations)
    )


def _from_layer_types(
    layer_types: list[Any], layers: int, window: int, approximations: list[str]
) -> list[int]:
    """Per-layer windows from a `layer_types` list; what it cannot follow goes to approximations."""
    if len(layer_types) != layers:
        approximations.append(
            f"layer_types lists {len(layer_types)} layers for {layers}: every layer counted "
            "full causal"
        )
        return [0] * layers
    windows = []
    other = sorted({str(t) for t in layer_types if t not in (FULL, SLIDING)})
    for kind in layer_types:
        windows.append(window if kind == SLIDING else 0)
    if other:
        approximations.append(f"attention of type {', '.join(other)} counted as full causal")
    if SLIDING in layer_types and not window:
        approximations.append("sliding_attention layers without a sliding_window: counted full")
    return windows


def describe_layout(windows: tuple[int, ...]) -> list[str]:
    """A note naming the sliding-window layers and their windows (none when all are full)."""
    if not windows:
        return []
    sliding = [w for w in windows if w]
    sizes = ", ".join(str(w) for w in sorted(set(sliding)))
    return [
        f"sliding-window attention in {len(sliding)} of {len(windows)} layers (window {sizes}): "
        "a query at position p reads min(p + 1, window) keys in prefill and decode; the other "
        f"{len(windows) - len(sliding)} layers read every earlier key"
    ]
