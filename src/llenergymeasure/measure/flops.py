"""FLOPs of a run's useful work: architecture formula, calflops-ratio scaling, 2·N·T estimate.

The dimensions come from `architecture.py`; this module turns them into a run's counts. The
calflops alternative is not a count of the run by calflops: calflops cannot follow a KV-cached
generation loop, so it counts reference forwards once per model (`calflops_profile.py`) and the
run's full-square architecture count is scaled by the median calflops/architecture ratio of
those forwards. Its method says so: `architecture_scaled_by_calflops_ratio`.
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

Method = Literal["architecture", "architecture_scaled_by_calflops_ratio", "parameter_estimate"]
SCALED: Method = "architecture_scaled_by_calflops_ratio"
Confidence = Literal["high", "medium", "low"]
# The scaled alternative carries the architecture count's error plus the ratio's extrapolation
# from three reference shapes to the run's: one step below the count it scales.
ONE_STEP_LOWER: dict[Confidence, Confidence] = {"high": "medium", "medium": "low", "low": "low"}

CAUSAL_NOTE = (
    "prefill attention: causal L(L+1)/2 score/value products per head (useful work); "
    "min(p + 1, window) keys per query in sliding-window layers"
)
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
            _null(SCALED, compute_precision, f"no architecture count to scale ({reason})"),
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
    the alternatives keep their places (the calflops-ratio scaling, then the parameter
    estimate). The architecture count is *high* confidence where it follows the config exactly
    and *medium* where it had to assume something (named in its notes, "approximated: ...").
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
    confidence: Confidence = "medium" if arch.attention_approximations else "high"
    architecture = FlopsResult(
        value=float(useful_flops),
        method="architecture",
        confidence=confidence,
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
    scaled = calflops_result(
        calflops_profile, square_flops, compute_precision, ONE_STEP_LOWER[confidence]
    )
    return Flops(primary=architecture, alternatives=[scaled, estimate])


def calflops_result(
    profile_path: Path | None,
    square_flops: int,
    compute_precision: str,
    confidence: Confidence = "medium",
) -> FlopsResult:
    """The run's full-square architecture count times calflops/architecture of this model.

    Not a calflops count of the run: one ratio, measured once per model on reference
    forwards, scales the run's architecture count (method `architecture_scaled_by_calflops_ratio`).

    Args:
        profile_path: The model's calflops profile (JSON), or None.
        square_flops: The run's architecture count with full L x L prefill attention, the
            convention of `Architecture.forward` that the profile's ratio was measured against.
        compute_precision: The precision the matmuls ran in.
        confidence: The confidence to give a value (one step below the count it scales).
    """
    if profile_path is None or not profile_path.exists():
        return _null(SCALED, compute_precision, "no calflops profile of this model was given")
    try:
        profile = json.loads(profile_path.read_text())
        if profile.get("ratio") is None:
            reason = f"calflops failed on this model: {profile.get('null_reason')}"
            return _null(SCALED, compute_precision, reason)
        shapes = ", ".join(f"{s['batch']}x{s['seq_len']}" for s in profile["shapes"])
        note = (
            f"calflops {profile['calflops_version']} counted forwards of shapes {shapes} "
            f"with {profile['attention']} attention in {profile['duration_s']:.1f} s (once per "
            "model, outside any window); the run's full-square architecture count is scaled by "
            f"their median calflops/architecture = {profile['ratio']:.5f}: not a calflops count "
            "of this run, which calflops cannot make (it cannot follow a KV-cached generation "
            "loop)"
        )
        value = square_flops * float(profile["ratio"])
    except Exception as e:  # a broken profile costs only this alternative
        return _null(SCALED, compute_precision, f"unreadable calflops profile: {_reason(e)}")
    return FlopsResult(
        value=value,
        method=SCALED,
        confidence=confidence,
        precision=compute_precision,
        notes=[note, SQUARE_NOTE],
    )
