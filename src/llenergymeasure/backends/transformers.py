"""Transformers (PyTorch) backend: batched `generate` with a per-step timestamping streamer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer

from llenergymeasure.backends.base import CacheState, PreparedPrompt, RequestTiming
from llenergymeasure.backends.tokenize import eos_token_ids, prepare_prompts
from llenergymeasure.config.models import ExperimentConfig
from llenergymeasure.errors import BackendError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class StepClock(BaseStreamer):
    """Records when each generation step's tokens become available.

    `generate` calls `put` once with the prompt, then once per step with that step's
    token of every sequence; the step times are taken after the tokens reached the host.
    """

    def __init__(self) -> None:
        self.prompt_seen = False
        self.step_times_s: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        """Timestamp one step (the first call carries the prompt and is skipped)."""
        now = time.perf_counter()
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.step_times_s.append(now)

    def end(self) -> None:
        """Nothing to flush."""


def count_output_tokens(row: Sequence[int], eos_ids: set[int]) -> tuple[int, bool]:
    """Tokens generated up to and including the first EOS; padding after it is not counted.

    Returns:
        The count and whether the row stopped on EOS.
    """
    for position, token in enumerate(row):
        if token in eos_ids:
            return position + 1, True
    return len(row), False


def quantization_config(quantization: str) -> Any:
    """The transformers quantization config of a `quantization` setting (None for none)."""
    if quantization == "none":
        return None
    if quantization == "torchao-int8-weight":
        from torchao.quantization import Int8WeightOnlyConfig
        from transformers import TorchAoConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    from transformers import BitsAndBytesConfig

    if quantization == "bnb-8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")


class TransformersBackend:
    """Runs a causal LM with `transformers.generate`, left-padded batches."""

    name = "transformers"

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.settings = config.settings
        self.device = torch.device(config.measurement.device)
        self.model: Any = None
        self.tokenizer: Any = None
        self.eos_ids: set[int] = set()

    def load(self) -> None:
        """Load tokenizer and model in the configured dtype onto the device."""
        torch.set_num_threads(self.settings.threads)
        path = self.config.model.path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            quantization = self.settings.quantization
            # Any: transformers' decorated `to` does not type-check with a device argument
            model: Any = AutoModelForCausalLM.from_pretrained(
                path,
                dtype=DTYPES[self.settings.dtype],
                quantization_config=quantization_config(quantization),
                # bitsandbytes places the weights itself; they cannot be moved afterwards
                device_map={"": str(self.device)} if quantization.startswith("bnb") else None,
            )
            self.model = model if quantization.startswith("bnb") else model.to(self.device)
        except Exception as e:  # corrupt weights raise the loader's own errors, too
            raise BackendError(
                f"cannot load model {self.config.model.name!r} from {path}: {e}"
            ) from e
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_ids = eos_token_ids(self.tokenizer, self.model.generation_config)
        if self.settings.decoding == "sample":
            torch.manual_seed(self.settings.seed or 0)

    def prepare_prompts(self) -> list[PreparedPrompt]:
        """Tokenise the run's prompts, fitting each into `max_input_tokens`."""
        return prepare_prompts(self.tokenizer, self.config)

    def generation_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `generate` for this run's decoding settings."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "min_new_tokens": s.min_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if s.decoding == "greedy":
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k)
        return kwargs

    def encode_batch(self, prompts: Sequence[PreparedPrompt]) -> dict[str, torch.Tensor]:
        """Left-pad a batch of prompts into model inputs on the device."""
        batch = self.tokenizer.pad(
            {"input_ids": [list(p.token_ids) for p in prompts]}, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def run(
        self, prompts: Sequence[PreparedPrompt], *, offline: bool = False
    ) -> list[RequestTiming]:
        """Generate the prompts in consecutive batches of `batch_size` (always offline)."""
        size = self.settings.batch_size
        arrival_s = time.perf_counter()  # offline: every request is there from the start
        timings: list[RequestTiming] = []
        for batch_index, first in enumerate(range(0, len(prompts), size)):
            batch = prompts[first : first + size]
            timings += self.generate(batch, batch_index, first, arrival_s)
        return timings

    def reset_caches(self) -> CacheState:
        """Nothing to drop: `generate` builds a new KV cache for every batch."""
        return CacheState(
            prefix_caching=False,
            reset=False,
            note="transformers: generate builds a new KV cache per batch; nothing is "
            "carried from the warmup or between batches",
        )

    def close(self) -> None:
        """Nothing to release: the model lives in this process."""

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[PreparedPrompt],
        batch_index: int,
        first_index: int,
        arrival_s: float | None = None,
    ) -> list[RequestTiming]:
        """Generate one batch; every step of every sequence is timestamped.

        Args:
            prompts: The batch.
            batch_index: Its position in the run.
            first_index: Index of its first prompt in the run.
            arrival_s: When its requests arrived (default: now, the batch start).
        """
        inputs = self.encode_batch(prompts)
        clock = StepClock()
        submit_s = time.perf_counter()
        output = self.model.generate(**inputs, **self.generation_kwargs(), streamer=clock)
        generated = output[:, inputs["input_ids"].shape[1] :].tolist()
        if generated and len(clock.step_times_s) != len(generated[0]):
            raise BackendError(
                f"streamer saw {len(clock.step_times_s)} steps for {len(generated[0])} tokens"
            )
        timings = []
        for row, (ids, mask) in enumerate(zip(generated, inputs["attention_mask"], strict=True)):
            n_tokens, by_eos = count_output_tokens(ids, self.eos_ids)
            timings.append(
                RequestTiming(
                    index=first_index + row,
                    batch_index=batch_index,
                    input_tokens=int(mask.sum()),
                    arrival_s=submit_s if arrival_s is None else arrival_s,
                    submit_s=submit_s,
                    token_times_s=tuple(clock.step_times_s[:n_tokens]),
                    output_ids=tuple(ids[:n_tokens]),
                    stopped_by_eos=by_eos,
                )
            )
        return timings

    def model_config(self) -> Any:
        """The loaded model's transformers config."""
        return self.model.config

    def reset_peak_device_memory(self) -> None:
        """Start a new CUDA memory peak (before the window)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def device_memory_mb(self) -> tuple[float | None, float | None]:
        """CUDA memory allocated by torch now and at its peak since the reset; None on CPU."""
        if self.device.type != "cuda":
            return None, None
        return (
            torch.cuda.memory_allocated(self.device) / 2**20,
            torch.cuda.max_memory_allocated(self.device) / 2**20,
        )

    def versions(self) -> dict[str, str]:
        """Torch and transformers versions."""
        return {"torch": torch.__version__, "transformers": version("transformers")}
