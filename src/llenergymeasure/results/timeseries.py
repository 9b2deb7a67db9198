"""The per-run power/telemetry timeline as Parquet with a fixed schema."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq


class Reading(Protocol):
    """A device reading as the writer needs it (the value columns are read by name)."""

    @property
    def device(self) -> str:
        """The device's stable id."""

    @property
    def t_s(self) -> float:
        """Unix time of the reading."""


class TaggedReading(Protocol):
    """A reading and the session phase it was taken in (the sampler's TaggedSample)."""

    @property
    def phase(self) -> str:
        """The session phase."""

    @property
    def sample(self) -> Reading:
        """The reading."""


TIMESERIES_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("phase", pa.string(), nullable=False),
        pa.field("t_unix_s", pa.float64(), nullable=False),
        pa.field("t_window_s", pa.float64(), nullable=False),
        pa.field("power_w", pa.float64()),
        pa.field("energy_j", pa.float64()),
        pa.field("temperature_c", pa.float64()),
        pa.field("sm_clock_mhz", pa.float64()),
        pa.field("mem_clock_mhz", pa.float64()),
        pa.field("memory_used_mb", pa.float64()),
        pa.field("gpu_util_pct", pa.float64()),
        pa.field("mem_util_pct", pa.float64()),
        pa.field("throttle_reasons", pa.int64()),
        pa.field("power_limit_w", pa.float64()),
        # the engine's scheduler after each step (rows of device `engine:<backend>`)
        pa.field("running_reqs", pa.int64()),
        pa.field("waiting_reqs", pa.int64()),
        pa.field("kv_cache_usage", pa.float64()),
        pa.field("preempted_reqs", pa.int64()),
    ]
)
VALUE_COLUMNS = TIMESERIES_SCHEMA.names[5:]
ENGINE_PREFIX = "engine:"
"""Device ids of the engine's own rows (its scheduler), beside the devices' readings."""


def write_timeseries(
    path: Path, run_id: str, samples: Sequence[TaggedReading], window_start_unix_s: float
) -> int:
    """Write the samples (phase marks baseline/warmup/window/...); returns the row count.

    `t_window_s` is seconds since the window started: negative before it, the window is
    where `phase == "window"`.
    """
    columns: dict[str, list] = {name: [] for name in TIMESERIES_SCHEMA.names}
    for tagged in sorted(samples, key=lambda t: (t.sample.device, t.sample.t_s)):
        s = tagged.sample
        columns["run_id"].append(run_id)
        columns["device"].append(s.device)
        columns["phase"].append(tagged.phase)
        columns["t_unix_s"].append(s.t_s)
        columns["t_window_s"].append(s.t_s - window_start_unix_s)
        for name in VALUE_COLUMNS:
            columns[name].append(getattr(s, name, None))  # a device's or the engine's
    table = pa.table(columns, schema=TIMESERIES_SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return table.num_rows


def read_power(path: Path) -> list[tuple[str, float, float | None]]:
    """`(device, t_unix_s, power_w)` of every device row of a timeline (`write_timeseries`)."""
    table = pq.read_table(path, columns=["device", "t_unix_s", "power_w"])
    rows = zip(
        table.column("device").to_pylist(),
        table.column("t_unix_s").to_pylist(),
        table.column("power_w").to_pylist(),
        strict=True,
    )
    return [row for row in rows if not row[0].startswith(ENGINE_PREFIX)]
