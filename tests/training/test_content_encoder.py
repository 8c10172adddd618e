"""Content encoder: HuBERT-compatible shapes and frame rate, save/load, pseudo-label training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gpt_sovits.audio import load_audio
from gpt_sovits.config import SoVITSConfig
from gpt_sovits.errors import ModelNotFoundError
from gpt_sovits.features import SSLFeatureExtractor, ssl_frame_count
from training.content_encoder import (
    ContentEncoder,
    ContentEncoderError,
    ContentFeatureExtractor,
    PseudoLabelConfig,
    assign_clusters,
    kmeans,
    make_labels,
    masked_prediction_loss,
    mfcc_features,
    open_content_encoder,
    sample_batch,
    save_content_encoder,
    sovits_config_for,
    span_mask,
    tiny_config,
    train_content_encoder,
)


@pytest.fixture(scope="module")
def wavs16k(voices_dir: Path) -> list[np.ndarray]:
    paths = sorted((voices_dir / "en_allison" / "utts").glob("*.flac"))[:3]
    return [load_audio(p, target_sr=16000)[0] for p in paths]


@pytest.mark.parametrize("n_samples", [400, 719, 720, 16000, 16321])
def test_output_shape_matches_hubert_frame_count(n_samples: int) -> None:
    ours = ContentFeatureExtractor.random_tiny(hidden=32)
    hubert = SSLFeatureExtractor.random_tiny(hidden=32)
    wav = torch.randn(2, n_samples) * 0.1
    out = ours(wav)
    assert out.shape == (2, 32, ssl_frame_count(n_samples))
    assert out.shape == hubert(wav).shape  # drop-in: same [B, D, T50] as HuBERT
    assert torch.isfinite(out).all()


def test_frame_rate_is_50hz_and_local() -> None:
    """Two seconds give 99 frames (as HuBERT), and a click at 1.0 s lands on frame ~50."""
    ext = ContentFeatureExtractor.random_tiny(hidden=32)
    wav = torch.zeros(1, 32000)
    assert ext(wav).shape[-1] == 99  # HuBERT: (32000 - 400) // 320 + 1
    clicked = wav.clone()
    clicked[0, 16000] = 1.0
    diff = (ext(clicked) - ext(wav)).abs().sum(dim=1)[0]
    assert diff.argmax().item() in range(48, 52)
    with torch.no_grad():  # before attention the features are local: far frames do not move at all
        local = (ext.model.frontend(clicked) - ext.model.frontend(wav)).abs().sum(dim=2)[0]
    assert local[:45].max() == 0 and local[56:].max() == 0 and local[49:51].min() > 0


def test_too_short_and_bad_shape_raise() -> None:
    ext = ContentFeatureExtractor.random_tiny()
    with pytest.raises(ContentEncoderError, match="too short"):
        ext(torch.zeros(1, 399))
    with pytest.raises(ContentEncoderError, match=r"\[B, samples\]"):
        ext(torch.zeros(1, 1, 1600))


def test_save_load_roundtrip_and_dispatch(tmp_path: Path) -> None:
    ext = ContentFeatureExtractor.random_tiny(hidden=32, seed=3)
    ext.model.mel_mean.fill_(0.5)
    save_content_encoder(ext.model, tmp_path / "enc")
    loaded = open_content_encoder(tmp_path / "enc")
    assert isinstance(loaded, ContentFeatureExtractor)
    wav = torch.randn(1, 8000) * 0.1
    torch.testing.assert_close(loaded(wav), ext(wav))
    assert float(loaded.model.mel_mean[0]) == 0.5


def test_missing_encoder_dir_says_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"format": "gsv-content-encoder"}')
    with pytest.raises(ModelNotFoundError, match="model.safetensors"):
        ContentFeatureExtractor.from_pretrained(tmp_path)


def test_sovits_config_names_the_encoder() -> None:
    cfg = sovits_config_for(tiny_config(48), SoVITSConfig())
    assert cfg.ssl_dim == 48
    assert cfg.content_encoder == "tiny-content"
    assert SoVITSConfig().content_encoder == "chinese-hubert-base"  # official users unaffected


def test_mfcc_features_align_with_frames(wavs16k: list[np.ndarray]) -> None:
    feats = mfcc_features(wavs16k[0])
    assert feats.shape == (ssl_frame_count(len(wavs16k[0])), 39)
    np.testing.assert_allclose(feats.mean(0), 0.0, atol=1e-3)


def test_kmeans_recovers_separated_clusters() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.3 * torch.randn(50, 2, generator=gen) for c in centres])
    found = kmeans(points, 3, iters=10, seed=1)
    labels = assign_clusters(points, found)
    # every true cluster maps onto exactly one found cluster
    assert {tuple(labels[i * 50:(i + 1) * 50].unique().tolist()) for i in range(3)} == {(a,) for a in labels.unique().tolist()}
    with pytest.raises(ContentEncoderError, match="at least k"):
        kmeans(points[:2], 3)


def test_span_mask_covers_spans() -> None:
    mask = span_mask(4, 100, prob=0.05, length=10, gen=torch.Generator().manual_seed(0))
    assert mask.shape == (4, 100)
    assert mask.any(dim=1).all()
    assert 0.1 < mask.float().mean() < 0.9


def test_batches_keep_labels_aligned(wavs16k: list[np.ndarray]) -> None:
    cfg = PseudoLabelConfig(batch_size=3, crop_seconds=1.0, n_clusters=8, kmeans_iters=3)
    data = make_labels(wavs16k, cfg)
    assert [len(lab) for lab in data.labels] == [ssl_frame_count(len(w)) for w in data.wavs]
    wav, labels = sample_batch(data, cfg, torch.Generator().manual_seed(0))
    assert labels.shape == (3, 50) and ssl_frame_count(wav.shape[1]) == 50
    assert labels.max() < 8


def test_pseudo_label_training_lowers_the_loss(wavs16k: list[np.ndarray]) -> None:
    cfg = PseudoLabelConfig(steps=25, batch_size=3, crop_seconds=1.0, lr=3e-3, warmup_steps=3, n_clusters=12,
                            kmeans_iters=8, seed=0)
    data = make_labels(wavs16k, cfg)
    gen = torch.Generator().manual_seed(123)
    wav, labels = sample_batch(data, cfg, gen)
    mask = span_mask(wav.shape[0], labels.shape[1], cfg.mask_prob, cfg.mask_length, gen)
    result = train_content_encoder(wavs16k, tiny_config(32), cfg)
    before_model = ContentEncoder(result.model.cfg)  # same statistics, untrained weights
    before_model.load_state_dict({k: v for k, v in result.model.state_dict().items() if k.startswith("mel_")}, strict=False)
    before_head = torch.nn.Linear(32, cfg.n_clusters)
    with torch.no_grad():
        before = masked_prediction_loss(before_model.eval(), before_head, wav, labels, mask)
        after = masked_prediction_loss(result.model, result.head, wav, labels, mask)
    assert len(result.losses) == 25 and all(np.isfinite(result.losses))
    assert after < before - 0.15, (float(before), float(after))
    assert result.centroids.shape == (12, 39)


def test_next_iteration_clusters_the_teacher_layer(wavs16k: list[np.ndarray]) -> None:
    teacher = ContentFeatureExtractor.random_tiny(hidden=32).model
    cfg = PseudoLabelConfig(n_clusters=6, kmeans_iters=3, label_layer=1)
    data = make_labels(wavs16k, cfg, teacher=teacher)
    assert data.centroids.shape == (6, 32)  # clusters live in the encoder's feature space
    assert [len(lab) for lab in data.labels] == [ssl_frame_count(len(w)) for w in data.wavs]
    with pytest.raises(ContentEncoderError, match="--init"):
        make_labels(wavs16k, cfg)
