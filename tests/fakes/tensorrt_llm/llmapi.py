"""`tensorrt_llm.llmapi`: what llem imports from it."""

from __future__ import annotations

from tensorrt_llm._args import CapacitySchedulerPolicy, KvCacheConfig, SchedulerConfig, TorchLlmArgs
from tensorrt_llm._engine import LLM, CompletionOutput, RequestOutput
from tensorrt_llm.sampling_params import SamplingParams

__all__ = [
    "LLM",
    "CapacitySchedulerPolicy",
    "CompletionOutput",
    "KvCacheConfig",
    "RequestOutput",
    "SamplingParams",
    "SchedulerConfig",
    "TorchLlmArgs",
]
