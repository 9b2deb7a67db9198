"""Process memory from /proc (Linux): RSS now, and a peak that can be reset before a window."""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(key: str) -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    """Resident set size of this process now (MiB), None where /proc is absent."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float | None:
    """Peak resident set size since start or the last reset (VmHWM, MiB)."""
    return _status_mb("VmHWM")


def reset_peak_rss() -> str | None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); returns why not, or None on success."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError as e:
        return f"the peak RSS could not be reset ({CLEAR_REFS}: {e.strerror or e})"
    return None
