"""One part of an energy figure's sensor budget, as result.json records it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class UncertaintyPart(BaseModel):
    """One part of an energy figure's sensor budget (`measure.uncertainty`).

    ``idle_baseline_spread`` counts toward the adjusted energy's budget only.
    """

    model_config = ConfigDict(extra="forbid")

    name: Literal[
        "counter_resolution",
        "sensor_accuracy",
        "polling_coverage",
        "averaging_lag",
        "idle_baseline_spread",
        "estimate_error",
        "boundary_alignment",
    ]
    bound_j: float = Field(..., description="The bound this part puts on the figure (J).")
    basis: str = Field(..., description="How the bound was computed, with its numbers.")
    source: str | None = Field(None, description="Who states the number used, if anyone.")


def parts_text(parts: list[UncertaintyPart]) -> str | None:
    """The parts as one table cell: `name=bound J; ...` (None: no budget)."""
    return "; ".join(f"{p.name}={p.bound_j:.4g} J" for p in parts) if parts else None
