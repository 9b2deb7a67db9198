"""Count reference forwards of a model with calflops (run once per model, in its own process).

calflops (0.3.2) with transformers 5: its tokenizer path fails (`encode_plus`), so real
`input_ids` go through `kwargs`; a failed call leaves hooks installed that inflate later
counts, so counting stops at the first failure; SDPA attention is invisible to it, so the
model is loaded with eager attention; so are transformers' fused MoE experts (`grouped_mm`, the
default for Mixtral/Qwen-MoE/DeepSeek), so experts are loaded eager too (one linear per expert).
"""

from __future__ import annotations

import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from llenergymeasure.measure.flops import Architecture

SHAPES = ((1, 128), (4, 128), (1, 512))


def profile(model_path: str, shapes: tuple[tuple[int, int], ...] = SHAPES) -> dict[str, Any]:
    """Calflops and architecture FLOPs at reference shapes, and their median ratio."""
    start = time.perf_counter()
    result: dict[str, Any] = {
        "model": model_path,
        "attention": "eager",
        "experts": "eager",
        "shapes": [],
        "ratio": None,
        "null_reason": None,
    }
    try:
        import torch
        from calflops import calculate_flops
        from transformers import AutoModelForCausalLM

        result["calflops_version"] = version("calflops")
        torch.set_num_threads(1)
        model = AutoModelForCausalLM.from_pretrained(
            model_path,
            dtype=torch.float32,
            attn_implementation="eager",
            experts_implementation="eager",
        )
        arch = Architecture.from_config(model.config)
        generator = torch.Generator().manual_seed(0)
        for batch, seq_len in shapes:
            ids = torch.randint(100, 1000, (batch, seq_len), generator=generator)
            flops, _macs, _params = calculate_flops(
                model=model,
                kwargs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                print_results=False,
                output_as_string=False,
            )
            expected = arch.forward(batch, seq_len)
            result["shapes"].append(
                {
                    "batch": batch,
                    "seq_len": seq_len,
                    "calflops": float(flops),
                    "architecture": float(expected),
                    "ratio": float(flops) / expected,
                }
            )
    except Exception as e:  # calflops fails in many ways; the reason is recorded, not raised
        result["null_reason"] = f"{type(e).__name__}: {e}".splitlines()[0]
    ratios = sorted(s["ratio"] for s in result["shapes"])
    if ratios and result["null_reason"] is None:
        result["ratio"] = ratios[len(ratios) // 2]
    result["duration_s"] = time.perf_counter() - start
    return result


def write_profile(model_path: str, out: Path) -> dict[str, Any]:
    """Profile and write the JSON atomically."""
    import json

    from llenergymeasure.results.io import write_text_atomic

    data = profile(model_path)
    write_text_atomic(out, json.dumps(data, indent=2) + "\n")
    return data
