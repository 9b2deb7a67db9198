"""Figures of where the energy goes, and of energy against latency at the campaign's target.

Phases per configuration, one run's timeline shaded by phase, and the energy-latency Pareto
front with `analysis.slo` drawn; greyscale-safe, 300 dpi.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from llenergymeasure.results.slo import (  # noqa: E402
    ENERGY_METRIC,
    cheapest,
    energy_latency_front,
    targets_of,
)

DPI = 300
PHASE_STYLE = {  # greyscale-safe: shade and hatch
    "prefill": {"color": "0.25", "hatch": "//", "label": "prefill"},
    "decode": {"color": "0.65", "hatch": "", "label": "decode"},
    "idle": {"color": "0.92", "hatch": "..", "label": "idle gaps"},
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
TIMELINE_SPAN_S = 8.0
"""The phased timeline shows at most this many seconds of the window, so steps stay visible."""


def _save(fig: plt.Figure, path: Path, footnote: str = "") -> None:
    if footnote:
        fig.text(0.01, 0.005, footnote, fontsize=7, ha="left", va="bottom", style="italic")
    fig.tight_layout(rect=(0, 0.03 if footnote else 0, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _label(row: pd.Series) -> str:
    text = f"{row['backend']}\n{row['dtype']} b{row['batch_size']}"
    if row.get("quantization") not in (None, "none"):
        text += f"\n{row['quantization']}"
    return text


def _notice(ax: plt.Axes, text: str, width: int = 60) -> None:
    ax.set_axis_off()
    wrapped = "\n".join(textwrap.fill(line, width) for line in text.splitlines())
    ax.text(0.5, 0.5, wrapped, ha="center", va="center", fontsize=8)


def phase_energy(runs: pd.DataFrame, path: Path, footnote: str = "") -> None:
    """Stacked prefill/decode/idle energy per output token, and the window's time split."""
    fig, (energy_ax, time_ax) = plt.subplots(1, 2, figsize=(9, 4))
    data = runs.dropna(subset=["prefill_s"]) if "prefill_s" in runs else runs.iloc[0:0]
    data = data.sort_values(["model", "backend", "dtype", "batch_size", "configuration_id"])
    groups = list(data.groupby("configuration_id", sort=False))
    labels = [_label(g.iloc[0]) for _, g in groups]
    x = np.arange(len(groups))
    energy_bottom, time_bottom = np.zeros(len(groups)), np.zeros(len(groups))
    measured = data["prefill_energy_j"].notna().any() if len(data) else False
    for phase, energy_column, time_column in (
        ("prefill", "prefill_energy_j", "prefill_s"),
        ("decode", "decode_energy_j", "decode_s"),
        ("idle", "idle_gap_energy_j", "idle_gap_s"),
    ):
        style = PHASE_STYLE[phase]
        kwargs = {"color": style["color"], "hatch": style["hatch"], "edgecolor": "0.0"}
        per_token = [
            (g[energy_column].astype(float) / g["output_tokens"].astype(float)).mean()
            for _, g in groups
        ]
        share = [
            (100 * g[time_column].astype(float) / g["window_s"].astype(float)).mean()
            for _, g in groups
        ]
        if measured:
            values = np.nan_to_num(np.asarray(per_token, float))
            energy_ax.bar(x, values, bottom=energy_bottom, label=style["label"], **kwargs)
            energy_bottom += values
        time_ax.bar(x, share, bottom=time_bottom, label=style["label"], **kwargs)
        time_bottom += np.asarray(share, float)
    if measured:
        for position, (_, g) in zip(x, groups, strict=True):
            if g["prefill_energy_j"].isna().all():
                energy_ax.text(
                    position,
                    0,
                    "null:\nno timeline",
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=90,
                )
        energy_ax.set_xticks(x, labels, fontsize=7)
        energy_ax.set_ylabel("energy per output token (J)")
        energy_ax.set_ylim(0, float(energy_bottom.max()) * 1.25 or 1.0)
        energy_ax.set_title("Energy per output token, by phase (measured timeline)", fontsize=9)
        energy_ax.legend(fontsize=7, ncol=3, loc="upper center")
        energy_ax.grid(True, axis="y", alpha=0.3)
    else:
        reasons = sorted({str(r) for r in data.get("phase_null_reason", pd.Series()).dropna()})
        _notice(
            energy_ax,
            "No phase energies: "
            + ("; ".join(reasons) or "no run was measured")
            + ".\nNothing is estimated in their place.",
        )
    if groups:
        time_ax.set_xticks(x, labels, fontsize=7)
        time_ax.set_ylabel("share of the window (%)")
        time_ax.set_ylim(0, 125)
        time_ax.set_yticks(range(0, 101, 20))
        time_ax.set_title("Window time by phase (token timestamps)", fontsize=9)
        time_ax.legend(fontsize=7, ncol=3, loc="upper center")
        time_ax.grid(True, axis="y", alpha=0.3)
    else:
        _notice(time_ax, "No run has a phase split.")
    fig.suptitle(
        "Where the energy goes: prefill, decode, idle gaps (mean over repeats)", fontsize=9
    )
    _save(fig, path, footnote)


def _pick_run(phases: pd.DataFrame, timeseries: pd.DataFrame) -> tuple[str | None, bool]:
    """A run with phases, preferring one with power samples; and whether it has them."""
    if phases.empty:
        return None, False
    powered = set(timeseries.dropna(subset=["power_w"])["run_id"]) if len(timeseries) else set()
    candidates = sorted(set(phases["run_id"]))
    with_power = [r for r in candidates if r in powered]
    return (with_power or candidates)[0], bool(with_power)


def phase_timeline(
    timeseries: pd.DataFrame,
    phases: pd.DataFrame,
    runs: pd.DataFrame,
    path: Path,
    footnote: str = "",
) -> None:
    """One run's window power over time, shaded by phase (prefill, decode, idle gaps)."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    run_id, has_power = _pick_run(phases, timeseries)
    if run_id is None:
        _notice(ax, "No run has a phase split (results before schema 1.7, or none succeeded).")
        _save(fig, path, footnote)
        return
    one = phases[phases.run_id == run_id].sort_values("start_t_window_s")
    first_s, last_s = float(one["start_t_window_s"].min()), float(one["end_t_window_s"].max())
    shown_s = min(last_s, first_s + TIMELINE_SPAN_S)
    for phase, style in PHASE_STYLE.items():
        rows = one[(one.phase == phase) & (one.start_t_window_s < shown_s)]
        for k, (_, row) in enumerate(rows.iterrows()):
            ax.axvspan(
                float(row["start_t_window_s"]),
                min(float(row["end_t_window_s"]), shown_s),
                facecolor=style["color"],
                hatch=style["hatch"],
                edgecolor="0.45",
                linewidth=0,
                alpha=0.55,
                label=None if k else _phase_label(runs, run_id, phase, style["label"]),
            )
    if has_power:
        window = timeseries[(timeseries.run_id == run_id) & (timeseries.phase == "window")]
        window = window.dropna(subset=["power_w"])
        total = window.groupby("t_window_s")["power_w"].sum().sort_index()  # all devices
        total = total[total.index <= shown_s]
        ax.plot(
            total.index, total.to_numpy(), color="0.0", linewidth=1.2, label="power, all devices"
        )
        ax.set_ylabel("power (W)")
        title = f"Power of {run_id}, shaded by phase"
    else:
        ax.set_yticks([])
        reason = runs.loc[runs.run_id == run_id, "phase_null_reason"]
        why = str(reason.iloc[0]) if len(reason) and pd.notna(reason.iloc[0]) else "no power"
        title = f"Phases of {run_id} (no power line: {why})"
    ax.set_xlim(first_s, shown_s)
    ax.set_xlabel(
        "time since window start (s)"
        + (
            f"; the first {TIMELINE_SPAN_S:g} s of {last_s - first_s:.1f} s"
            if shown_s < last_s
            else ""
        )
    )
    ax.set_title(title, fontsize=8, wrap=True)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    _save(fig, path, footnote)


def _phase_label(runs: pd.DataFrame, run_id: str, phase: str, label: str) -> str:
    """The legend entry of a phase, with the run's energy of that phase where measured."""
    column = {"prefill": "prefill_energy_j", "decode": "decode_energy_j"}.get(
        phase, "idle_gap_energy_j"
    )
    row = runs.loc[runs.run_id == run_id]
    if column in row and len(row) and pd.notna(row[column].iloc[0]):
        return f"{label} ({float(row[column].iloc[0]):.3g} J in the window)"
    return label


def _two_and_five(value: float, _: object) -> str:
    """Minor log-axis labels at 2 and 5 times a power of ten (plain numbers)."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** np.floor(np.log10(value))
    return (
        f"{value:g}" if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""
    )


def energy_vs_latency(summary: pd.DataFrame, path: Path, footnote: str = "") -> None:
    """Energy per token against each targeted latency, the Pareto front and the target."""
    targets = targets_of(summary)
    metrics = list(targets) or ["ttft_p95_s", "itl_p95_s"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    energy = f"{ENERGY_METRIC}_mean"
    chosen = {c.best.name for c in cheapest(summary) if c.best is not None}
    for ax, metric in zip(axes[0], metrics, strict=True):
        latency = f"{metric}_mean"
        data = summary.dropna(subset=[latency, energy])
        if data.empty:
            _notice(ax, f"No configuration has both {metric} and a measured energy.")
            continue
        for k, ((backend, dtype), group) in enumerate(
            data.groupby(["backend", "dtype"], sort=True)
        ):
            meets = group["meets_slo"].fillna(False).astype(bool) if "meets_slo" in group else None
            marker = MARKERS[k % len(MARKERS)]
            for flag, face in ((True, "0.0"), (False, "none")):
                part = group[meets == flag] if meets is not None else (group if flag else group[:0])
                if part.empty:
                    continue
                ax.scatter(
                    part[latency],
                    part[energy],
                    marker=marker,
                    facecolors=face,
                    edgecolors="0.0",
                    s=40,
                    zorder=3,
                    label=f"{backend} {dtype}"
                    + ("" if not targets else " (meets)" if flag else " (misses, or not judged)"),
                )
            for _, row in group.iterrows():
                ax.annotate(
                    f"b{row['batch_size']}",
                    (row[latency], row[energy]),
                    fontsize=7,
                    xytext=(4, 3),
                    textcoords="offset points",
                )
        front = energy_latency_front(data, latency, energy).sort_values(latency)
        right = float(data[latency].max()) * 1.5  # the front's last level holds to the right
        ax.step(
            [*front[latency], right],
            [*front[energy], float(front[energy].iloc[-1])],
            where="post",
            color="0.3",
            linestyle="--",
            linewidth=1,
            label=f"Pareto front ({len(front)} configuration{'s' * (len(front) > 1)})",
        )
        ringed = data[data.index.isin(chosen)]
        if len(ringed):
            ax.scatter(
                ringed[latency],
                ringed[energy],
                s=180,
                facecolors="none",
                edgecolors="0.0",
                linewidths=1.2,
                label="cheapest meeting the target",
            )
        if metric in targets:
            ax.axvline(
                targets[metric],
                color="0.0",
                linestyle=":",
                linewidth=1.2,
                label=f"target {targets[metric]:g} s",
            )
            low, high = ax.get_xlim()
            ax.set_xlim(min(low, targets[metric] / 1.3), max(high, targets[metric] * 1.3))
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(FuncFormatter(_two_and_five))
        ax.set_xlabel(f"{metric.removesuffix('_s').replace('_', ' ')} (s), mean over repeats")
        ax.set_ylabel("energy per output token (J)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    kinds = ", ".join(sorted({str(c) for c in summary["energy_confidence"].dropna()})) or "null"
    where = "target from analysis.slo" if targets else "no target set (analysis.slo)"
    fig.suptitle(f"Energy vs latency ({kinds} energy); {where}", fontsize=9)
    _save(fig, path, footnote)
