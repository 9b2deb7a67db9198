"""The schema-versioned result of one run (result.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llenergymeasure.config.models import ExperimentConfig

SCHEMA_VERSION = "1.0.0"


class ResultModel(BaseModel):
    """Base of the result models: unknown keys are errors when a result is read back."""

    model_config = ConfigDict(extra="forbid")


class Stats(ResultModel):
    """Distribution summary of one latency quantity, in seconds."""

    n: int
    mean: float
    median: float
    p95: float
    p99: float
    min: float
    max: float


class RequestResult(ResultModel):
    """One prompt's generation, timed per output token."""

    index: int
    batch_index: int
    input_tokens: int = Field(..., description="Prompt tokens, padding excluded.")
    output_tokens: int = Field(..., description="Generated tokens up to and including EOS.")
    stopped_by_eos: bool
    ttft_s: float = Field(..., description="Submission of its batch to its first token.")
    latency_s: float = Field(..., description="Submission of its batch to its last token.")
    itl_s: list[float] = Field(..., description="Intervals between consecutive output tokens.")


class TokenCounts(ResultModel):
    """Tokens of the measurement window (warmup excluded)."""

    num_requests: int
    input_tokens: int
    output_tokens: int
    truncated_prompts: int = Field(..., description="Prompts cut to max_input_tokens.")


class Throughput(ResultModel):
    """Tokens per second of the measurement window."""

    output_tokens_per_s: float
    total_tokens_per_s: float = Field(..., description="Input plus output tokens per second.")


class Latency(ResultModel):
    """Latency statistics over the window's requests; null with a note when not defined."""

    ttft_s: Stats | None
    itl_s: Stats | None = Field(..., description="All inter-token intervals, pooled.")
    itl_trimmed_s: Stats | None = Field(
        ..., description="Inter-token intervals without each request's first and last."
    )
    request_latency_s: Stats | None
    notes: list[str] = []


class Energy(ResultModel):
    """Energy of the measurement window and how it was obtained."""

    energy_j: float | None = Field(..., description="Energy of the window; null when unknown.")
    null_reason: str | None = None
    method: str = Field(..., description="codecarbon | none")
    confidence: Literal["measured", "estimated"] | None
    interval_s: float | None = Field(..., description="Sampling interval of the source.")
    devices: list[str] = Field(..., description="What the energy covers.")
    components_j: dict[str, float] = {}
    meter_duration_s: float | None = Field(None, description="Span the meter itself covered.")
    emissions_kg: float | None = Field(None, description="kg CO2eq from the meter, if any.")
    notes: list[str] = []


class Memory(ResultModel):
    """Peak memory of the run's process."""

    peak_rss_mb: float = Field(
        ..., description="Process peak RSS (getrusage), model load included."
    )
    peak_device_allocated_mb: float | None = None
    device_null_reason: str | None = None


class Timing(ResultModel):
    """Wall-clock frame of the run."""

    started_at: str = Field(..., description="Window start, ISO 8601 UTC.")
    ended_at: str = Field(..., description="Window end, ISO 8601 UTC.")
    window_s: float = Field(..., description="Measurement window duration.")
    model_load_s: float
    warmup_s: float
    warmup_batches: int


class RunResult(ResultModel):
    """Everything measured in one run."""

    schema_version: str = SCHEMA_VERSION
    run_id: str
    config_hash: str
    config: ExperimentConfig
    timing: Timing
    tokens: TokenCounts
    throughput: Throughput
    latency: Latency
    energy: Energy
    energy_per_output_token_j: float | None
    energy_per_output_token_null_reason: str | None = None
    memory: Memory
    environment: dict[str, Any]
    warnings: list[str] = []
    requests: list[RequestResult]
