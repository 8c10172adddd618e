"""HuBERT / BERT feature extractors on tiny random models (offline)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_sovits.errors import ModelNotFoundError
from gpt_sovits.features import (
    BertAlignmentError,
    BertFeatureExtractor,
    SSLFeatureExtractor,
    ssl_frame_count,
)


@pytest.fixture(scope="module")
def ssl() -> SSLFeatureExtractor:
    return SSLFeatureExtractor.random_tiny(hidden=32, seed=0)


@pytest.fixture(scope="module")
def bert() -> BertFeatureExtractor:
    return BertFeatureExtractor.random_tiny(hidden=32, seed=0)


# ------------------------------------------------------------------------------------- HuBERT


@pytest.mark.parametrize("n,frames", [(399, 0), (400, 1), (16000, 49), (16320, 50), (80000 + 9600, 279)])
def test_ssl_frame_count_known_values(n: int, frames: int) -> None:
    # 89600 = a 5 s prompt plus the official 9600-sample pad, measured as 279 frames upstream.
    assert ssl_frame_count(n) == frames


@pytest.mark.parametrize("n", [400, 1234, 16000, 48000])
def test_ssl_output_shape_matches_frame_count(ssl: SSLFeatureExtractor, n: int) -> None:
    out = ssl(torch.randn(2, n))
    assert out.shape == (2, 32, ssl_frame_count(n))
    assert ssl.model.config.hidden_size == ssl.hidden_size == 32
    assert torch.isfinite(out).all()


def test_ssl_batch_items_are_independent_and_1d_is_accepted(ssl: SSLFeatureExtractor) -> None:
    wav = torch.randn(2, 8000)
    batch = ssl(wav)
    torch.testing.assert_close(batch[1:], ssl(wav[1]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


def test_ssl_feeds_raw_waveform_without_normalisation(ssl: SSLFeatureExtractor) -> None:
    """The official call sites run `model(wav)` on the raw waveform: no zero-mean/unit-variance step,
    no padding, `last_hidden_state` channels-first."""
    wav = torch.randn(1, 8000) * 0.3 + 0.2
    with torch.no_grad():
        direct = ssl.model(wav).last_hidden_state.transpose(1, 2)
    torch.testing.assert_close(ssl(wav), direct)


def test_ssl_rejects_short_and_badly_shaped_input(ssl: SSLFeatureExtractor) -> None:
    with pytest.raises(ValueError, match="too short"):
        ssl(torch.randn(1, 100))
    with pytest.raises(ValueError, match="B, samples"):
        ssl(torch.randn(1, 1, 1000))


def test_random_tiny_is_seeded() -> None:
    a = SSLFeatureExtractor.random_tiny(seed=3)
    b = SSLFeatureExtractor.random_tiny(seed=3)
    wav = torch.randn(1, 4000)
    torch.testing.assert_close(a(wav), b(wav))


def test_ssl_loads_official_layout_with_old_weight_norm_keys(ssl: SSLFeatureExtractor, tmp_path: Path) -> None:
    """chinese-hubert-base ships pytorch_model.bin with weight_g/weight_v for the positional conv."""
    ssl.model.config.save_pretrained(tmp_path)
    renamed = {
        key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): value
        for key, value in ssl.model.state_dict().items()
    }
    assert any(key.endswith("weight_g") for key in renamed)
    torch.save(renamed, tmp_path / "pytorch_model.bin")
    loaded = SSLFeatureExtractor.from_pretrained(tmp_path)
    wav = torch.randn(1, 6000)
    torch.testing.assert_close(loaded(wav), ssl(wav))


def test_ssl_missing_directory_error(tmp_path: Path) -> None:
    missing = tmp_path / "chinese-hubert-base"
    with pytest.raises(ModelNotFoundError) as info:
        SSLFeatureExtractor.from_pretrained(missing)
    message = str(info.value)
    assert str(missing) in message and "chinese-hubert-base" in message and "config.json" in message
    assert isinstance(info.value, FileNotFoundError) and info.value.code == "model_not_found"
    missing.mkdir()
    (missing / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError) as info:
        SSLFeatureExtractor.from_pretrained(missing)
    assert info.value.missing == ["model.safetensors or pytorch_model.bin"]


# --------------------------------------------------------------------------------------- BERT


def test_bert_expands_characters_to_phones(bert: BertFeatureExtractor) -> None:
    text = "你好,世界。"
    word2ph = [2, 2, 1, 2, 2, 1]
    feats = bert(text, word2ph)
    assert feats.shape == (32, sum(word2ph))
    # Column blocks: char 0 -> cols 0,1; char 1 -> 2,3; ',' -> 4; ...
    starts = [0, 2, 4, 5, 7, 9]
    for start, count in zip(starts, word2ph):
        for k in range(1, count):
            torch.testing.assert_close(feats[:, start + k], feats[:, start])
    assert not torch.allclose(feats[:, 0], feats[:, 2])


def test_bert_zero_phone_characters_are_dropped(bert: BertFeatureExtractor) -> None:
    full = bert("你好", [1, 1])
    partial = bert("你好", [0, 3])
    assert partial.shape == (32, 3)
    torch.testing.assert_close(partial[:, 0], full[:, 1])


def test_bert_uses_third_from_last_hidden_state(bert: BertFeatureExtractor) -> None:
    """hidden_states[-3] of a 4-layer model is the output of layer 2: the last two layers must not matter,
    layer 2 must."""
    text, word2ph = "今天天气很好。", [2, 2, 2, 2, 2, 2, 1]
    reference = bert(text, word2ph)
    tweaked = BertFeatureExtractor.random_tiny(seed=0)
    layers = tweaked.model.bert.encoder.layer
    with torch.no_grad():
        for layer in layers[2:]:
            for param in layer.parameters():
                param.add_(torch.randn_like(param))
    torch.testing.assert_close(tweaked(text, word2ph), reference)
    with torch.no_grad():
        for param in layers[1].parameters():
            param.add_(torch.randn_like(param))
    assert not torch.allclose(tweaked(text, word2ph), reference)


def test_bert_alignment_errors(bert: BertFeatureExtractor) -> None:
    with pytest.raises(BertAlignmentError, match="word2ph has 1 entries"):
        bert("你好", [2])
    with pytest.raises(BertAlignmentError, match="one token per character"):
        bert("ab好", [1, 1, 2])  # "ab" is one word-piece token, not two
    with pytest.raises(BertAlignmentError):
        bert("你好", [2, -1])
    with pytest.raises(BertAlignmentError, match="split it"):
        bert("好" * 511, [2] * 511)


def test_bert_round_trip_and_missing_files(bert: BertFeatureExtractor, tmp_path: Path) -> None:
    bert.model.save_pretrained(tmp_path)
    with pytest.raises(ModelNotFoundError) as info:
        BertFeatureExtractor.from_pretrained(tmp_path)
    assert info.value.missing == ["tokenizer.json or vocab.txt"]
    assert "chinese-roberta-wwm-ext-large" in str(info.value)
    bert.tokenizer.save_pretrained(tmp_path)
    loaded = BertFeatureExtractor.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded("你好。", [2, 2, 1]), bert("你好。", [2, 2, 1]))
    with pytest.raises(ModelNotFoundError):
        BertFeatureExtractor.from_pretrained(tmp_path / "absent")
