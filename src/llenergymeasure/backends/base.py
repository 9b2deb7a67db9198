"""The Backend protocol every inference backend implements, and the records it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt as token ids, ready for the engine.

    Attributes:
        token_ids: Prompt token ids (chat template applied where configured).
        truncated: Whether the prompt was cut to `max_input_tokens`.
    """

    token_ids: tuple[int, ...]
    truncated: bool


@dataclass(frozen=True)
class EngineTiming:
    """An engine's own timestamps of one request, on the engine's clock (seconds).

    They come from the engine, not from llem: TensorRT-LLM's per-request perf metrics, read
    from its steady clock (CLOCK_MONOTONIC on Linux, the clock of llem's `time.perf_counter`:
    `clock` says whether it is llem's here). They are recorded beside llem's own timestamps,
    as the engine reported them. None where the engine did not report the time.

    Attributes:
        clock: The clock the times are on, in words.
        arrival_s: The request reached the engine.
        first_scheduled_s: The engine first scheduled it.
        first_token_s: The engine produced its first token.
        last_token_s: The engine produced its last token.
    """

    clock: str
    arrival_s: float | None
    first_scheduled_s: float | None
    first_token_s: float | None
    last_token_s: float | None


@dataclass(frozen=True)
class RequestTiming:
    """Raw timing of one request, on one monotonic clock (seconds).

    Attributes:
        index: Position of the prompt in the run.
        batch_index: Batch the prompt was generated in.
        input_tokens: Prompt tokens, padding excluded.
        arrival_s: When the request was due: offline runs the window start, scheduled
            arrivals (Poisson/constant) the scheduled time, never the actual submit.
        submit_s: When it was handed to the engine (transformers: its batch's start).
        token_times_s: Arrival time of each counted output token.
        output_ids: The counted output token ids (EOS included, nothing after it).
        stopped_by_eos: Whether generation ended on EOS (else on the length limit).
        chunk_sizes: Tokens delivered together at each arrival (None: one token each).
        cached_prompt_tokens: Prompt tokens served from the engine's prefix cache (None:
            the engine does not say).
        engine_timing: The engine's own timestamps of the request, on its own clock (None:
            the engine does not report them).
    """

    index: int
    batch_index: int
    input_tokens: int
    arrival_s: float
    submit_s: float
    token_times_s: tuple[float, ...]
    output_ids: tuple[int, ...]
    stopped_by_eos: bool
    chunk_sizes: tuple[int, ...] | None = None
    cached_prompt_tokens: int | None = None
    engine_timing: EngineTiming | None = None


@dataclass(frozen=True)
class CacheState:
    """What a backend can carry from one generation to the next.

    Attributes:
        prefix_caching: Whether the engine reuses KV blocks of earlier prompts.
        reset: Whether the cache was emptied before the window (and between passes).
        note: How the backend keeps the window clean, in words.
    """

    prefix_caching: bool
    reset: bool
    note: str


class Backend(Protocol):
    """One inference engine, loaded once per run and driven batch by batch.

    A backend must not carry cached work from the warmup into the window: `reset_caches`
    is called right before the window and between its passes.
    """

    name: str

    def load(self) -> None:
        """Load model and tokenizer onto the run's device (outside the window)."""

    def prepare_prompts(self) -> list[PreparedPrompt]:
        """Build the run's prompts as token ids, in order."""

    def run(
        self, prompts: Sequence[PreparedPrompt], *, offline: bool = False
    ) -> list[RequestTiming]:
        """Generate every prompt (batched as the backend batches), timing every output token.

        Args:
            prompts: The requests.
            offline: Submit all at once, ignoring a configured arrival schedule (warmup).
        """

    def reset_caches(self) -> CacheState:
        """Drop every cache that could serve the next generation from earlier work."""

    def close(self) -> None:
        """Release the engine (after the window; its processes, where it has any)."""

    def model_config(self) -> Any:
        """The model's transformers config (dimensions for FLOPs)."""

    def reset_peak_device_memory(self) -> None:
        """Start a new peak of accelerator memory (before the window)."""

    def device_memory_mb(self) -> tuple[float | None, float | None]:
        """(Allocated now, peak since the last reset) in MiB; None where not observable."""

    def versions(self) -> dict[str, str]:
        """Versions of the libraries this backend ran on.

        A backend may also define `engine_facts() -> dict[str, Any]`: what its engine did
        with the run's settings that the config alone does not say (see `engine_facts`).
        """


def engine_facts(backend: object) -> dict[str, Any]:
    """A backend's `engine_facts()` (the result's `environment.engine`), {} where it has none."""
    facts = getattr(backend, "engine_facts", None)
    return dict(facts()) if callable(facts) else {}
