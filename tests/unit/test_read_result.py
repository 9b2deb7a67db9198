"""result.json files are read as their models; files that are not say why in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llenergymeasure.errors import LlemError
from llenergymeasure.results.io import read_result


def write(tmp_path: Path, data: str | dict) -> Path:
    path = tmp_path / "result.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("{not json", r"not a readable result"),
        ({"schema_version": "2.0.0", "run_id": "r"}, r"schema_version '2.0.0' is not 1\.x"),
        (  # before schema 1.4: no configuration_id, no window timestamps
            {"schema_version": "1.2.0", "run_id": "r"},
            r"'1.2.0' is not a valid 1\.\d+\.\d+ RunResult \(configuration_id: Field required; "
            r".* and \d+ more\); re-run it or build its tables with the llem version",
        ),
        (
            {"schema_version": "1.7.0", "status": "failed", "run_id": "r"},
            r"is not a valid 1\.\d+\.\d+ FailureRecord \(configuration_id: Field required",
        ),
    ],
)
def test_an_unreadable_result_says_why(tmp_path, data, expected):
    with pytest.raises(LlemError, match=expected):
        read_result(write(tmp_path, data))


def test_a_missing_result_is_one_line(tmp_path):
    with pytest.raises(LlemError, match="not a readable result: .*No such file"):
        read_result(tmp_path / "result.json")
