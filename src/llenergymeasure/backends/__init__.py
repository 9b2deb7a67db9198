"""Inference backends, imported lazily so planning never imports torch, vLLM or TensorRT-LLM."""

from __future__ import annotations

from llenergymeasure.backends.base import Backend, PreparedPrompt
from llenergymeasure.config.models import ExperimentConfig


def create_backend(config: ExperimentConfig) -> Backend:
    """Instantiate the backend a run asks for."""
    if config.backend == "transformers":
        from llenergymeasure.backends.transformers import TransformersBackend

        return TransformersBackend(config)
    if config.backend == "vllm":
        from llenergymeasure.backends.vllm import VllmBackend

        return VllmBackend(config)
    if config.backend == "tensorrt":
        from llenergymeasure.backends.tensorrt import TensorrtBackend

        return TensorrtBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")


__all__ = ["Backend", "PreparedPrompt", "create_backend"]
