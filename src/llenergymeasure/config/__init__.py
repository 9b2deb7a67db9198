"""Campaign configuration: pydantic models, YAML loading, grid expansion, run ids."""

from __future__ import annotations

from llenergymeasure.config.loader import (
    RUN_ID_PATTERN,
    Plan,
    load_campaign,
    model_slug,
    plan_campaign,
    run_id,
)
from llenergymeasure.config.models import Campaign, ExperimentConfig, Settings

__all__ = [
    "RUN_ID_PATTERN",
    "Campaign",
    "ExperimentConfig",
    "Plan",
    "Settings",
    "load_campaign",
    "model_slug",
    "plan_campaign",
    "run_id",
]
