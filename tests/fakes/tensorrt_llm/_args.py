"""The argument models of `LLM(...)` (`tensorrt_llm/llmapi/llm_args.py`), strict as for real."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STRICT = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class CapacitySchedulerPolicy(StrEnum):
    """How the scheduler admits requests."""

    MAX_UTILIZATION = "MAX_UTILIZATION"
    GUARANTEED_NO_EVICT = "GUARANTEED_NO_EVICT"
    STATIC_BATCH = "STATIC_BATCH"


class KvCacheConfig(BaseModel):
    """KV cache configuration (a subset of the real fields, same names and defaults)."""

    model_config = STRICT
    enable_block_reuse: bool = True
    max_tokens: int | None = None
    max_attention_window: list[int] | None = None
    free_gpu_memory_fraction: float | None = Field(0.9, ge=0, le=1)
    host_cache_size: int | None = None
    enable_partial_reuse: bool = True
    copy_on_partial_reuse: bool = True
    event_buffer_max_size: int = 0
    use_uvm: bool = False
    dtype: str = "auto"  # any string is taken here; loading the model refuses all but a few
    tokens_per_block: int = 32


class SchedulerConfig(BaseModel):
    """Scheduler configuration."""

    model_config = STRICT
    capacity_scheduler_policy: CapacitySchedulerPolicy = CapacitySchedulerPolicy.GUARANTEED_NO_EVICT
    context_chunking_policy: str | None = None


class QuantConfig(BaseModel):
    """`llm.args.quant_config`: filled from the checkpoint when the engine is built."""

    model_config = STRICT
    quant_algo: str | None = None
    kv_cache_quant_algo: str | None = None


class TorchLlmArgs(BaseModel):
    """`LLM(...)` arguments of the PyTorch engine (the real fields llem sets or tests)."""

    model_config = STRICT
    model: str | Path
    tokenizer: Any = None
    tokenizer_mode: Literal["auto", "slow"] = "auto"
    skip_tokenizer_init: bool = False
    trust_remote_code: bool = False
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    revision: str | None = None
    tokenizer_revision: str | None = None
    pipeline_parallel_size: int = 1
    context_parallel_size: int = 1
    gpus_per_node: int | None = None
    moe_expert_parallel_size: int | None = None
    enable_attention_dp: bool = False
    kv_cache_config: KvCacheConfig = Field(default_factory=KvCacheConfig)
    enable_chunked_prefill: bool = False
    guided_decoding_backend: Literal["xgrammar", "llguidance"] | None = None
    scheduler_config: SchedulerConfig = Field(default_factory=SchedulerConfig)
    speculative_config: Any = None
    max_batch_size: int | None = 2048
    max_input_len: int | None = 1024
    max_seq_len: int | None = None
    max_beam_width: int | None = 1
    max_num_tokens: int | None = 8192
    num_postprocess_workers: int = 0
    reasoning_parser: str | None = None
    cuda_graph_config: Any = None
    disable_overlap_scheduler: bool = False
    attn_backend: str = "TRTLLM"
    sampler_type: Literal["TRTLLMSampler", "TorchSampler", "auto"] = "auto"
    enable_iter_perf_stats: bool = False
    print_iter_log: bool = False
    torch_compile_config: Any = None
    enable_autotuner: bool = True
    load_format: str = "auto"
    stream_interval: int = Field(1, gt=0)
    backend: Literal["pytorch"] = "pytorch"
    quant_config: QuantConfig = Field(default_factory=QuantConfig)
