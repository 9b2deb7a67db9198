"""Order of a campaign's measured runs, as Snakemake job priorities."""

from __future__ import annotations

import random

from llenergymeasure.config.loader import Plan


def run_order(plan: Plan) -> list[str]:
    """Run ids in the order the campaign asks them to be measured."""
    ids = list(plan.runs)  # grid order, repeats of a configuration consecutive
    repeats = {rid: plan.runs[rid].repeat for rid in ids}
    if plan.campaign.order == "grouped":
        return ids
    if plan.campaign.order == "interleave":
        return sorted(ids, key=lambda rid: repeats[rid])  # stable: grid order within a repeat
    shuffled = ids[:]
    random.Random(plan.campaign.order_seed).shuffle(shuffled)
    return shuffled


def run_priorities(plan: Plan) -> dict[str, int]:
    """Snakemake priority per run id: the first run to measure has the highest."""
    order = run_order(plan)
    return {rid: len(order) - position for position, rid in enumerate(order)}
