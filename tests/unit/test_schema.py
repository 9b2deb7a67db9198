from __future__ import annotations

from pathlib import Path

from llenergymeasure.config.schema import (
    README_PATH,
    SCHEMA_PATH,
    campaign_schema_json,
    config_readme,
)

REPO = Path(__file__).parents[2]


def test_json_schema_matches_the_models():
    assert (REPO / SCHEMA_PATH).read_text() == campaign_schema_json(), "run `llem schema`"


def test_config_readme_matches_the_models():
    assert (REPO / README_PATH).read_text() == config_readme(), "run `llem schema`"


def test_readme_documents_every_settings_key():
    from llenergymeasure.config.models import Settings

    text = config_readme()
    assert all(f"| `{name}` |" in text for name in Settings.model_fields)
