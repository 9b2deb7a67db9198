"""The SLURM job's time: when it ends, how early a run stops, and what a SIGTERM means.

SLURM ends a job at its time limit by sending SIGTERM, then SIGKILL `KillWait` seconds later;
`scancel`, a preemption or a drained node send the same SIGTERM. Only the time left at the
signal tells them apart: at the limit it is (about) none, for the others it is more.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Literal

SigtermCause = Literal["timeout", "cancelled"]

# Set for a run inside a container by the host's `llem run` (squeue is the host's): the job's
# end, in seconds since the epoch, as the host's squeue gave it when the container started.
SLURM_END_TIME_ENV = "LLEM_SLURM_JOB_END_TIME"
# SLURM >= 23.02 sets this in the job's environment (22.05, the CI cluster's, does not). It is
# the end as of the job's start: an `scontrol update TimeLimit=...` later does not change it.
SLURM_OWN_END_TIME_ENV = "SLURM_JOB_END_TIME"

MIN_STOP_MARGIN_S = 10.0
MAX_STOP_MARGIN_S = 60.0
QUERY_AT_START_TIMEOUT_S = 10.0
# At the signal the run has KillWait seconds (30 by default, 5 on the CI cluster) before
# SIGKILL to decide and record: the controller is asked once, briefly.
QUERY_AT_SIGNAL_TIMEOUT_S = 3.0

_DURATION = re.compile(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)")


def duration_s(text: str) -> float | None:
    """Seconds of a SLURM duration ([D-][HH:]MM:SS); None for UNLIMITED, NOT_SET, INVALID."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def squeue_time_left_s(job: str, timeout_s: float) -> float | None:
    """The job's time limit less its time used (squeue %l, %M), negative once past the limit.

    Not %L: past the limit it prints INVALID; nor %e: a cancelled job's end is the moment of
    its cancellation, which would read as "the time is up".
    """
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%l|%M"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    limit, _, used = (out.splitlines() or [""])[0].partition("|")
    limit_s, used_s = duration_s(limit), duration_s(used)
    if limit_s is None or used_s is None:
        return None  # no limit, or the job is unknown to this controller
    return limit_s - used_s


def slurm_end_time_s(
    now_s: float,
    environ: dict[str, str] | None = None,
    timeout_s: float = QUERY_AT_START_TIMEOUT_S,
) -> float | None:
    """When this SLURM job's time runs out (seconds since the epoch); None if not known.

    The controller's answer now (squeue) first, since a limit can change while the job runs;
    else the host's answer passed into a container; else SLURM's own variable. None outside
    SLURM, for a job without a limit, and when none of them answers.
    """
    environ = environ if environ is not None else dict(os.environ)
    job = environ.get("SLURM_JOB_ID")
    if not job:
        return None
    left_s = squeue_time_left_s(job, timeout_s)
    if left_s is not None:
        return now_s + left_s
    for name in (SLURM_END_TIME_ENV, SLURM_OWN_END_TIME_ENV):
        try:
            return float(environ[name])
        except (KeyError, ValueError):
            continue
    return None


def slurm_time_left_s(environ: dict[str, str] | None = None) -> float | None:
    """Seconds left of this SLURM job's time limit, None outside SLURM or when not known."""
    now_s = time.time()
    end_s = slurm_end_time_s(now_s, environ)
    return None if end_s is None else end_s - now_s


def stop_margin_s(left_s: float) -> float:
    """How early, before the job's end, a run stops itself to record its timeout (10-60 s)."""
    return min(MAX_STOP_MARGIN_S, max(MIN_STOP_MARGIN_S, 0.2 * left_s))


def sigterm_cause(end_time_s: float | None, now_s: float, grace_s: float) -> SigtermCause:
    """What a SIGTERM under SLURM means: "timeout" only when the job's time is really up.

    Args:
        end_time_s: When the job's time runs out (epoch seconds), None if it is not known.
        now_s: When the signal came (epoch seconds).
        grace_s: Time left that still counts as up: the run's own stop margin, inside which
            it would have stopped itself as a timeout anyway.

    Returns:
        "timeout" when at most `grace_s` is left (or the limit is past); otherwise, and when
        the end is not known, "cancelled" (scancel, preemption): the run is not recorded, so
        a rerun measures it rather than a guess counting it as done.
    """
    if end_time_s is None:
        return "cancelled"
    return "timeout" if end_time_s - now_s <= grace_s else "cancelled"
