# Validates the campaign through the package and exposes RUNS; the only Python of the workflow.
import sys

from llenergymeasure.config import RUN_ID_PATTERN, load_campaign, model_slug
from llenergymeasure.config.loader import (
    container_lines,
    figure_names,
    gpus_needed,
    llem_command,
)
from llenergymeasure.config.order import run_priorities
from llenergymeasure.embedded import EMBEDDED_MODELS, prepared_path
from llenergymeasure.errors import ConfigError

CAMPAIGN_FILE = workflow.configfiles[-1] if workflow.configfiles else "config/config.yaml"

try:
    PLAN = load_campaign(CAMPAIGN_FILE)
except ConfigError as error:
    sys.exit(f"error: {error}")

RUNS = PLAN.runs
for line in container_lines(PLAN):
    print(line, file=sys.stderr)
OUT = f"results/{PLAN.campaign.name}"
PRIORITY = run_priorities(PLAN)
FIGURES = figure_names(PLAN)
ENVS = {
    "transformers": "../../envs/transformers.yaml",
    "vllm": "../../envs/vllm.yaml",
    "tensorrt": "../../envs/tensorrt.yaml",
}


wildcard_constraints:
    run_id=RUN_ID_PATTERN,
    alias="|".join(EMBEDDED_MODELS),


MODELS = {model_slug(run.model): run.model for run in RUNS.values()}


wildcard_constraints:
    model_slug="|".join(MODELS),


def per_run(value_of):
    """A run's value of something: one static value when every run shares it (Snakemake
    handles a static value far faster than a per-job function: 10,000-run campaigns), else
    a function of the run id."""
    values = {repr(value_of(run)): value_of(run) for run in RUNS.values()}
    if len(values) == 1:
        return next(iter(values.values()))
    return lambda wildcards: value_of(RUNS[wildcards.run_id])


# A run's model's calflops profile (which needs the prepared embedded model, so a run comes
# after its model's preparation without a second per-run input edge), its GPUs, its software
# environment.
FLOPS_INPUT = per_run(lambda run: f"{OUT}/flops/{model_slug(run.model)}.json")
GPUS = per_run(gpus_needed)
CONDA_ENV = per_run(lambda run: ENVS[run.backend])
# The `llem` that measures a run: its backend's Python environment (python_envs), else ours.
LLEM = per_run(llem_command)
# Apptainer runs: Snakemake's own container directive (--software-deployment-method
# apptainer); podman/docker runs are started by `llem run` itself (run.container).
APPTAINER_IMAGE = per_run(
    lambda run: run.container.image
    if run.container is not None and run.container.runtime == "apptainer"
    else None
)


def model_by_slug(wildcards):
    """The prepared embedded model a flops profile needs."""
    model = MODELS[wildcards.model_slug]
    return [f"{model.path}/config.json"] if model.source == "embedded" else []

