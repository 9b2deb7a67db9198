"""The stand-in engine: `LLM`, streamed `RequestOutput`s, perf metrics on the engine clock.

It behaves as TensorRT-LLM 1.2's PyTorch engine does where llem's numbers depend on it
(read from its sources: `executor/base_worker.py`, `llmapi/llm.py`,
`_torch/pyexecutor/sampler.py`, `llmapi/llm_args.py`):

- `ignore_eos` disables `end_id` only (the request's end id becomes -1): a
  `stop_token_ids` id still ends the request.
- `min_tokens` bans `end_id` only, never a `stop_token_ids` id; older 1.2 builds count the
  prompt toward it (`Scenario.min_tokens_counts_prompt`).
- The default sampler (`sampler_type="auto"`: TorchSampler) ignores a request's `seed`;
  `TRTLLMSampler` honours it.
- Prompt + `max_tokens` over `max_seq_len` is clamped, with a log line only, to
  `max_seq_len - prompt` tokens (a prompt that leaves none fails); a prompt over
  `max_num_tokens` without chunked prefill fails in `generate_async`.
- Perf-metric times are `std::chrono::steady_clock`, CLOCK_MONOTONIC on Linux: the clock
  of `time.monotonic()` and `time.perf_counter()`.
- `kv_cache_config.dtype` acts only on `auto` (the checkpoint's `kv_cache_quant_algo`,
  from its `hf_quant_config.json`: `FP8` gives an FP8 KV cache) and `fp8` (and `nvfp4`,
  Blackwell only); the engine refuses any other value when it loads the model
  (`_torch/pyexecutor/model_loader.py`). The result lands in
  `llm.args.quant_config.kv_cache_quant_algo`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tensorrt_llm._args import QuantConfig, TorchLlmArgs
from tensorrt_llm.sampling_params import SamplingParams

SCENARIO_ENV = "FAKE_TRTLLM_SCENARIO"
TRACE_ENV = "FAKE_TRTLLM_TRACE"
TORCH_SAMPLER_SEED = 42
"""TorchSampler draws from one generator per engine, seeded once (its `_global_seed`)."""
KV_CACHE_QUANT = {"fp8": "FP8", "nvfp4": "NVFP4"}
"""`kv_cache_config.dtype` values that override the checkpoint; `auto` keeps its own."""
logger = logging.getLogger("tensorrt_llm")


def engine_now() -> timedelta:
    """The engine's steady clock (CLOCK_MONOTONIC), as the perf metrics report it."""
    return timedelta(seconds=time.monotonic())


@dataclass
class Scenario:
    """What the engine generates.

    Attributes:
        chunks: Tokens per streamed update, cycled (more than 1: a speculative step).
        step_s: Engine time per update (the first one is the prefill).
        eos: `mixed`: by the prompt's length mod 3, a request ends on `end_id`, on a
            `stop_token_ids` id, or at `max_tokens`; or `end_id`, `stop_token`, `never`.
        eos_after: Position of the EOS token (1-based; never before `min_tokens` + 1).
        strip_end_id: End on `end_id` without returning that token.
        min_tokens_counts_prompt: Compare prompt + generated tokens with `min_tokens`
            (TorchSampler of older 1.2 builds), not the generated ones.
        fail_on_init: Raise this RuntimeError message from `LLM(...)`.
    """

    chunks: list[int] = field(default_factory=lambda: [1, 2, 1, 3])
    step_s: float = 0.002
    eos: str = "mixed"
    eos_after: int = 5
    strip_end_id: bool = False
    min_tokens_counts_prompt: bool = False
    fail_on_init: str | None = None

    @classmethod
    def from_env(cls) -> Scenario:
        """The scenario `FAKE_TRTLLM_SCENARIO` names (JSON), else the defaults."""
        return cls(**json.loads(os.environ.get(SCENARIO_ENV) or "{}"))


@dataclass
class TimingMetrics:
    """`RequestPerfMetrics.timing_metrics`: timedeltas on the engine clock (0: not yet)."""

    arrival_time: timedelta = timedelta(0)
    first_scheduled_time: timedelta = timedelta(0)
    first_token_time: timedelta = timedelta(0)
    last_token_time: timedelta = timedelta(0)


@dataclass
class KvCacheMetrics:
    """`RequestPerfMetrics.kv_cache_metrics`."""

    num_total_allocated_blocks: int = 1
    num_new_allocated_blocks: int = 1
    num_reused_blocks: int = 0
    num_missed_blocks: int = 1


@dataclass
class RequestPerfMetrics:
    """Per-request perf metrics (`SamplingParams(return_perf_metrics=True)`)."""

    timing_metrics: TimingMetrics = field(default_factory=TimingMetrics)
    kv_cache_metrics: KvCacheMetrics = field(default_factory=KvCacheMetrics)
    first_iter: int | None = None
    last_iter: int | None = None
    iter: int | None = None


@dataclass
class CompletionOutput:
    """One output sequence: cumulative `token_ids`, and the ones new at the last update."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    request_perf_metrics: RequestPerfMetrics | None = None
    _last_token_ids_len: int = 0

    @property
    def length(self) -> int:
        """Tokens generated so far."""
        return len(self.token_ids)

    @property
    def token_ids_diff(self) -> list[int]:
        """Token ids new since the previous update."""
        return self.token_ids[self._last_token_ids_len :]


class RequestOutput:
    """A streamed request: `async for` yields this object after each engine update."""

    def __init__(
        self,
        engine: LLM,
        request_id: int,
        prompt_ids: list[int],
        params: SamplingParams,
        max_tokens: int,
    ) -> None:
        self.request_id = request_id
        self.prompt_token_ids = prompt_ids
        self.outputs = [CompletionOutput(0)]
        self.finished = False
        self._engine = engine
        self._params = params
        self._scenario = engine.scenario
        self._plan = _plan(
            prompt_ids, params, engine.scenario, max_tokens, engine.sample_offset(params)
        )
        self._position = 0
        self._step = 0
        self._slot_held = False
        self._metrics = RequestPerfMetrics() if params.return_perf_metrics else None
        if self._metrics is not None:
            self._metrics.timing_metrics.arrival_time = engine_now()
        self.outputs[0].request_perf_metrics = self._metrics

    def __aiter__(self) -> RequestOutput:
        return self

    async def __anext__(self) -> RequestOutput:
        if self.finished:
            raise StopAsyncIteration
        timing = self._metrics.timing_metrics if self._metrics else None
        if not self._slot_held:
            await self._engine.slots().acquire()  # continuous batching: max_batch_size at once
            self._slot_held = True
            if timing is not None:
                timing.first_scheduled_time = engine_now()
        await asyncio.sleep(self._scenario.step_s)
        chunks = self._scenario.chunks
        size = chunks[self._step % len(chunks)]
        self._step += 1
        new = self._plan.tokens[self._position : self._position + size]
        self._position += len(new)
        out = self.outputs[0]
        out._last_token_ids_len = len(out.token_ids)
        out.token_ids.extend(new)
        if timing is not None and self._step == 1:
            timing.first_token_time = engine_now()
        if self._position >= len(self._plan.tokens):
            self._finish(out, timing)
        return self

    def _finish(self, out: CompletionOutput, timing: TimingMetrics | None) -> None:
        plan = self._plan
        out.finish_reason = plan.finish_reason
        out.stop_reason = plan.stop_reason
        if plan.stop_reason is not None and not self._params.include_stop_str_in_output:
            out.token_ids = out.token_ids[:-1]  # the stop token leaves the output
        if plan.finish_reason == "stop" and plan.stop_reason is None and plan.strip_end_id:
            out.token_ids = out.token_ids[:-1]
        if timing is not None:
            timing.last_token_time = engine_now()
        self.finished = True
        self._engine.slots().release()


@dataclass
class _Plan:
    tokens: list[int]
    finish_reason: str
    stop_reason: int | None = None
    strip_end_id: bool = False


def _plan(
    prompt: list[int],
    params: SamplingParams,
    scenario: Scenario,
    max_tokens: int,
    sample_offset: int,
) -> _Plan:
    """The tokens a request will produce and how it ends (deterministic per prompt).

    `max_tokens` is the engine's, after its clamp to `max_seq_len`; `sample_offset` shifts
    the ids a sampled request draws (0 for greedy decoding).
    """
    stop_ids = list(params.stop_token_ids or [])
    end_id = -1 if params.ignore_eos else params.end_id  # as the executor hands it on
    specials = {params.end_id, *stop_ids}
    base = 1000 + (sum(prompt) * 7 + sample_offset) % 5000
    plain = [t for t in range(base, base + max_tokens + len(specials)) if t not in specials]
    kind = scenario.eos
    if kind == "mixed":
        kind = ("end_id", "stop_token", "never")[len(prompt) % 3]
    if kind == "stop_token" and not stop_ids:
        kind = "end_id"
    if kind == "never" or params.end_id is None:
        return _Plan(plain[:max_tokens], "length")
    position = scenario.eos_after
    if kind == "end_id" and end_id != -1:
        # min_tokens: logits[end_id] = -inf while the count is below it (end_id only)
        counted_before = len(prompt) if scenario.min_tokens_counts_prompt else 0
        position = max(position, (params.min_tokens or 0) - counted_before + 1)
    if position > max_tokens:
        return _Plan(plain[:max_tokens], "length")
    eos = params.end_id if kind == "end_id" else stop_ids[0]
    if kind == "end_id" and end_id == -1:  # generated, not an end: generation goes on
        tokens = [*plain[: position - 1], eos, *plain[position - 1 :]]
        return _Plan(tokens[:max_tokens], "length")
    stop_reason = None if kind == "end_id" else eos
    strip = kind == "end_id" and scenario.strip_end_id
    return _Plan([*plain[: position - 1], eos], "stop", stop_reason, strip)


class LLM:
    """`tensorrt_llm.LLM`: validates its arguments as `TorchLlmArgs`, streams a scenario."""

    def __init__(
        self,
        model: str,
        tokenizer: Any = None,
        tokenizer_mode: str = "auto",
        skip_tokenizer_init: bool = False,
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.args = TorchLlmArgs(
            model=model,
            tokenizer=tokenizer,
            tokenizer_mode=tokenizer_mode,
            skip_tokenizer_init=skip_tokenizer_init,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            revision=revision,
            tokenizer_revision=tokenizer_revision,
            **kwargs,
        )
        self.scenario = Scenario.from_env()
        if self.scenario.fail_on_init:
            raise RuntimeError(self.scenario.fail_on_init)
        self.args.quant_config = _quant_config(self.args)
        # The executor's limit: the one given, else the model's (`max_position_embeddings`).
        self.max_seq_len = self.args.max_seq_len or _model_limit(self.args)
        trtllm = self.args.sampler_type == "TRTLLMSampler"
        self.sampler = "TRTLLMSampler" if trtllm else "TorchSampler"  # auto: no beam search
        self._torch_rng = random.Random(TORCH_SAMPLER_SEED)
        self._slots: asyncio.Semaphore | None = None
        self._next_id = 0
        self.is_shutdown = False
        trace = os.environ.get(TRACE_ENV)
        if trace:
            with open(trace, "a", encoding="utf-8") as f:
                f.write(json.dumps(self.args.model_dump(mode="json")) + "\n")

    def sample_offset(self, params: SamplingParams) -> int:
        """How far a sampled request's ids are shifted: by its seed only under TRTLLMSampler."""
        if params.top_k == 1 or not params.temperature:
            return 0  # greedy
        if self.sampler == "TRTLLMSampler":
            return random.Random(params.seed or 0).randrange(1, 10**6)
        return self._torch_rng.randrange(1, 10**6)  # the engine's generator, seed ignored

    def slots(self) -> asyncio.Semaphore:
        """The engine's batch slots (created in the running event loop)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.args.max_batch_size or 2048)
        return self._slots

    def generate_async(
        self,
        inputs: Any,
        sampling_params: SamplingParams | None = None,
        lora_request: Any = None,
        prompt_adapter_request: Any = None,
        streaming: bool = False,
        queries: Any = None,
        kv_cache_retention_config: Any = None,
        disaggregated_params: Any = None,
    ) -> RequestOutput:
        """Submit one prompt (token ids or `{"prompt_token_ids": [...]}`)."""
        if self.is_shutdown:
            raise RuntimeError("the LLM has been shut down")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "The asyncio event loop was not present during initialization, so async "
                "operations are not available."
            ) from None
        if not streaming:
            raise NotImplementedError("the stand-in streams only (streaming=True)")
        ids = inputs["prompt_token_ids"] if isinstance(inputs, dict) else inputs
        if not ids or not all(isinstance(i, int) for i in ids):
            raise TypeError(f"The inputs must be type str or list of int, but got {inputs!r}")
        params = sampling_params or SamplingParams()
        max_num_tokens = self.args.max_num_tokens
        if not self.args.enable_chunked_prefill and max_num_tokens and len(ids) > max_num_tokens:
            raise ValueError(
                f"The sum of prompt length ({float(len(ids))}), query length (0) should not "
                f"exceed max_num_tokens ({max_num_tokens})"
            )
        self._next_id += 1
        request = RequestOutput(
            self, self._next_id, list(ids), params, self._deduce_max_tokens(len(ids), params)
        )
        return request

    def _deduce_max_tokens(self, prompt_len: int, params: SamplingParams) -> int:
        """The executor's `max_tokens`: clamped to what `max_seq_len` leaves, with a log line."""
        room = self.max_seq_len - prompt_len
        if room <= 0:
            raise ValueError(
                f"`default_max_tokens` ({room}) should be greater than 0, `default_max_tokens` "
                f"({room}) = max_seq_len ({self.max_seq_len}) - `splited_prompt_len` "
                f"({prompt_len}) - `query_token_len` (0)"
            )
        if params.max_tokens > room:
            logger.warning(
                "User-specified `max_tokens` (%d) is greater than deduced `default_max_tokens` "
                "(%d), using default_max_tokens instead.",
                params.max_tokens,
                room,
            )
            return room
        return params.max_tokens

    def shutdown(self) -> None:
        """Release the engine."""
        self.is_shutdown = True

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _quant_config(args: TorchLlmArgs) -> QuantConfig:
    """The checkpoint's quantisation (`hf_quant_config.json`), with the KV cache dtype applied."""
    quant = QuantConfig()
    file = Path(str(args.model)) / "hf_quant_config.json"
    if file.is_file():
        section = json.loads(file.read_text(encoding="utf-8")).get("quantization") or {}
        quant = QuantConfig(
            quant_algo=section.get("quant_algo"),
            kv_cache_quant_algo=section.get("kv_cache_quant_algo"),
        )
    dtype = args.kv_cache_config.dtype
    if dtype == "auto":
        return quant  # the checkpoint's KV cache quantisation, if any
    if dtype not in KV_CACHE_QUANT:
        raise ValueError(
            "Overriding KV cache quantization with an invalid type "
            f'"llm_args.KvCacheConfig.dtype="{dtype}" Accepted types are '
            f'"{("fp8", "nvfp4", "auto")}".'
        )
    quant.kv_cache_quant_algo = KV_CACHE_QUANT[dtype]
    return quant


def _model_limit(args: TorchLlmArgs) -> int:
    """The checkpoint's `max_position_embeddings` (config.json)."""
    config = json.loads((Path(str(args.model)) / "config.json").read_text(encoding="utf-8"))
    return int(config["max_position_embeddings"])
