"""Result files: read as their models; written atomically (temporary sibling, fsync, rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from llenergymeasure.errors import LlemError
from llenergymeasure.results.models import SCHEMA_VERSION, FailureRecord, RunResult


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_model_atomic(path: Path, model: BaseModel) -> None:
    """Write a pydantic model as indented JSON, atomically."""
    write_text_atomic(path, model.model_dump_json(indent=2) + "\n")


RESULT_FILE: TypeAdapter[RunResult | FailureRecord] = TypeAdapter(
    Annotated[RunResult | FailureRecord, Field(union_mode="left_to_right")]
)
"""A result.json: a run's result or, in its place, its failure record."""
REREAD = "re-run it or build its tables with the llem version that wrote it"


def _check_major(path: Path, version: Any) -> None:
    major = SCHEMA_VERSION.split(".")[0]
    if str(version or "").split(".")[0] != major:
        raise LlemError(f"{path}: schema_version {version!r} is not {major}.x; {REREAD}")


def _invalid(path: Path, data: bytes, error: ValidationError) -> LlemError:
    """Why a result file does not validate: not JSON, another major version, or which fields."""
    try:
        raw = json.loads(data)
        version, status = raw.get("schema_version"), raw.get("status")
    except (ValueError, AttributeError) as e:
        return LlemError(f"{path}: not a readable result: {e}")
    _check_major(path, version)
    model = FailureRecord if status == "failed" else RunResult
    errors = [e for e in error.errors() if e["loc"][:1] == (model.__name__,)]
    fields = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in errors[:3])
    more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
    return LlemError(
        f"{path}: schema_version {version!r} is not a valid {SCHEMA_VERSION} {model.__name__} "
        f"({fields}{more}); {REREAD}"
    )


def read_result(path: Path) -> RunResult | FailureRecord:
    """A result.json as its model, checked to be of this schema's major version."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise LlemError(f"{path}: not a readable result: {e}") from e
    try:
        result = RESULT_FILE.validate_json(data)
    except ValidationError as e:
        raise _invalid(path, data, e) from e
    _check_major(path, result.schema_version)
    return result
