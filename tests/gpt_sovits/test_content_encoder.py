"""Our content encoder as a core model: folder format, dispatch, and the layering rule."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

import gpt_sovits
from gpt_sovits.content_encoder import (
    ContentFeatureExtractor,
    is_content_encoder_dir,
    load_content_encoder,
    open_content_encoder,
    read_content_encoder_config,
    save_content_encoder,
    tiny_config,
)
from gpt_sovits.errors import ModelNotFoundError
from gpt_sovits.features import SSLFeatureExtractor


def test_saved_folder_is_recognised_and_its_config_read_without_weights(tmp_path: Path) -> None:
    ext = ContentFeatureExtractor.random_tiny(hidden=24, seed=1)
    save_content_encoder(ext.model, tmp_path / "enc")
    assert is_content_encoder_dir(tmp_path / "enc")
    (tmp_path / "enc" / "model.safetensors").unlink()  # the config alone answers name and width
    cfg = read_content_encoder_config(tmp_path / "enc")
    assert (cfg.name, cfg.hidden_size) == ("tiny-content", 24)
    with pytest.raises(ModelNotFoundError, match="model.safetensors"):
        load_content_encoder(tmp_path / "enc")


def test_hugging_face_hubert_folder_is_not_ours_and_opens_as_hubert(tmp_path: Path) -> None:
    SSLFeatureExtractor.random_tiny(hidden=32).model.save_pretrained(tmp_path / "hubert")
    assert not is_content_encoder_dir(tmp_path / "hubert")
    assert isinstance(open_content_encoder(tmp_path / "hubert"), SSLFeatureExtractor)
    with pytest.raises(ModelNotFoundError, match="gsv-content-encoder"):
        read_content_encoder_config(tmp_path / "hubert")


@pytest.mark.parametrize("content", ["not json", '["a list"]', '{"format": "other"}'])
def test_odd_config_files_are_not_taken_for_ours(tmp_path: Path, content: str) -> None:
    (tmp_path / "config.json").write_text(content)
    assert not is_content_encoder_dir(tmp_path)
    assert not is_content_encoder_dir(tmp_path / "absent")


def test_open_gives_the_saved_encoder_with_its_statistics(tmp_path: Path) -> None:
    model = ContentFeatureExtractor.random_tiny(hidden=32, seed=2).model
    model.mel_std.fill_(2.0)
    save_content_encoder(model, tmp_path / "enc", extra={"centroids": torch.zeros(4, 32)})
    saved = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert saved["format"] == "gsv-content-encoder" and saved["mel_std"] == [2.0] * tiny_config().n_mels
    loaded = open_content_encoder(tmp_path / "enc")
    assert isinstance(loaded, ContentFeatureExtractor) and loaded.name == "tiny-content"
    wav = torch.randn(1, 6400) * 0.1
    torch.testing.assert_close(loaded(wav), ContentFeatureExtractor(model)(wav))
    assert (tmp_path / "enc" / "targets.safetensors").is_file()


def test_training_module_re_exports_the_core_objects() -> None:
    import gpt_sovits.content_encoder as core
    import training.content_encoder as train

    for name in ("ContentEncoder", "ContentEncoderConfig", "ContentEncoderError", "ContentFeatureExtractor",
                 "save_content_encoder", "load_content_encoder", "is_content_encoder_dir", "open_content_encoder",
                 "tiny_config", "sovits_config_for", "ENCODER_FORMAT"):
        assert getattr(train, name) is getattr(core, name), name


def test_core_package_never_imports_training() -> None:
    """gpt_sovits is the runtime: it must work without the training package (and its extras)."""
    offenders = []
    for path in Path(gpt_sovits.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "training" or n.startswith("training.")]
    assert offenders == []
