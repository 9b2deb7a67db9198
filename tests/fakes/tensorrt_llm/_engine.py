"""The stand-in engine: `LLM`, streamed `RequestOutput`s, perf metrics on its own clock."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tensorrt_llm._args import TorchLlmArgs
from tensorrt_llm.sampling_params import SamplingParams

ENGINE_CLOCK_OFFSET_S = 7000.0
"""The engine clock reads this much more than `time.monotonic()`: its zero is not llem's."""
SCENARIO_ENV = "FAKE_TRTLLM_SCENARIO"
TRACE_ENV = "FAKE_TRTLLM_TRACE"


def engine_now() -> timedelta:
    """The engine's steady clock, as the real perf metrics report it (a timedelta)."""
    return timedelta(seconds=time.monotonic() + ENGINE_CLOCK_OFFSET_S)


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
        fail_on_init: Raise this RuntimeError message from `LLM(...)`.
    """

    chunks: list[int] = field(default_factory=lambda: [1, 2, 1, 3])
    step_s: float = 0.002
    eos: str = "mixed"
    eos_after: int = 5
    strip_end_id: bool = False
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
        self, engine: LLM, request_id: int, prompt_ids: list[int], params: SamplingParams
    ) -> None:
        self.request_id = request_id
        self.prompt_token_ids = prompt_ids
        self.outputs = [CompletionOutput(0)]
        self.finished = False
        self._engine = engine
        self._params = params
        self._scenario = engine.scenario
        self._plan = _plan(prompt_ids, params, engine.scenario)
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


def _plan(prompt: list[int], params: SamplingParams, scenario: Scenario) -> _Plan:
    """The tokens a request will produce and how it ends (deterministic per prompt)."""
    stop_ids = list(params.stop_token_ids or [])
    specials = {params.end_id, *stop_ids}
    base = 1000 + (sum(prompt) * 7) % 5000
    plain = [t for t in range(base, base + params.max_tokens + len(specials)) if t not in specials]
    kind = scenario.eos
    if kind == "mixed":
        kind = ("end_id", "stop_token", "never")[len(prompt) % 3]
    if kind == "stop_token" and not stop_ids:
        kind = "end_id"
    position = max(scenario.eos_after, (params.min_tokens or 0) + 1)
    if kind == "never" or position > params.max_tokens or params.end_id is None:
        return _Plan(plain[: params.max_tokens], "length")
    eos = params.end_id if kind == "end_id" else stop_ids[0]
    if params.ignore_eos:  # generated, ignored, and generation goes on
        tokens = [*plain[: position - 1], eos, *plain[position - 1 :]]
        return _Plan(tokens[: params.max_tokens], "length")
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
        self._slots: asyncio.Semaphore | None = None
        self._next_id = 0
        self.is_shutdown = False
        trace = os.environ.get(TRACE_ENV)
        if trace:
            with open(trace, "a", encoding="utf-8") as f:
                f.write(json.dumps(self.args.model_dump(mode="json")) + "\n")

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
        limit = self.args.max_seq_len
        if limit is not None and len(ids) + params.max_tokens > limit:
            raise ValueError(
                f"The sum of prompt length ({len(ids)}) and max_tokens ({params.max_tokens}) "
                f"should not exceed max_seq_len ({limit})"
            )
        self._next_id += 1
        return RequestOutput(self, self._next_id, list(ids), params)

    def shutdown(self) -> None:
        """Release the engine."""
        self.is_shutdown = True

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
