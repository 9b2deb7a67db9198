"""The schema-versioned result of one run (result.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llenergymeasure.config.models import ExperimentConfig
from llenergymeasure.config.validity import ReasonCode, ValidityRules
from llenergymeasure.results.budget import UncertaintyPart
from llenergymeasure.results.phase_models import EngineView, PhaseSplit, SteadyState

SCHEMA_VERSION = "1.10.0"


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


class EngineRequestTiming(ResultModel):
    """The engine's own timestamps of one request, kept on the engine's clock (seconds).

    Reported by the engine (TensorRT-LLM's per-request perf metrics), on its steady clock:
    CLOCK_MONOTONIC on Linux, the clock of llem's own timestamps (`clock` says which). The
    differences below are taken on this one clock.
    """

    clock: str = Field(..., description="The engine clock the times are on.")
    arrival_s: float | None = Field(..., description="The request reached the engine.")
    first_scheduled_s: float | None = Field(..., description="First scheduled by the engine.")
    first_token_s: float | None = Field(..., description="First token produced.")
    last_token_s: float | None = Field(..., description="Last token produced.")
    queue_s: float | None = Field(
        None, description="first_scheduled_s - arrival_s: the wait inside the engine."
    )
    ttft_s: float | None = Field(
        None, description="first_token_s - arrival_s: the engine's own time to first token."
    )


class RequestResult(ResultModel):
    """One prompt's generation, timed per output token."""

    index: int
    batch_index: int
    pass_index: int = Field(0, description="Pass over the prompt set (see `min_window_s`).")
    input_tokens: int = Field(..., description="Prompt tokens, padding excluded.")
    output_tokens: int = Field(..., description="Generated tokens up to and including EOS.")
    stopped_by_eos: bool
    queue_s: float = Field(
        ...,
        description="Arrival (due time) to hand-over to the engine: transformers waits for "
        "earlier static batches; vLLM with scheduled arrivals, the client's lateness (vLLM "
        "queues inside the engine, and that wait is in service TTFT).",
    )
    ttft_s: float | None = Field(
        ..., description="Arrival (due time) to first token, queueing included."
    )
    service_ttft_s: float | None = Field(None, description="Hand-over to first token.")
    latency_s: float | None = Field(..., description="Arrival (due time) to last token.")
    itl_s: list[float] = Field(
        ...,
        description="Observed intervals between consecutive token arrivals (intervals inside "
        "a multi-token chunk are not observable and are left out).",
    )
    itl_excluded: int = Field(
        0, description="Intervals inside multi-token chunks, left out of `itl_s`."
    )
    cached_prompt_tokens: int | None = Field(
        None, description="Prompt tokens served from the engine's prefix cache (None: unknown)."
    )
    null_reason: str | None = Field(
        None, description="Why TTFT/latency are null (a request that yielded no token)."
    )
    engine_timing: EngineRequestTiming | None = Field(
        None,
        description="The engine's own per-request timestamps, on its clock (tensorrt); "
        "never mixed with the timestamps above.",
    )
    energy_j: float | None = Field(
        None,
        description="This request's share of the window energy (phases.request_energy_method);"
        " the requests' shares sum to the window energy.",
    )
    energy_null_reason: str | None = Field(None, description="Why energy_j is null.")
    energy_uncertainty_j: float | None = Field(
        None, description="Its share of the window's sensor budget (allocated like energy_j)."
    )


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

    ttft_s: Stats | None = Field(..., description="Arrival (due time) to first token.")
    service_ttft_s: Stats | None = Field(None, description="Hand-over to first token.")
    queue_s: Stats | None = Field(None, description="Arrival to hand-over.")
    itl_s: Stats | None = Field(..., description="All observed inter-token intervals, pooled.")
    itl_trimmed_s: Stats | None = Field(
        ..., description="Inter-token intervals without each request's first and last."
    )
    request_latency_s: Stats | None
    itl_excluded_intervals: int = Field(
        0, description="Intervals inside multi-token chunks, excluded from the ITL statistics."
    )
    zero_token_requests: int = Field(
        0, description="Requests that yielded no token (left out of TTFT and latency)."
    )
    notes: list[str] = []


class DeviceEnergy(ResultModel):
    """Energy of one device over the window, and how it was obtained."""

    device: str = Field(
        ..., description="A GPU's UUID (GPU-...), rapl:package-<n>, rapl:dram-<n>."
    )
    name: str
    cuda_index: int | None = Field(
        None, description="A GPU's index among the run's CUDA devices; null when not known."
    )
    identified_by: str | None = Field(None, description="How a GPU was matched to its UUID.")
    energy_j: float | None
    null_reason: str | None = None
    method: str = Field(..., description="nvml_counter | nvml_power_polling | rapl")
    confidence: Literal["measured", "estimated"] | None
    polled_energy_j: float | None = Field(
        None, description="Trapezoid over polled power, when the counter is the primary."
    )
    counter_polling_diff_pct: float | None = Field(
        None, description="(polled - counter) / counter, in percent."
    )
    power_field: str | None = Field(
        None, description="The power reading polled, e.g. nvml_power_instant; null if none."
    )
    idle_power_w: float | None = None
    adjusted_energy_j: float | None = Field(
        None, description="energy_j - idle_power_w x window; null when idle exceeds it."
    )
    adjusted_null_reason: str | None = None
    samples: int = 0
    power_std_w: float | None = Field(
        None, description="Standard deviation of its power in the window (polled, else steps)."
    )
    energy_uncertainty_j: float | None = Field(
        None, description="Sensor budget of energy_j: the sum of its parts' bounds."
    )
    adjusted_energy_uncertainty_j: float | None = Field(
        None, description="Budget of adjusted_energy_j: energy's plus the idle spread's."
    )
    uncertainty_parts: list[UncertaintyPart] = []
    uncertainty_null_reason: str | None = None
    max_power_w: float | None = Field(None, description="Largest polled power in the window.")
    power_limit_w: float | None = Field(
        None, description="The device's enforced power limit during the window (largest read)."
    )
    max_temperature_c: float | None = None
    throttle_s: float | None = Field(None, description="Time this device spent throttled.")
    throttle_reasons: list[str] = Field([], description="Reasons seen in the window (ORed).")
    window_start_unix_s: float | None = None
    window_end_unix_s: float | None = None
    counter_begin_j: float | None = Field(None, description="Counter value at window start.")
    counter_end_j: float | None = Field(None, description="Counter value at window end.")
    notes: list[str] = []


class Baseline(ResultModel):
    """Idle power measured before the window, with nothing running."""

    idle_power_w: float | None
    null_reason: str | None = None
    per_device_w: dict[str, float] = {}
    per_device_std_w: dict[str, float] = Field(
        {}, description="Each device's idle power standard deviation over the baseline."
    )
    method: str
    duration_s: float
    measured_at: str | None = None
    start_unix_s: float | None = Field(None, description="When the idle measurement began.")
    end_unix_s: float | None = Field(None, description="When it ended.")
    age_s: float | None = Field(None, description="Age when this run used it (cache).")
    cached: bool = False
    cooldown_s: float | None = Field(
        None, description="Results before schema 1.5 only: the cooldown is now timing.cooldown."
    )


class MeterChoice(ResultModel):
    """Which energy source was used and why the ones before it were not."""

    requested: str
    chosen: str
    refused: dict[str, str] = {}


class CounterUpdatePeriod(ResultModel):
    """How often one device's energy counter updates, measured when the session started."""

    device: str
    period_s: float | None = Field(
        ..., description="Median spacing of the counter's changes; null with the reason."
    )
    null_reason: str | None = None
    method: str = Field(..., description="How it was measured.")
    reads: int = Field(..., description="Reads of the counter during the probe.")
    updates: int = Field(..., description="Reads at which its value had changed.")
    probe_s: float = Field(..., description="How long the probe read.")
    read_s: float | None = Field(
        None, description="Mean duration of one read: the precision of each change time."
    )
    min_spacing_s: float | None = None
    max_spacing_s: float | None = None
    continuous: bool = Field(
        False, description="It changed at most reads: period_s is an upper bound."
    )
    used_s: float = Field(..., description="The period the phase split used.")
    used: Literal["measured", "nominal"] = Field(
        ..., description="measured: period_s; nominal: the source's documented period."
    )


class Energy(ResultModel):
    """Energy of the measurement window and how it was obtained."""

    energy_j: float | None = Field(..., description="Device energy of the window; null if unknown.")
    null_reason: str | None = None
    method: str = Field(..., description="nvml | rapl | codecarbon | none")
    confidence: Literal["measured", "estimated"] | None
    interval_s: float | None = Field(..., description="Sampling interval of the source.")
    devices: list[str] = Field(..., description="What the energy covers.")
    per_device: list[DeviceEnergy] = []
    components_j: dict[str, float] = {}
    meter_duration_s: float | None = Field(None, description="Span the meter itself covered.")
    adjusted_energy_j: float | None = Field(
        None,
        description="energy_j minus idle power x window, per device; null (with "
        "`adjusted_null_reason`) when the idle energy exceeds the measured one.",
    )
    adjusted_null_reason: str | None = None
    baseline: Baseline | None = None
    pue: float = Field(1.0, description="Power usage effectiveness applied to facility energy.")
    facility_energy_j: float | None = Field(None, description="energy_j x pue.")
    carbon_intensity_g_per_kwh: float | None = None
    carbon_intensity_source: str | None = None
    emissions_kg: float | None = Field(None, description="kg CO2eq of the facility energy.")
    meter_choice: MeterChoice | None = None
    counter_update_period_s: float | None = Field(
        None,
        description="The slowest measured energy-counter update period of the devices; "
        "null where none was measured (see counter_update_periods).",
    )
    counter_update_periods: list[CounterUpdatePeriod] = []
    energy_uncertainty_j: float | None = Field(
        None, description="Sensor budget of energy_j (uncertainty_method); null with a reason."
    )
    adjusted_energy_uncertainty_j: float | None = Field(
        None, description="Sensor budget of adjusted_energy_j."
    )
    facility_energy_uncertainty_j: float | None = Field(
        None, description="energy_uncertainty_j x pue."
    )
    uncertainty_parts: list[UncertaintyPart] = Field(
        [], description="The budget's parts, summed over devices by name."
    )
    uncertainty_method: str | None = None
    uncertainty_null_reason: str | None = None
    notes: list[str] = []


class Timeseries(ResultModel):
    """The power timeline written beside the result."""

    path: str | None
    samples: int
    interval_s: float | None
    null_reason: str | None = None
    engine_samples: int = Field(0, description="The engine's scheduler steps in the file.")


class PrecisionMetadata(ResultModel):
    """Precision of weights, activations and compute, and the factor for effective FLOPs."""

    weights: str
    activations: str
    compute: str
    quantization_method: str
    weight_bits: int | None
    precision_factor: float = Field(
        ...,
        description="Relative cost of one FLOP at the compute precision, by convention: "
        "fp32/tf32/fp16/bf16 1.0, fp8/int8 0.5, int4 0.25, mixed 0.75. Not measured.",
    )
    precision_factor_basis: Literal["convention"] = Field(
        "convention",
        description="How the factor was set: a convention (datasheet peak-throughput ratios "
        "and llem's choices), never a cost measured on the run's device.",
    )
    precision_factor_source: str | None = Field(
        None,
        description="Where the factor's value comes from (the datasheet and figures, or that "
        "it is llem's own choice); null only in results written before it was recorded.",
    )
    notes: list[str] = []


class FlopsResult(ResultModel):
    """A FLOP count of the run's useful work and how it was obtained."""

    value: float | None
    # "calflops" is how results before the rename named architecture_scaled_by_calflops_ratio
    # (the same figure); it is read back, never written.
    method: Literal[
        "architecture", "architecture_scaled_by_calflops_ratio", "parameter_estimate", "calflops"
    ]
    confidence: Literal["high", "medium", "low"] | None
    precision: str
    null_reason: str | None = None
    notes: list[str] = []


class Flops(ResultModel):
    """The best FLOP count as primary, every other method alongside."""

    primary: FlopsResult
    alternatives: list[FlopsResult] = []


class NormalisedMetrics(ResultModel):
    """Efficiency per token, per joule and per effective FLOP (null where an input is)."""

    tokens_per_joule: float | None = Field(None, description="Output tokens per joule.")
    tokens_per_joule_adjusted: float | None = Field(
        None, description="Output tokens per joule above idle."
    )
    tokens_per_second_per_watt: float | None = Field(
        None, description="Throughput / mean power over the window (equals tokens per joule)."
    )
    flops_per_output_token: float | None = None
    theoretical_flops: float | None = None
    effective_flops: float | None = Field(
        None,
        description="theoretical_flops x precision_factor: convention-scaled, not measured "
        "(see precision.precision_factor_source).",
    )
    effective_flops_basis: str | None = Field(
        None, description="How effective_flops was scaled, in words; null when it is null."
    )
    tokens_per_effective_pflop: float | None = None
    low_confidence: bool = Field(
        ..., description="True when any input is estimated or of low confidence."
    )
    low_confidence_reasons: list[str] = []


class Memory(ResultModel):
    """Memory of the run: after the model load, and the peak within the window."""

    peak_rss_mb: float = Field(
        ..., description="Process peak RSS over its life (getrusage), model load included."
    )
    rss_scope: str = "this process"
    load_rss_mb: float | None = Field(None, description="Process RSS right after the load.")
    window_peak_rss_mb: float | None = Field(
        None, description="Process peak RSS within the window (VmHWM reset before it)."
    )
    window_rss_null_reason: str | None = None
    load_device_allocated_mb: float | None = Field(
        None, description="Accelerator memory allocated right after the load."
    )
    peak_device_allocated_mb: float | None = Field(
        None, description="Peak accelerator memory allocated within the window (reset before)."
    )
    device_null_reason: str | None = None


class RestBounds(ResultModel):
    """When a device counts as at rest (the campaign's `cooldown_*` measurement keys)."""

    window_s: float = Field(..., description="Length of the trailing window the trends fit.")
    temperature_slope_c_per_s: float = Field(
        ..., description="Largest |slope| of the temperature's least-squares line."
    )
    power_slope_w_per_s: float = Field(
        ..., description="Largest |slope| of the power's line, while no idle level is known."
    )
    idle_tolerance_w: float = Field(
        ..., description="Mean power may exceed the known idle by max(this, idle_tolerance_pct)."
    )
    idle_tolerance_pct: float


class CooldownDevice(ResultModel):
    """One device's state over the last window of the cooldown, and whether it was at rest."""

    device: str
    settled: bool
    unsettled_reason: str | None = Field(None, description="Why not at rest (null: settled).")
    temperature_slope_c_per_s: float | None = Field(
        None, description="Slope of the least-squares line through the window's temperatures."
    )
    temperature_null_reason: str | None = None
    power_w: float | None = Field(None, description="Mean power over the window.")
    power_slope_w_per_s: float | None = Field(
        None, description="Slope of the least-squares line through the window's power."
    )
    power_null_reason: str | None = None
    idle_target_w: float | None = Field(
        None, description="This device's cached idle power (same host, meter and settings)."
    )
    idle_target_null_reason: str | None = None


class Cooldown(ResultModel):
    """The wait for the devices to come to rest before this run measured anything."""

    cooldown_s: float | None = Field(..., description="Seconds waited; null without telemetry.")
    settled: bool | None = Field(
        ..., description="Whether every device came to rest (false: stopped at max_s)."
    )
    max_s: float
    null_reason: str | None = None
    bounds: RestBounds | None = Field(None, description="The rest criteria applied.")
    devices: list[CooldownDevice] = Field(
        [], description="Each device at the end of the wait (its last window)."
    )


class Warmup(ResultModel):
    """The warmup before the window: batches until per-batch latency was stable."""

    batches: int
    duration_s: float
    converged: bool | None = Field(
        ..., description="CV under the threshold before the maximum; null when not judged."
    )
    final_cv: float | None = Field(None, description="CV over the last k batches.")
    cv_threshold: float
    cv_batches: int
    batch_s_per_token: list[float] = Field(
        [],
        description="Each warmup batch's wall time per output token (batches that yielded "
        "no token have none and are not judged).",
    )
    note: str | None = None


class CacheRecord(ResultModel):
    """Whether the window could reuse cached work, and how much it did."""

    prefix_caching: bool
    reset_before_window: bool
    window_cached_prompt_tokens: int | None = Field(
        ..., description="Prompt tokens of the window served from the prefix cache."
    )
    window_prompt_tokens: int
    note: str


class Timing(ResultModel):
    """Wall-clock frame of the run."""

    started_at: str = Field(..., description="Window start, ISO 8601 UTC.")
    ended_at: str = Field(..., description="Window end, ISO 8601 UTC.")
    window_s: float = Field(..., description="Measurement window duration.")
    window_passes: int = Field(1, description="Passes over the prompt set in the window.")
    model_load_s: float
    warmup_s: float
    warmup_batches: int
    window_start_unix_s: float
    window_end_unix_s: float
    cooldown: Cooldown | None = None
    warmup: Warmup | None = None


class GpuDeviceSettings(ResultModel):
    """One GPU's operating point: what it was, what was applied (read back), and the restore."""

    device: str
    uuid: str
    power_limit_w_before: float | None = None
    power_limit_w_applied: float | None = Field(
        None, description="Enforced limit read back after setting it."
    )
    power_limit_range_w: list[float] | None = Field(None, description="[min, max] of the device.")
    sm_clocks_mhz_locked: list[int] | None = Field(None, description="[min, max] locked.")
    memory_clocks_mhz_locked: list[int] | None = None
    sm_clock_mhz_read: float | None = Field(None, description="SM clock read after locking.")
    memory_clock_mhz_read: float | None = None
    restored: bool = Field(False, description="The previous values were put back after the run.")


class GpuSettingsRecord(ResultModel):
    """The run's requested GPU settings and what each of its GPUs ran under."""

    power_limit_w: float | None = None
    sm_clocks_mhz: list[int] | None = None
    memory_clocks_mhz: list[int] | None = None
    devices: list[GpuDeviceSettings] = []
    restored_leftovers: list[str] = Field(
        [], description="Settings a killed earlier run left behind, restored before this one."
    )


class ProcessSummary(ResultModel):
    """One rank of a multi-process run, as aggregated."""

    rank: int
    file: str
    window_start_unix_s: float
    window_end_unix_s: float
    output_tokens: int
    energy_j: float | None


FailureClass = Literal[
    "out_of_memory",
    "unsupported_config",
    "engine_error",
    "timeout",
    "killed",
    "container",
    "foreign_process",
    "internal",
]


class FailureRecord(ResultModel):
    """A run that failed: written in place of its result, so the campaign still gets tables."""

    schema_version: str = SCHEMA_VERSION
    status: Literal["failed"] = "failed"
    run_id: str
    configuration_id: str
    config_hash: str
    config: ExperimentConfig
    failure_class: FailureClass
    message: str = Field(..., description="The failure in one line.")
    phase: str = Field(
        ...,
        description="container | load | gpu_settings | cooldown | baseline | warmup | window "
        "| finish",
    )
    failed_at: str = Field(..., description="ISO 8601 UTC.")
    elapsed_s: float = Field(..., description="From the start of `llem run` to the failure.")
    timings: dict[str, float] = Field({}, description="Durations known when it failed (s).")
    environment: dict[str, Any]
    log: str | None = Field(None, description="The run's log file, where the workflow keeps it.")


class ForeignProcess(ResultModel):
    """A compute process on one of the run's GPUs that is not the run's own."""

    pid: int = Field(..., description="As NVML reports it (the host's PID namespace).")
    device: str = Field(..., description="The GPU's UUID.")
    name: str | None = Field(None, description="Its command name, where /proc shows it.")
    used_memory_mb: float | None = Field(None, description="Largest GPU memory seen in use.")
    before_window: bool = Field(..., description="Listed in the check right before the window.")
    during_window: bool = Field(..., description="Listed by a check during the window.")
    first_seen_unix_s: float
    last_seen_unix_s: float


class GpuProcessCheck(ResultModel):
    """Other processes on the run's GPUs, listed before and during the window."""

    policy: Literal["warn", "fail"] = Field(..., description="measurement.foreign_processes.")
    checked: bool = Field(..., description="Whether the meter could list the GPUs' processes.")
    null_reason: str | None = None
    method: str | None = Field(None, description="e.g. nvmlDeviceGetComputeRunningProcesses.")
    interval_s: float | None = Field(None, description="Checks during the window this often.")
    checks: int = Field(0, description="Lists taken: one before the window, then during it.")
    foreign: list[ForeignProcess] = []
    unattributed_pids: list[int] = Field(
        [],
        description="PIDs this process cannot see (a container's own PID namespace): maybe "
        "the run's own engine, maybe not.",
    )


class ValidityReason(ResultModel):
    """One rule a run broke, or could not be judged on."""

    code: ReasonCode
    message: str = Field(..., description="The rule and the run's value, in one line.")


class Validity(ResultModel):
    """Whether the run may go into a paper's table, judged under `analysis.validity`."""

    valid: bool = Field(..., description="No rule broken, waived ones apart.")
    invalid_reasons: list[ValidityReason] = Field([], description="The rules broken.")
    waived: list[ValidityReason] = Field(
        [], description="Rules broken whose codes the campaign waives (not counted)."
    )
    not_judged: list[ValidityReason] = Field(
        [], description="Rules the run's record cannot decide (e.g. no power samples)."
    )
    rules: ValidityRules = Field(..., description="The thresholds it was judged under.")


class RunResult(ResultModel):
    """Everything measured in one run."""

    schema_version: str = SCHEMA_VERSION
    status: Literal["succeeded"] = "succeeded"
    run_id: str
    configuration_id: str = Field(..., description="Shared by the repeats of a configuration.")
    config_hash: str
    config: ExperimentConfig
    timing: Timing
    tokens: TokenCounts
    throughput: Throughput
    latency: Latency
    energy: Energy
    energy_per_output_token_j: float | None
    adjusted_energy_per_output_token_j: float | None = None
    energy_per_output_token_uncertainty_j: float | None = Field(
        None, description="energy.energy_uncertainty_j / output tokens."
    )
    energy_per_output_token_null_reason: str | None = None
    timeseries: Timeseries | None = None
    precision: PrecisionMetadata | None = None
    flops: Flops | None = None
    normalised: NormalisedMetrics | None = None
    memory: Memory
    cache: CacheRecord | None = None
    gpu_settings: GpuSettingsRecord | None = None
    environment: dict[str, Any]
    warnings: list[str] = []
    phases: PhaseSplit | None = Field(
        None, description="The window split into prefill, decode and idle gaps, with energies."
    )
    steady_state: SteadyState | None = Field(
        None, description="Continuous batching under load: the batch full, before it drains."
    )
    engine_view: EngineView | None = Field(
        None, description="The engine's own view of the window (its scheduler), summarised."
    )
    phases_null_reason: str | None = Field(
        None, description="Why phases and steady_state are null (e.g. a multi-process run)."
    )
    processes: list[ProcessSummary] = Field(
        [], description="Ranks of a multi-process run (empty for one process)."
    )
    gpu_processes: GpuProcessCheck | None = Field(
        None, description="Other processes on the run's GPUs before and during the window."
    )
    validity: Validity | None = Field(
        None,
        description="The verdict at measurement time (null before schema 1.9); the tables "
        "judge again under the campaign's current rules.",
    )
    requests: list[RequestResult]
