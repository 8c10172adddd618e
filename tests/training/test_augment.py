from __future__ import annotations

import numpy as np
import pytest

from training.augment import VoicePerturbation, scale_frequencies

SR = 16000


def _tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def _peak_hz(wav: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(wav)))) * SR / len(wav)


def test_scaling_moves_every_frequency_and_the_duration() -> None:
    wav = _tone(200.0) + _tone(1000.0) * 0.5
    up = scale_frequencies(wav, 1.1)
    assert len(up) == pytest.approx(SR / 1.1, abs=2)
    assert _peak_hz(up) == pytest.approx(220.0, abs=2)
    spectrum = np.abs(np.fft.rfft(up))
    second = np.argsort(spectrum)[-1:-20:-1] * SR / len(up)
    assert any(abs(f - 1100.0) < 3 for f in second)
    assert np.array_equal(scale_frequencies(wav, 1.0), wav)


def test_perturbation_keeps_level_is_seeded_and_can_be_off() -> None:
    wav = _tone(300.0, 2.0)
    rms = float(np.sqrt(np.mean(wav ** 2)))
    perturb = VoicePerturbation(prob=1.0)
    outs = [perturb(wav, np.random.default_rng(seed)) for seed in range(8)]
    lengths = {len(o) for o in outs}
    assert len(lengths) > 1 and all(2 * SR / 1.18 - 2 <= n <= 2 * SR / 0.85 + 2 for n in lengths)
    for out in outs:
        assert out.dtype == np.float32 and np.abs(out).max() <= 1.0
        assert float(np.sqrt(np.mean(out ** 2))) == pytest.approx(rms, rel=0.05)
    again = perturb(wav, np.random.default_rng(3))
    assert np.array_equal(again, outs[3])
    assert np.array_equal(VoicePerturbation(prob=0.0)(wav, np.random.default_rng(0)), wav)


@pytest.mark.parametrize("kwargs", [{"prob": 1.5}, {"scale_min": 1.2, "scale_max": 1.1}, {"tilt_max": 1.0},
                                    {"snr_min_db": 40.0, "snr_max_db": 30.0}])
def test_bad_settings_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        VoicePerturbation(**kwargs)
