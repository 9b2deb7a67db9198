"""FLOPs of a run's useful work: architecture formula, calflops calibration, 2·N·T estimate.

The dimensions come from `architecture.py`; this module turns them into a run's counts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from llenergymeasure.errors import ArchitectureError
from llenergymeasure.measure.architecture import (
    Architecture,
    ParameterCounts,
    text_config,
)
from llenergymeasure.results.models import Flops, FlopsResult, RequestResult

# The architecture's names stay importable from here, where callers first found them.
__all__ = [
    "Architecture",
    "ArchitectureError",
    "ParameterCounts",
    "calflops_result",
    "null_flops",
    "run_flops",
    "text_config",
]

Method = Literal["calflops", "architecture", "parameter_estimate"]

CAUSAL_NOTE = "prefill attention: causal L(L+1)/2 score/value products per head (useful work)"
SQUARE_NOTE = (
    "prefill attention: full L x L square as eager kernels compute it, the figure compared "
    "with calflops"
)


def _reason(error: Exception) -> str:
    """One line naming an exception's type and message."""
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _null(method: Method, precision: str, reason: str) -> FlopsResult:
    """A FLOP count that could not be made, and why."""
    return FlopsResult(
        value=None, method=method, confidence=None, precision=precision, null_reason=reason
    )


def null_flops(reason: str, compute_precision: str) -> Flops:
    """No FLOP count at all, by any method, and why (alternatives keep their places)."""
    return Flops(
        primary=_null("architecture", compute_precision, reason),
        alternatives=[
            _null("calflops", compute_precision, f"no architecture count to scale ({reason})"),
            # A transformer formula would misstate what it could not read (e.g. a
            # state-space model): no estimate rather than a wrong one.
            _null("parameter_estimate", compute_precision, f"no parameter count ({reason})"),
        ],
    )


def run_flops(
    model_config: Any,
    requests: Sequence[RequestResult],
    compute_precision: str,
    calflops_profile: Path | None = None,
) -> Flops:
    """FLOPs of the run by every method that can run; the best one is primary.

    Never raises: a config the formula cannot read gives a null primary with the reason, and
    the alternatives keep their places (calflops, then the parameter estimate).
    """
    shapes = [(r.input_tokens, r.output_tokens) for r in requests]
    tokens = sum(i + o for i, o in shapes)
    try:
        arch = Architecture.from_config(model_config)
        useful_flops = arch.generation(shapes, causal=True)
        square_flops = arch.generation(shapes, causal=False)
        notes = arch.describe()
    except Exception as e:  # a run is never lost to its FLOPs: null with the reason
        return null_flops(f"cannot read the model architecture: {_reason(e)}", compute_precision)
    if text_config(model_config) is not model_config:
        notes.append("text decoder of a composite config: vision/audio encoders not counted")
    scope = "useful work over real tokens: no padding, no tokens after EOS in a static batch"
    architecture = FlopsResult(
        value=float(useful_flops),
        method="architecture",
        confidence="high",
        precision=compute_precision,
        notes=[*notes, scope, CAUSAL_NOTE],
    )
    active = arch.non_embedding_parameters(active=True)
    estimate = FlopsResult(
        value=float(2 * active * tokens),
        method="parameter_estimate",
        confidence="low",
        precision=compute_precision,
        notes=[
            f"2 x {active:,} active non-embedding parameters x {tokens} tokens: ignores "
            "attention and the lm_head"
        ],
    )
    calibrated = calflops_result(calflops_profile, square_flops, compute_precision)
    return Flops(primary=architecture, alternatives=[calibrated, estimate])


def calflops_result(
    profile_path: Path | None, square_flops: int, compute_precision: str
) -> FlopsResult:
    """The run's FLOPs scaled by calflops' own count of reference forwards of this model.

    Args:
        profile_path: The model's calflops profile (JSON), or None.
        square_flops: The run's architecture count with full L x L prefill attention, the
            convention of `Architecture.forward` that the profile's ratio was measured against.
        compute_precision: The precision the matmuls ran in.
    """
    if profile_path is None or not profile_path.exists():
        return _null("calflops", compute_precision, "no calflops profile of this model was given")
    try:
        profile = json.loads(profile_path.read_text())
        if profile.get("ratio") is None:
            reason = f"calflops failed on this model: {profile.get('null_reason')}"
            return _null("calflops", compute_precision, reason)
        shapes = ", ".join(f"{s['batch']}x{s['seq_len']}" for s in profile["shapes"])
        note = (
            f"calflops {profile['calflops_version']} counted forwards of shapes {shapes} "
            f"with {profile['attention']} attention in {profile['duration_s']:.1f} s (once per "
            "model, outside any window); the run's full-square architecture count is scaled by "
            f"calflops/architecture = {profile['ratio']:.5f}: calflops cannot follow a "
            "KV-cached generation loop itself"
        )
        value = square_flops * float(profile["ratio"])
    except Exception as e:  # a broken profile costs only this alternative
        return _null("calflops", compute_precision, f"unreadable calflops profile: {_reason(e)}")
    return FlopsResult(
        value=value,
        method="calflops",
        confidence="medium",
        precision=compute_precision,
        notes=[note, SQUARE_NOTE],
    )
