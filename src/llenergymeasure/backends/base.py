"""The Backend protocol every inference backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from llenergymeasure.measure.latency import RequestTiming


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt as token ids, ready for the engine.

    Attributes:
        token_ids: Prompt token ids (chat template applied where configured).
        truncated: Whether the prompt was cut to `max_input_tokens`.
    """

    token_ids: tuple[int, ...]
    truncated: bool


class Backend(Protocol):
    """One inference engine, loaded once per run and driven batch by batch."""

    name: str

    def load(self) -> None:
        """Load model and tokenizer onto the run's device (outside the window)."""

    def prepare_prompts(self) -> list[PreparedPrompt]:
        """Build the run's prompts as token ids, in order."""

    def run(self, prompts: Sequence[PreparedPrompt]) -> list[RequestTiming]:
        """Generate every prompt (batched as the backend batches), timing every output token."""

    def close(self) -> None:
        """Release the engine (after the window; its processes, where it has any)."""

    def model_config(self) -> Any:
        """The model's transformers config (dimensions for FLOPs)."""

    def peak_device_memory_mb(self) -> float | None:
        """Peak accelerator memory allocated, or None where there is no accelerator."""

    def versions(self) -> dict[str, str]:
        """Versions of the libraries this backend ran on."""
