# Validates the campaign through the package and exposes RUNS; the only Python of the workflow.
import sys

from llenergymeasure.config import RUN_ID_PATTERN, load_campaign, model_slug
from llenergymeasure.config.loader import gpus_needed
from llenergymeasure.config.order import run_priorities
from llenergymeasure.embedded import EMBEDDED_MODELS, prepared_path
from llenergymeasure.errors import ConfigError

CAMPAIGN_FILE = workflow.configfiles[-1] if workflow.configfiles else "config/config.yaml"

try:
    PLAN = load_campaign(CAMPAIGN_FILE)
except ConfigError as error:
    sys.exit(f"error: {error}")

RUNS = PLAN.runs
OUT = f"results/{PLAN.campaign.name}"
PRIORITY = run_priorities(PLAN)
FIGURES = ("energy_vs_batch", "throughput_vs_energy", "latency_distributions", "power_timeline")
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


def model_inputs(wildcards):
    """The prepared embedded model a run needs (nothing for hub ids or local paths)."""
    model = RUNS[wildcards.run_id].model
    return [f"{model.path}/config.json"] if model.source == "embedded" else []


def model_by_slug(wildcards):
    """The prepared embedded model a flops profile needs."""
    model = MODELS[wildcards.model_slug]
    return [f"{model.path}/config.json"] if model.source == "embedded" else []


def flops_profile(wildcards):
    """The calflops profile of a run's model."""
    return f"{OUT}/flops/{model_slug(RUNS[wildcards.run_id].model)}.json"
