"""Arrow fields of a pydantic model's fields, for table columns that mirror a model."""

from __future__ import annotations

import types
import typing
from collections.abc import Collection
from typing import Any

import pyarrow as pa
from pydantic import BaseModel


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of a field annotation: bool, int, float, else string (Optional unwrapped)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return arrow_type(args[0])
    if annotation is bool:
        return pa.bool_()
    if annotation is int:
        return pa.int64()
    if annotation is float:
        return pa.float64()
    return pa.string()  # str and Literal[...] of strings


def arrow_fields(model: type[BaseModel], exclude: Collection[str] = ()) -> list[pa.Field]:
    """One Arrow field per model field, in the model's order; nullable unless required."""
    return [
        pa.field(name, arrow_type(field.annotation), nullable=not field.is_required())
        for name, field in model.model_fields.items()
        if name not in exclude
    ]
