"""What SLURM's SIGTERM means (a pure decision), and where the job's end time comes from."""

from __future__ import annotations

import pytest

from llenergymeasure.measure.slurm_time import (
    SLURM_END_TIME_ENV,
    SLURM_OWN_END_TIME_ENV,
    duration_s,
    sigterm_cause,
    slurm_end_time_s,
    stop_margin_s,
)

NOW_S = 1_800_000_000.0


@pytest.mark.parametrize(
    ("left_s", "grace_s", "cause"),
    [
        (-1.0, 10.0, "timeout"),  # SLURM signals at, or just after, the limit
        (-300.0, 10.0, "timeout"),  # OverTimeLimit: past the limit
        (0.0, 10.0, "timeout"),
        (10.0, 10.0, "timeout"),  # the grace itself still counts as up
        (10.5, 10.0, "cancelled"),
        (50.0, 60.0, "timeout"),  # a long job's grace is its stop margin
        (292.0, 10.0, "cancelled"),  # scancel 8 s into a 5-minute job
        (86_400.0, 60.0, "cancelled"),  # preempted with a day left
    ],
)
def test_a_sigterm_is_a_timeout_only_when_the_time_left_is_within_the_grace(left_s, grace_s, cause):
    assert sigterm_cause(NOW_S + left_s, NOW_S, grace_s) == cause


def test_a_sigterm_with_the_end_not_known_is_taken_as_cancelled():
    # conservative: a cancellation taken for a timeout would leave a record that a rerun
    # skips; a timeout taken for a cancellation is only measured again
    assert sigterm_cause(None, NOW_S, 10.0) == "cancelled"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0:00", 0.0),
        ("4:52", 292.0),
        ("1:00:00", 3600.0),
        ("2-03:04:05", ((2 * 24 + 3) * 60 + 4) * 60 + 5.0),
        ("UNLIMITED", None),
        ("NOT_SET", None),
        ("INVALID", None),  # squeue's %L past the limit: why %l and %M are asked instead
        ("", None),
    ],
)
def test_slurm_durations_are_read_in_seconds(text, seconds):
    assert duration_s(text) == seconds


def test_the_stop_margin_is_a_fifth_of_the_time_left_within_10_to_60_s():
    assert stop_margin_s(20.0) == 10.0
    assert stop_margin_s(100.0) == 20.0
    assert stop_margin_s(7200.0) == 60.0


def test_outside_slurm_there_is_no_end(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert slurm_end_time_s(NOW_S, {SLURM_OWN_END_TIME_ENV: "1800000100"}) is None


@pytest.mark.parametrize(
    ("environ", "end_s"),
    [
        ({SLURM_END_TIME_ENV: "1800000100"}, 1_800_000_100.0),  # the host's, in a container
        ({SLURM_OWN_END_TIME_ENV: "1800000200"}, 1_800_000_200.0),  # SLURM >= 23.02's own
        ({SLURM_END_TIME_ENV: "1800000100", SLURM_OWN_END_TIME_ENV: "1"}, 1_800_000_100.0),
        ({SLURM_OWN_END_TIME_ENV: "soon"}, None),
        ({}, None),
    ],
)
def test_without_squeue_the_end_comes_from_the_environment(tmp_path, monkeypatch, environ, end_s):
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue on it: as inside a container
    assert slurm_end_time_s(NOW_S, {"SLURM_JOB_ID": "7", **environ}) == end_s


def test_squeue_answers_with_the_limit_less_the_time_used(tmp_path, monkeypatch):
    # the boundary: a squeue that prints what SLURM 22.05 printed for a job cancelled 8 s
    # into its 5 minutes (%l|%M); its end as squeue's %e would be "now", read as time up
    squeue = tmp_path / "squeue"
    squeue.write_text('#!/bin/sh\n[ "$*" = "-h -j 7 -o %l|%M" ] && echo "5:00|0:08"\n')
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    environ = {"SLURM_JOB_ID": "7", SLURM_OWN_END_TIME_ENV: "1"}
    assert slurm_end_time_s(NOW_S, environ) == NOW_S + 292.0
