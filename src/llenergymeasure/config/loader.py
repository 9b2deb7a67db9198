"""Load a campaign file, expand its grid, and resolve each run with its content-hash id."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llenergymeasure import __version__
from llenergymeasure.config.models import (
    Campaign,
    ContainerSpec,
    ExperimentConfig,
    ModelRef,
    ResolvedPrompts,
    Settings,
)
from llenergymeasure.embedded import EMBEDDED_MODELS, prepared_path
from llenergymeasure.errors import ConfigError

RUN_ID_PATTERN = r"[a-z0-9][a-z0-9.-]*_[a-z0-9]+_[0-9a-f]{12}"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Plan:
    """A validated campaign and its runs, keyed by run id (in grid order)."""

    campaign: Campaign
    source: str
    runs: dict[str, ExperimentConfig]


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with ``safe_load``; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), "", f"cannot read: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(str(path), "", f"not valid YAML{where}") from e
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "must be a YAML mapping of campaign keys")
    return data


def load_campaign(path: str | Path) -> Plan:
    """Load, validate and expand a campaign file."""
    path = Path(path)
    return plan_campaign(read_yaml(path), source=str(path))


def plan_campaign(data: dict[str, Any], source: str) -> Plan:
    """Validate campaign data and expand it into resolved runs.

    Args:
        data: The campaign mapping (as loaded from YAML).
        source: Where it came from, for error messages.

    Raises:
        ConfigError: Naming the source, the key path and the reason.
    """
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as e:
        raise _config_error(source, e) from None
    prompts = _resolve_prompts(campaign, source)
    models = {
        name: _resolve_model(name, source, f"models.{i}") for i, name in enumerate(campaign.models)
    }
    runs: dict[str, ExperimentConfig] = {}
    for model_name, backend, settings in _points(campaign, source, models):
        _check_prompt_count(settings, prompts, source)
        for repeat in range(campaign.repeats):
            run = ExperimentConfig(
                campaign=campaign.name,
                model=models[model_name],
                backend=backend,
                settings=settings,
                prompts=prompts,
                measurement=campaign.measurement,
                repeat=repeat,
                container=container_spec(campaign, backend),
                python_env=python_env(campaign, backend, source),
                validity=campaign.analysis.validity,
            )
            problem = unsupported(run)
            if problem:
                raise ConfigError(source, *problem)
            runs.setdefault(run_id(run), run)
    return Plan(campaign=campaign, source=source, runs=runs)


def _engine_problem(run: ExperimentConfig) -> tuple[str, str] | None:
    """A parallelism or device the run's engine cannot use (key, reason); or None."""
    if run.settings.processes > 1 and run.backend != "transformers":
        return "settings.processes", (
            f"processes > 1 is data parallelism for transformers; {run.backend} parallelises "
            f"inside its engine ({run.backend}.tensor_parallel_size)"
        )
    device = run.measurement.device
    if run.backend == "tensorrt" and device != "cuda":
        return "measurement.device", (
            f"backend tensorrt needs measurement.device cuda, not {device!r}: "
            "TensorRT-LLM runs on NVIDIA GPUs only"
        )
    return None


def unsupported(run: ExperimentConfig) -> tuple[str, str] | None:
    """Which key makes this combination unrunnable on its backend/device, and why; or None."""
    problem = _engine_problem(run)
    if problem:
        return problem
    measurement = run.measurement
    if (
        run.settings.gpu is not None
        and measurement.device != "cuda"
        and measurement.meter != "nvml"
    ):
        return "settings.gpu", (
            "a GPU power limit or locked clocks needs measurement.device cuda (or meter nvml)"
        )
    quantization = run.settings.quantization
    if quantization == "none":
        return None
    if run.backend != "transformers":
        return "settings.quantization", (
            f"{quantization!r} is a transformers quantisation; for {run.backend} use "
            f"settings.{run.backend}.quantization"
        )
    if quantization.startswith("bnb-") and run.measurement.device != "cuda":
        return "settings.quantization", (
            f"{quantization!r} needs bitsandbytes on a CUDA device (measurement.device: cuda)"
        )
    return None


def _points(
    campaign: Campaign, source: str, models: dict[str, ModelRef]
) -> list[tuple[str, str, Settings]]:
    base = campaign.settings.model_dump()
    axes = {k: v for k, v in campaign.grid.model_dump().items() if v is not None}
    overrides = [
        dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())
    ]
    points: list[tuple[str, str, dict[str, Any], str]] = [
        (m, b, o, "grid") for m in campaign.models for b in campaign.backends for o in overrides
    ]
    for i, exp in enumerate(campaign.experiments):
        fields = exp.model_dump(exclude_none=True)
        model = fields.pop("model", None)
        backend = fields.pop("backend", None)
        if model is not None and model not in models:
            models[model] = _resolve_model(model, source, f"experiments.{i}.model")
        for m in [model] if model else campaign.models:
            for b in [backend] if backend else campaign.backends:
                points.append((m, b, fields, f"experiments.{i}"))
    resolved = []
    for model, backend, override, where in points:
        try:
            settings = Settings.model_validate({**base, **override}).normalised(backend)
        except ValidationError as e:
            raise _config_error(source, e, prefix=where) from None
        except ValueError as e:
            field = {"vllm": "max_num_seqs", "tensorrt": "max_batch_size"}.get(backend, "")
            key = f"settings.{backend}.{field}" if where == "grid" else f"{where}.{backend}"
            raise ConfigError(source, key, str(e)) from None
        resolved.append((model, backend, settings))
    return resolved


def _resolve_model(name: str, source: str, key: str) -> ModelRef:
    if name in EMBEDDED_MODELS:
        return ModelRef(name=name, source="embedded", path=str(prepared_path(name)))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(source, key, f"{name!r} is a path but holds no config.json")
        return ModelRef(name=name, source="local", path=name)
    if HUB_ID.match(name) and not name.startswith((".", "/", "~")):
        return ModelRef(name=name, source="hub", path=name)
    known = ", ".join(EMBEDDED_MODELS)
    raise ConfigError(
        source, key, f"model path {name!r} does not exist (nor is it {known} or an org/name hub id)"
    )


def _resolve_prompts(campaign: Campaign, source: str) -> ResolvedPrompts:
    cfg = campaign.prompts
    if cfg.source == "synthetic":
        return ResolvedPrompts(source="synthetic", input_tokens=cfg.input_tokens)
    if cfg.source == "builtin":
        data = resources.files("llenergymeasure.data").joinpath("prompts.jsonl").read_bytes()
        return ResolvedPrompts(source="builtin", sha256=hashlib.sha256(data).hexdigest())
    assert cfg.path is not None  # guaranteed by PromptsConfig
    path = Path(cfg.path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(source, "prompts.path", f"cannot read {cfg.path!r}: {e.strerror}") from e
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(source, "prompts.path", f"{cfg.path}:{n} is not valid JSON") from None
        if not isinstance(record, dict) or not isinstance(record.get(cfg.field), str):
            raise ConfigError(
                source, "prompts.field", f"{cfg.path}:{n} has no string key {cfg.field!r}"
            )
    return ResolvedPrompts(
        source="jsonl", path=cfg.path, field=cfg.field, sha256=hashlib.sha256(data).hexdigest()
    )


def _check_prompt_count(settings: Settings, prompts: ResolvedPrompts, source: str) -> None:
    if prompts.source == "synthetic":
        return
    from llenergymeasure.config.prompts import count_prompts

    available = count_prompts(prompts)
    if settings.num_prompts > available:
        raise ConfigError(
            source,
            "settings.num_prompts",
            f"{settings.num_prompts} prompts asked for, the {prompts.source} set has {available}",
        )


# Where a run executes, under which campaign name and validity rules: recorded in results,
# not in its id.
NOT_IDENTITY_KEYS = frozenset({"campaign", "container", "python_env", "validity"})
# Settings added after results existed: left out of the id while null, so runs that do not
# use them keep the ids they had (and their results stay valid).
LATER_SETTINGS = frozenset({"tensorrt"})
# Measurement keys that bound how a run is supervised, not what it measures: not in its id.
OPERATIONAL_KEYS = frozenset({"rank_grace_s", "max_run_s", "foreign_processes"})


def config_hash(run: ExperimentConfig) -> str:
    """SHA-256 of the run's canonical identity.

    The hash covers everything that changes what is measured (settings, prompts with their
    content hash, measurement settings, model name and source, repeat index), and nothing
    that does not (the campaign's name, where a prepared model lies on disk).
    """
    return hash_config_data(run.model_dump(mode="json"))


def hash_config_data(config: dict[str, Any]) -> str:
    """`config_hash` of a resolved configuration as plain JSON data (e.g. from result.json)."""
    identity = {k: v for k, v in config.items() if k not in NOT_IDENTITY_KEYS}
    identity["model"] = {k: v for k, v in config["model"].items() if k != "path"}
    identity["settings"] = {
        k: v for k, v in config["settings"].items() if not (k in LATER_SETTINGS and v is None)
    }
    identity["measurement"] = {
        k: v for k, v in config["measurement"].items() if k not in OPERATIONAL_KEYS
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_image(backend: str, device: str, runtime: str) -> str:
    """The image `llem image-build` tags for a backend: `llenergymeasure-<backend>:<version>`.

    CPU runs use the `-cpu` variant; apptainer takes the .sif converted from it (images/).
    """
    tag = f"{__version__}-cpu" if device == "cpu" else __version__
    if runtime == "apptainer":
        return f"images/llenergymeasure-{backend}_{tag}.sif"
    return f"llenergymeasure-{backend}:{tag}"


def container_spec(campaign: Campaign, backend: str) -> ContainerSpec | None:
    """The container a campaign's runs of `backend` execute in (None: on the host)."""
    containers = campaign.containers
    if containers.runtime == "none":
        return None
    image = containers.images.get(backend) or default_image(  # type: ignore[call-overload]
        backend, campaign.measurement.device, containers.runtime
    )
    return ContainerSpec(
        runtime=containers.runtime, image=image, run_args=tuple(containers.run_args)
    )


def python_env(campaign: Campaign, backend: str, source: str) -> str | None:
    """The absolute path of the Python environment that measures `backend`'s runs, or None.

    Raises:
        ConfigError: The environment has no `bin/llem`.
    """
    given = campaign.python_envs.get(backend)  # type: ignore[call-overload]
    if given is None:
        return None
    path = Path(given).expanduser().absolute()
    if not (path / "bin" / "llem").is_file():
        raise ConfigError(
            source,
            f"python_envs.{backend}",
            f"{given!r} has no bin/llem: build that environment first (make setup builds "
            ".venv-vllm) or remove the key to use the workflow's own llem",
        )
    return str(path)


def llem_command(run: ExperimentConfig) -> str:
    """The `llem` that measures a run: its Python environment's, else the workflow's own."""
    return f"{run.python_env}/bin/llem" if run.python_env else "llem"


def container_lines(plan: Plan) -> list[str]:
    """What `snakemake -n` says of containers: each backend's image and its number of runs."""
    counts: dict[tuple[str, str, str], int] = {}
    for run in plan.runs.values():
        if run.container is not None:
            key = (run.container.runtime, run.backend, run.container.image)
            counts[key] = counts.get(key, 0) + 1
    return [
        f"container ({runtime}): {backend} runs ({n}) in {image}"
        for (runtime, backend, image), n in counts.items()
    ]


# The figures every campaign gets (results/figures.py draws them).
FIGURES = (
    "energy_vs_batch",
    "throughput_vs_energy",
    "latency_distributions",
    "power_timeline",
    "phase_energy",
    "phase_timeline",
    "energy_vs_latency",
)


def figure_names(plan: Plan) -> tuple[str, ...]:
    """The figures a campaign gets: seven always, and the power-limit one where it sets one.

    `energy_vs_power_limit` is drawn for campaigns that set `settings.gpu.power_limit_w`.
    `energy_vs_latency` draws `analysis.slo`'s targets where the campaign sets them.
    """
    capped = any(run.settings.gpu and run.settings.gpu.power_limit_w for run in plan.runs.values())
    return (*FIGURES, "energy_vs_power_limit") if capped else FIGURES


def gpus_needed(run: ExperimentConfig) -> int:
    """GPUs a run occupies on CUDA (0 on CPU).

    transformers: processes; vllm: tensor-parallel size; tensorrt: tensor x pipeline
    parallel size.
    """
    if run.measurement.device != "cuda":
        return 0
    settings = run.settings
    if settings.tensorrt is not None:
        return settings.tensorrt.tensor_parallel_size * settings.tensorrt.pipeline_parallel_size
    tensor_parallel = settings.vllm.tensor_parallel_size if settings.vllm else 1
    return settings.processes * tensor_parallel


def configuration_id(run: ExperimentConfig) -> str:
    """Hash shared by the repeats of one configuration (the run's identity minus its repeat)."""
    return hash_config_data({**run.model_dump(mode="json"), "repeat": 0})[:12]


def run_id(run: ExperimentConfig) -> str:
    """Return ``<model-slug>_<backend>_<first 12 hex of config_hash>``.

    The slug is the hub id or, for a local model, its directory name, made path-safe.
    """
    return f"{model_slug(run.model)}_{run.backend}_{config_hash(run)[:12]}"


def model_slug(model: ModelRef) -> str:
    """Path-safe short name of a model: the hub id or a local model's directory name."""
    name = Path(model.name).name if model.source == "local" else model.name
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-.")[:40] or "model"


def _config_error(source: str, error: ValidationError, prefix: str = "") -> ConfigError:
    first = error.errors()[0]
    parts = [str(p) for p in first["loc"] if not (isinstance(p, str) and "[" in p)]
    key = ".".join([prefix, *parts] if prefix else parts)
    if first["type"] == "extra_forbidden":
        reason = "unknown key (see config/README.md for the valid keys)"
    elif first["type"] == "string_pattern_mismatch":
        reason = f"{first['input']!r} must match {first['ctx']['pattern']} (it becomes a path)"
    elif first["type"] == "literal_error":
        reason = f"{first['input']!r} is not allowed; expected {first['ctx']['expected']}"
    else:
        reason = first["msg"].removeprefix("Value error, ")
    more = error.error_count() - 1
    if more:
        reason += f" (and {more} more error{'s' if more > 1 else ''})"
    return ConfigError(source, key, reason)
