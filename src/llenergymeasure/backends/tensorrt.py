"""TensorRT-LLM backend: `tensorrt_llm.LLM` (its PyTorch-based engine) with async streaming.

Every output token of every request is timestamped when a streamed update reaches llem.
One update can carry several tokens (speculative decoding, or a client that lags): they
share that arrival and form one chunk, as with vLLM. The engine's own per-request timings
(`SamplingParams(return_perf_metrics=True)`) are recorded beside llem's, on the engine's
clock, and never subtracted from llem's timestamps.

Tokens follow the rules of every backend: up to and including the first EOS (every EOS id
of the generation config and the tokenizer), nothing after it. TensorRT-LLM stops on
`end_id` (the tokenizer's EOS) and on `stop_token_ids` (the other EOS ids, kept in the
output with `include_stop_str_in_output`). Where an engine ends a request on `end_id`
without returning that token, the EOS it generated is counted at the final update.

What TensorRT-LLM 1.2 does with the settings, and what llem does about it (the stand-in
in tests/fakes/tensorrt_llm behaves the same way):

- `ignore_eos` disables `end_id` only; `stop_token_ids` still end a request, so none are
  passed then (every output is `max_new_tokens` long).
- `min_tokens` bans `end_id` only: another EOS id can end a request earlier (recorded);
  builds that count the prompt toward it fail the run rather than stop short. It is not
  passed with `ignore_eos` (those builds then ban vocabulary id -1 instead).
- The default sampler (TorchSampler) ignores a request's `seed`: recorded, with the
  sampler (`llm_kwargs: {sampler_type: TRTLLMSampler}` honours it).
- Prompt + `max_new_tokens` over `max_seq_len` is clamped, with a log line only: the
  requests that ended short are counted in the record. A prompt over `max_num_tokens`
  without chunked prefill, or one that leaves no room under `max_seq_len`, fails before
  the window.
- The perf-metric times are the engine's steady clock, CLOCK_MONOTONIC on Linux: the
  clock of `time.perf_counter`, so they are on llem's clock there (recorded as such).
- `kv_cache_config.dtype` acts only on `auto` and `fp8` (and `nvfp4`, Blackwell only, not
  offered), refusing any other value; with `auto` a checkpoint with `kv_cache_quant_algo:
  FP8` gets an FP8 KV cache. The KV cache dtype is recorded.

The record is `engine_facts()`, the result's `environment.engine`.

Not yet run on a GPU by this project: tested against a stand-in `tensorrt_llm` only.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from llenergymeasure.backends.arrivals import submission_offsets_s
from llenergymeasure.backends.base import CacheState, EngineTiming, PreparedPrompt, RequestTiming
from llenergymeasure.backends.tokenize import eos_token_ids, prepare_prompts
from llenergymeasure.backends.vllm import generation_config
from llenergymeasure.config.models import ExperimentConfig, TensorrtSettings
from llenergymeasure.errors import BackendError, ConfigError

# TensorrtSettings fields that are `LLM(...)` arguments of the same name (None: its default).
LLM_FIELDS = ("max_num_tokens", "max_seq_len", "enable_chunked_prefill")
# tensorrt.quantization -> the ModelOpt `quant_algo` values of such a checkpoint.
QUANT_ALGOS = {
    "fp8": {"FP8", "FP8_PER_CHANNEL_PER_TOKEN", "FP8_BLOCK_SCALES"},
    "int4_awq": {"W4A16_AWQ"},
}


def is_tensorrt_available() -> bool:
    """Whether TensorRT-LLM can be imported here."""
    import importlib.util

    return importlib.util.find_spec("tensorrt_llm") is not None


def tensorrt_version() -> str:
    """Version of the installed TensorRT-LLM."""
    try:
        return version("tensorrt-llm")
    except PackageNotFoundError:
        import tensorrt_llm

        return str(tensorrt_llm.__version__)


def kv_cache_arguments(engine: TensorrtSettings) -> dict[str, Any]:
    """`KvCacheConfig` arguments: block reuse off, so no prefill is served from the warmup."""
    kwargs: dict[str, Any] = {"enable_block_reuse": False}
    if engine.free_gpu_memory_fraction is not None:
        kwargs["free_gpu_memory_fraction"] = engine.free_gpu_memory_fraction
    if engine.kv_cache_dtype is not None:
        kwargs["dtype"] = engine.kv_cache_dtype
    return kwargs


def llm_arguments(config: ExperimentConfig) -> dict[str, Any]:
    """`tensorrt_llm.LLM` arguments of a run; the KV cache and scheduler configs as dicts."""
    engine = config.settings.tensorrt or TensorrtSettings()
    kwargs: dict[str, Any] = {
        "model": config.model.path,
        "tokenizer": config.model.path,
        "dtype": config.settings.dtype,
        "max_batch_size": config.settings.batch_size,
        "tensor_parallel_size": engine.tensor_parallel_size,
        "pipeline_parallel_size": engine.pipeline_parallel_size,
        "kv_cache_config": kv_cache_arguments(engine),
    }
    for name in LLM_FIELDS:
        value = getattr(engine, name)
        if value is not None:
            kwargs[name] = value
    if engine.capacity_scheduler_policy is not None:
        kwargs["scheduler_config"] = {"capacity_scheduler_policy": engine.capacity_scheduler_policy}
    return {**kwargs, **engine.llm_kwargs}


def engine_clock() -> tuple[str, bool]:
    """(The clock of the engine's perf-metric times, whether it is llem's `perf_counter`).

    TensorRT-LLM stamps them with `std::chrono::steady_clock`, CLOCK_MONOTONIC on Linux,
    which is also what `time.perf_counter` reads there.
    """
    implementation = time.get_clock_info("perf_counter").implementation
    shared = "CLOCK_MONOTONIC" in implementation and "RAW" not in implementation
    if shared:
        return "CLOCK_MONOTONIC (TensorRT-LLM steady_clock), llem's time.perf_counter", True
    return f"TensorRT-LLM steady_clock (llem's time.perf_counter is {implementation})", False


def _quant_sections(path: str) -> tuple[bool, list[dict[str, Any]]]:
    """(Whether checkpoint metadata was found, its quantisation sections, best first).

    ModelOpt's `hf_quant_config.json` (`quantization`), then the `quantization_config` of
    `config.json`.
    """
    found, sections = False, []
    for name in ("hf_quant_config.json", "config.json"):
        file = _checkpoint_file(path, name)
        if file is None:
            continue
        found = True
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        section = data.get("quantization") or data.get("quantization_config")
        if isinstance(section, dict):
            sections.append(section)
    return found, sections


def checkpoint_quant_algo(path: str) -> tuple[bool, str | None]:
    """(whether the checkpoint's metadata was found, its quantisation algorithm or None).

    Reads ModelOpt's `hf_quant_config.json` (`quantization.quant_algo`) or the
    `quantization_config` of `config.json` (ModelOpt's `quant_algo`, else `quant_method`).
    """
    found, sections = _quant_sections(path)
    for section in sections:
        algo = section.get("quant_algo") or section.get("quant_method")
        if algo:
            return True, str(algo).upper()
    return found, None


def checkpoint_kv_cache_quant_algo(path: str) -> str | None:
    """The checkpoint's `kv_cache_quant_algo` (e.g. FP8), None where it has none."""
    for section in _quant_sections(path)[1]:
        algo = section.get("kv_cache_quant_algo")
        if algo:
            return str(algo).upper()
    return None


def kv_cache_dtype(setting: str | None, checkpoint_kv_algo: str | None, dtype: str) -> str:
    """The KV cache dtype TensorRT-LLM 1.2 runs with, in words.

    `kv_cache_config.dtype` acts only on `fp8` (FP8 KV cache) and `auto` (the
    checkpoint's `kv_cache_quant_algo`, else the model dtype); the settings offer no other.

    Args:
        setting: `settings.tensorrt.kv_cache_dtype` (None: TensorRT-LLM's `auto`).
        checkpoint_kv_algo: The checkpoint's `kv_cache_quant_algo`.
        dtype: The run's model dtype.
    """
    if setting == "fp8":
        return "fp8 (settings.tensorrt.kv_cache_dtype)"
    if checkpoint_kv_algo == "FP8":
        return "fp8 (the checkpoint's kv_cache_quant_algo FP8)"
    if checkpoint_kv_algo:
        return f"{checkpoint_kv_algo.lower()} (the checkpoint's kv_cache_quant_algo)"
    return f"{dtype} (the model dtype)"


def sampler_record(config: ExperimentConfig) -> dict[str, Any]:
    """The engine's sampler and whether it honours `settings.seed`.

    TorchSampler, TensorRT-LLM's default (`sampler_type` auto, no beam search), draws
    from one generator of its own and ignores `SamplingParams.seed`; TRTLLMSampler
    honours it.
    """
    engine = config.settings.tensorrt or TensorrtSettings()
    chosen = str(engine.llm_kwargs.get("sampler_type", "auto"))
    sampler = "TRTLLMSampler" if chosen == "TRTLLMSampler" else "TorchSampler"
    if config.settings.decoding == "greedy":
        honoured, note = None, "greedy decoding (top_k 1): no random draw, the seed is moot"
    elif sampler == "TorchSampler":
        honoured = False
        note = (
            "TorchSampler ignores SamplingParams.seed: sampled outputs do not follow "
            "settings.seed (llm_kwargs sampler_type TRTLLMSampler honours it)"
        )
    else:
        honoured, note = True, "TRTLLMSampler seeds each request from SamplingParams.seed"
    return {"sampler": sampler, "seed_honoured": honoured, "seed_note": note}


def _checkpoint_file(path: str, name: str) -> Path | None:
    """A file of a local checkpoint, or of a hub model in the local cache; None if absent."""
    if Path(path).is_dir():
        local = Path(path) / name
        return local if local.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, name)
    except Exception:  # not installed, or not a valid hub id: nothing to read
        return None
    return Path(cached) if isinstance(cached, str) else None


def check_quantization(path: str, declared: str | None) -> None:
    """Fail when `tensorrt.quantization` does not describe the checkpoint.

    TensorRT-LLM reads the quantisation from the checkpoint; llem records the precision
    from the setting, so the two must agree. A hub model not in the local cache is not
    checked (its metadata cannot be read before the engine downloads it).

    Raises:
        ConfigError: Naming the checkpoint, the key and what it holds.
    """
    found, algo = checkpoint_quant_algo(path)
    if not found:
        return
    key = "settings.tensorrt.quantization"
    if declared is None and algo is not None:
        raise ConfigError(
            path,
            key,
            f"the checkpoint is quantised ({algo}) but the setting is not set: give the "
            "checkpoint's quantisation (fp8, int4_awq) so its precision is recorded",
        )
    if declared is not None and algo not in QUANT_ALGOS[declared]:
        what = f"quantised with {algo}" if algo else "not quantised"
        expected = ", ".join(sorted(QUANT_ALGOS[declared]))
        raise ConfigError(
            path,
            key,
            f"{declared!r} but the checkpoint is {what}: TensorRT-LLM runs pre-quantised "
            f"ModelOpt checkpoints ({expected})",
        )


def engine_timing(metrics: Any, clock: str) -> EngineTiming | None:
    """The engine's per-request timestamps (`request_perf_metrics.timing_metrics`)."""
    timing = getattr(metrics, "timing_metrics", None)
    if timing is None:
        return None

    def seconds(name: str) -> float | None:
        value = getattr(timing, name, None)
        if isinstance(value, timedelta):
            value = value.total_seconds()
        # 0 is the engine's "not set" (e.g. last_token_time while a request still streams)
        return float(value) if value else None

    return EngineTiming(
        clock=clock,
        arrival_s=seconds("arrival_time"),
        first_scheduled_s=seconds("first_scheduled_time"),
        first_token_s=seconds("first_token_time"),
        last_token_s=seconds("last_token_time"),
    )


class TensorrtBackend:
    """Runs TensorRT-LLM's `LLM` from this process's event loop; requests stream updates."""

    name = "tensorrt"

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.settings = config.settings
        self.engine_settings = config.settings.tensorrt or TensorrtSettings()
        self.loop = asyncio.new_event_loop()
        self.engine: Any = None
        self.tokenizer: Any = None
        self.eos_ids: set[int] = set()
        self.end_id: int | None = None
        self.clock, self.clock_is_llem = engine_clock()
        self.max_seq_len: int | None = None
        self.max_seq_len_source = "not known"
        self.kv_cache = "not known"
        self.clamped: set[int] = set()  # prompts whose output the engine cut to max_seq_len

    def load(self) -> None:
        """Build/load the engine (outside the window: its start-up is `model_load_s`)."""
        from transformers import AutoTokenizer

        path = self.config.model.path
        kwargs = llm_arguments(self.config)
        known = _known_llm_arguments()
        unknown = sorted(set(kwargs) - known) if known is not None else []
        if unknown:
            raise BackendError(
                f"tensorrt_llm {tensorrt_version()} does not accept engine setting(s) "
                f"{', '.join(unknown)} (settings.tensorrt.llm_kwargs)"
            )
        check_quantization(path, self.engine_settings.quantization)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.eos_ids = eos_token_ids(self.tokenizer, generation_config(path))
        tokenizer_eos = self.tokenizer.eos_token_id
        self.end_id = min(self.eos_ids, default=None) if tokenizer_eos is None else tokenizer_eos
        self.kv_cache = kv_cache_dtype(
            self.engine_settings.kv_cache_dtype,
            checkpoint_kv_cache_quant_algo(path),
            self.settings.dtype,
        )
        try:
            self.engine = _build_llm(kwargs)
        except Exception as e:  # pydantic ValidationError, ValueError, RuntimeError, CUDA errors
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"tensorrt_llm rejected the engine settings: {first_line}") from e
        self.max_seq_len, self.max_seq_len_source = self._max_seq_len()

    def _engine_arg(self, name: str) -> Any:
        """An `LLM` argument as the engine holds it (`llm.args`), None where not exposed."""
        return getattr(getattr(self.engine, "args", None), name, None)

    def _max_seq_len(self) -> tuple[int | None, str]:
        """The engine's `max_seq_len` and where it comes from (None: not known)."""
        given = self._engine_arg("max_seq_len")
        if isinstance(given, int):
            return given, "settings.tensorrt.max_seq_len"
        try:  # unset: the engine takes the model's limit
            limit = getattr(self.model_config(), "max_position_embeddings", None)
        except Exception:  # unreadable config: the limit stays unknown
            limit = None
        if isinstance(limit, int):
            return limit, "the model's max_position_embeddings"
        return None, "not set and not in the model's config"

    def prepare_prompts(self) -> list[PreparedPrompt]:
        """The same token ids the transformers backend would generate from.

        Raises:
            BackendError: A prompt the engine would refuse: over `max_num_tokens` without
                chunked prefill, or leaving no room for output under `max_seq_len`.
        """
        prompts = prepare_prompts(self.tokenizer, self.config)
        longest = max((len(p.token_ids) for p in prompts), default=0)
        chunked = bool(self._engine_arg("enable_chunked_prefill"))
        budget = self._engine_arg("max_num_tokens")
        if not chunked and isinstance(budget, int) and longest > budget:
            raise BackendError(
                f"a prompt of {longest} tokens exceeds the engine's max_num_tokens ({budget}) "
                "and chunked prefill is off: TensorRT-LLM refuses it; raise "
                "settings.tensorrt.max_num_tokens or set enable_chunked_prefill"
            )
        if self.max_seq_len is not None and longest >= self.max_seq_len:
            raise BackendError(
                f"a prompt of {longest} tokens leaves no output under max_seq_len "
                f"({self.max_seq_len}, {self.max_seq_len_source}): raise "
                "settings.tensorrt.max_seq_len or lower max_input_tokens"
            )
        return prompts

    def sampling_params(self) -> Any:
        """TensorRT-LLM sampling parameters of one request (perf metrics on)."""
        from tensorrt_llm import SamplingParams

        s, engine = self.settings, self.engine_settings
        # ignore_eos disables end_id only: stop_token_ids would still end a request
        stop_ids = [] if engine.ignore_eos else self.stop_token_ids()
        common: dict[str, Any] = {
            "max_tokens": s.max_new_tokens,
            "end_id": self.end_id,
            "stop_token_ids": stop_ids or None,
            "include_stop_str_in_output": True,  # an EOS among stop_token_ids is counted
            "ignore_eos": engine.ignore_eos,
            "return_perf_metrics": True,
        }
        if s.min_new_tokens and not engine.ignore_eos:
            # Moot with ignore_eos, where some 1.2 builds would ban vocabulary id -1 instead.
            common["min_tokens"] = s.min_new_tokens
        if s.decoding == "greedy":
            return SamplingParams(top_k=1, **common)
        # `Settings.normalised` fills these for sampling; the fallbacks are its defaults
        return SamplingParams(
            temperature=1.0 if s.temperature is None else s.temperature,
            top_p=1.0 if s.top_p is None else s.top_p,
            top_k=s.top_k or None,  # 0 (no top-k) is TensorRT-LLM's None
            seed=s.seed,
            **common,
        )

    def stop_token_ids(self) -> list[int]:
        """The EOS ids other than `end_id`: TensorRT-LLM stops on them as stop tokens."""
        return sorted(self.eos_ids - {self.end_id})

    def engine_facts(self) -> dict[str, Any]:
        """What the engine did with the run's settings that the config alone does not say."""
        min_new = self.settings.min_new_tokens
        others = self.stop_token_ids()
        facts: dict[str, Any] = {
            **sampler_record(self.config),
            "kv_cache_dtype": self.kv_cache,
            "max_seq_len": self.max_seq_len,
            "max_seq_len_source": self.max_seq_len_source,
            "clamped_prompts": len(self.clamped),
            "clamped_note": (
                f"{len(self.clamped)} prompt(s) ended short of max_new_tokens "
                f"({self.settings.max_new_tokens}): TensorRT-LLM clamps the output to "
                "max_seq_len - prompt tokens"
            )
            if self.clamped
            else None,
            "engine_clock": self.clock,
            "engine_clock_is_llem_clock": self.clock_is_llem,
            "stop_token_ids": [] if self.engine_settings.ignore_eos else others,
        }
        if min_new and not self.engine_settings.ignore_eos and others:
            facts["min_tokens_note"] = (
                f"min_tokens bans end_id ({self.end_id}) only: EOS id(s) {others} can end a "
                f"request before min_new_tokens ({min_new})"
            )
        return facts

    def run(
        self,
        prompts: Sequence[PreparedPrompt],
        *,
        offline: bool = False,
        arrival_offsets: Sequence[float] | None = None,
    ) -> list[RequestTiming]:
        """Submit every prompt on its arrival schedule; collect per-token arrival times.

        Args:
            prompts: The requests.
            offline: Submit all at once whatever the run's `arrival` (warmup).
            arrival_offsets: Submission offsets in seconds (default: the run's `arrival`).
        """
        offsets = submission_offsets_s(
            self.engine_settings, len(prompts), offline=offline, given=arrival_offsets
        )
        return self.loop.run_until_complete(self._run_all(prompts, offsets))

    def reset_caches(self) -> CacheState:
        """Nothing to empty: KV block reuse is off, every prefill is computed in full."""
        return CacheState(
            prefix_caching=False,
            reset=False,
            note="TensorRT-LLM KV cache block reuse off (its own default is on): every "
            "prefill is computed in full",
        )

    async def _run_all(
        self, prompts: Sequence[PreparedPrompt], offsets: list[float]
    ) -> list[RequestTiming]:
        start_s = time.perf_counter()
        tasks = [
            self._one(index, prompt, start_s + offset)
            for index, (prompt, offset) in enumerate(zip(prompts, offsets, strict=True))
        ]
        return list(await asyncio.gather(*tasks))

    async def _one(self, index: int, prompt: PreparedPrompt, submit_at_s: float) -> RequestTiming:
        delay_s = submit_at_s - time.perf_counter()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        # Due at its scheduled time: TTFT and latency count from then (coordinated omission).
        params = self.sampling_params()
        times: list[float] = []
        chunks: list[int] = []
        ids: list[int] = []
        finish_reason: str | None = None
        stop_reason: Any = None
        metrics: Any = None
        last_update_s = submit_s = time.perf_counter()
        stream = self.engine.generate_async(
            {"prompt_token_ids": list(prompt.token_ids)}, sampling_params=params, streaming=True
        )
        async for output in stream:
            last_update_s = time.perf_counter()
            completion = output.outputs[0]
            new = list(completion.token_ids_diff)
            if new:
                times.extend([last_update_s] * len(new))
                chunks.append(len(new))
                ids.extend(new)
            finish_reason = completion.finish_reason or finish_reason
            stop_reason = completion.stop_reason
            metrics = getattr(completion, "request_perf_metrics", None) or metrics
        if finish_reason == "stop" and stop_reason is None and not self.engine_settings.ignore_eos:
            self._count_unreturned_end_id(ids, times, chunks, last_update_s)
            self._check_min_tokens(len(ids), len(prompt.token_ids))
        if finish_reason == "length" and len(ids) < self.settings.max_new_tokens:
            self.clamped.add(index)  # the engine's max_seq_len clamp: only a log line says so
        if not self.engine_settings.ignore_eos:
            _cut_after_first_eos(ids, times, chunks, self.eos_ids)
        return RequestTiming(
            index=index,
            batch_index=0,
            input_tokens=len(prompt.token_ids),
            arrival_s=submit_at_s,
            submit_s=submit_s,
            token_times_s=tuple(times),
            output_ids=tuple(ids),
            stopped_by_eos=finish_reason == "stop" and bool(ids) and ids[-1] in self.eos_ids,
            chunk_sizes=tuple(chunks),
            engine_timing=engine_timing(metrics, self.clock),
        )

    def _check_min_tokens(self, generated: int, prompt_tokens: int) -> None:
        """An end on `end_id` before `min_new_tokens`: this build counts the prompt toward it.

        Raises:
            BackendError: Rather than record outputs shorter than the setting asks.
        """
        min_new = self.settings.min_new_tokens
        if min_new and generated <= min_new:
            raise BackendError(
                f"tensorrt_llm {tensorrt_version()} ended a request on end_id after {generated} "
                f"token(s) with min_tokens {min_new} (prompt {prompt_tokens} tokens): this build "
                "counts the prompt toward min_tokens; use a TensorRT-LLM with that fixed"
            )

    def _count_unreturned_end_id(
        self, ids: list[int], times: list[float], chunks: list[int], last_update_s: float
    ) -> None:
        """Ended on `end_id` without returning it: the EOS was generated, so it counts."""
        if self.end_id is None or (ids and ids[-1] in self.eos_ids):
            return
        if times and times[-1] == last_update_s:
            chunks[-1] += 1  # delivered with the tokens of the final update
        else:
            chunks.append(1)
        ids.append(self.end_id)
        times.append(last_update_s)

    def close(self) -> None:
        """Shut the engine and its worker processes down."""
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None
        if self.loop.is_closed():
            return
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def model_config(self) -> Any:
        """The model's transformers config (read from its directory or the hub cache)."""
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.config.model.path)

    def reset_peak_device_memory(self) -> None:
        """Nothing to reset here: the engine's memory lives in its worker processes."""

    def device_memory_mb(self) -> tuple[float | None, float | None]:
        """Not observable from here: the engine runs in its executor's worker processes."""
        return None, None

    def versions(self) -> dict[str, str]:
        """TensorRT-LLM, torch and transformers versions."""
        found = {"tensorrt_llm": tensorrt_version()}
        for name in ("torch", "transformers"):
            try:
                found[name] = version(name)
            except PackageNotFoundError:
                continue
        return found


def _known_llm_arguments() -> set[str] | None:
    """Field names of `TorchLlmArgs` (what `LLM(...)` accepts); None where not exposed."""
    try:
        from tensorrt_llm.llmapi import TorchLlmArgs
    except ImportError:
        return None
    return set(TorchLlmArgs.model_fields)


def _build_llm(kwargs: dict[str, Any]) -> Any:
    from tensorrt_llm import LLM
    from tensorrt_llm.llmapi import CapacitySchedulerPolicy, KvCacheConfig, SchedulerConfig

    kwargs = dict(kwargs)
    kwargs["kv_cache_config"] = KvCacheConfig(**kwargs["kv_cache_config"])
    scheduler = kwargs.get("scheduler_config")
    if isinstance(scheduler, dict):
        policy = CapacitySchedulerPolicy(scheduler["capacity_scheduler_policy"])
        kwargs["scheduler_config"] = SchedulerConfig(capacity_scheduler_policy=policy)
    return LLM(**kwargs)


def _cut_after_first_eos(
    ids: list[int], times: list[float], chunks: list[int], eos_ids: set[int]
) -> None:
    """Drop everything after the first EOS (in place), chunks included."""
    first = next((i for i, token in enumerate(ids) if token in eos_ids), None)
    if first is None or first == len(ids) - 1:
        return
    keep = first + 1
    del ids[keep:], times[keep:]
    total, kept = 0, []
    for size in chunks:
        kept.append(min(size, keep - total))
        total += size
        if total >= keep:
            break
    chunks[:] = kept
