"""summary.md sections: where the energy goes (phases, steady state) and energy at a target."""

from __future__ import annotations

import pandas as pd

from llenergymeasure.results.slo import ENERGY_METRIC, cheapest, targets_of


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return "null"
    return f"{float(value):.{digits}g}"  # type: ignore[arg-type]


def _mean(group: pd.DataFrame, column: str) -> float | None:
    if column not in group:
        return None
    values = pd.to_numeric(group[column], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _reasons(runs: pd.DataFrame, column: str) -> list[str]:
    if column not in runs:
        return []
    return sorted({str(r) for r in runs[column].dropna()})


def _steady_text(group: pd.DataFrame) -> str:
    duration = _mean(group, "steady_state_s")
    if duration is None:
        return "n/a"
    flags = [
        name
        for name, column in (
            ("short", "steady_state_short"),
            ("unsaturated", "steady_state_unsaturated"),
        )
        if group[column].fillna(False).astype(bool).any()
    ]
    text = (
        f"{_fmt(duration)} s, batch {_fmt(_mean(group, 'steady_state_mean_running'))} "
        f"({100 * (_mean(group, 'steady_state_saturation') or 0):.0f} % full)"
    )
    return text + (f" ! {', '.join(flags)}" if flags else "")


def phase_lines(runs: pd.DataFrame) -> list[str]:
    """The 'Where the energy goes' section from runs.parquet (succeeded runs)."""
    runs = runs[runs["status"] != "failed"]
    if runs.empty or "prefill_s" not in runs:
        return []
    if runs["prefill_s"].isna().all() and not _reasons(runs, "phase_null_reason"):
        return []
    lines = [
        "",
        "## Where the energy goes",
        "",
        "Per configuration, mean over repeats: seconds of the window in prefill, decode and "
        "idle gaps (from the token timestamps), the energy per prompt token of prefill and per "
        "output token of decode (from the power timeline), and the steady state of continuous "
        "batching (duration, mean running batch and its share of max_num_seqs; `!` flags a "
        "window under 20 s or a batch under 85 % full).",
        "",
        "| model | backend | batch | dtype | prefill (s) | decode (s) | idle (s) "
        "| prefill J/input token | decode J/output token | steady state | steady J/output token "
        "| energy source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, group in runs.groupby("configuration_id", sort=False):
        first = group.iloc[0]
        lines.append(
            f"| {first['model']} | {first['backend']} | {first['batch_size']} | {first['dtype']} "
            f"| {_fmt(_mean(group, 'prefill_s'))} | {_fmt(_mean(group, 'decode_s'))} "
            f"| {_fmt(_mean(group, 'idle_gap_s'))} "
            f"| {_fmt(_mean(group, 'prefill_energy_per_input_token_j'))} "
            f"| {_fmt(_mean(group, 'decode_energy_per_output_token_j'))} "
            f"| {_steady_text(group)} "
            f"| {_fmt(_mean(group, 'steady_state_energy_per_output_token_j'))} "
            f"| {first['energy_method']} |"
        )
    lines += ["", _applies_text(runs)]
    return lines


def _applies_text(runs: pd.DataFrame) -> str:
    """What of the phase analysis applies to these runs, and why the rest is null."""
    energy_nulls = _reasons(runs, "phase_null_reason")
    with_energy = int(runs["prefill_energy_j"].notna().sum())
    parts = []
    if with_energy:
        conservation = pd.to_numeric(runs["phase_conservation_error_j"], errors="coerce").abs()
        parts.append(
            f"Phase and per-request energies are measured in {with_energy} of {len(runs)} runs "
            f"(prefill + decode + idle = window energy within {_fmt(conservation.max())} J; "
            "latency.parquet's energy_j per request sums to it)."
        )
    if energy_nulls:
        timed = int((runs["prefill_s"].notna() & runs["prefill_energy_j"].isna()).sum())
        parts.append(
            f"Null phase, steady-state and per-request energies: {'; '.join(energy_nulls)}. "
            "Nothing is estimated in their place"
            + (
                f"; in {timed} of these runs what applies is measured from the token "
                "timestamps alone: the time in each phase, its tokens, and the steady state's "
                "window and running batch."
                if timed
                else "."
            )
        )
    steady_nulls = _reasons(runs[runs["steady_state_s"].isna()], "steady_state_null_reason")
    if steady_nulls:
        parts.append(f"No steady state where: {'; '.join(steady_nulls)}.")
    return " ".join(parts)


def slo_lines(summary: pd.DataFrame) -> list[str]:
    """The 'Energy at the latency target' section (nothing where no target is set)."""
    targets = targets_of(summary)
    if not targets:
        return []
    target_text = ", ".join(f"{metric} ≤ {value:g} s" for metric, value in targets.items())
    lines = [
        "",
        "## Cheapest configuration at the latency target",
        "",
        f"Target (`analysis.slo`): {target_text}, on the mean over repeats. Per model × "
        "backend, the configuration of least energy per output token that meets it "
        "(`meets_slo` in summary.parquet; figures/energy_vs_latency.png draws the Pareto front).",
        "",
        "| model | backend | batch | dtype | quant. | energy/token (J) | "
        + " | ".join(f"{m} (s)" for m in targets)
        + " | meeting / compared | energy source |",
        "|---|---|---|---|---|---|" + "---|" * len(targets) + "---|---|",
    ]
    choices = cheapest(summary)
    for choice in choices:
        if choice.best is None:
            lines.append(
                f"| {choice.model} | {choice.backend} | – | – | – | {choice.reason} | "
                + " | ".join("–" for _ in targets)
                + f" | {choice.meeting} / {choice.compared} | – |"
            )
            continue
        best = choice.best
        lines.append(
            f"| {choice.model} | {choice.backend} | {best['batch_size']} | {best['dtype']} "
            f"| {best['quantization']} | {_fmt(best[f'{ENERGY_METRIC}_mean'])} | "
            + " | ".join(_fmt(best[f"{m}_mean"]) for m in targets)
            + f" | {choice.meeting} / {choice.compared} "
            f"| {best['energy_method']} ({best['energy_confidence'] or 'no energy'}) |"
        )
    if any(c.best is not None and c.best["energy_confidence"] == "estimated" for c in choices):
        lines += [
            "",
            "Energies marked `estimated` (CodeCarbon without hardware counters) rank the "
            "configurations by a model of power, not by a measurement.",
        ]
    return lines
