"""The committed base snapshot (models/snapshots/gsv-base-phone1) loads through our folder layout
and synthesizes from an aligned prompt and reference-free: the weights in the repository are
usable, not just present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SNAPSHOT = Path(__file__).resolve().parents[2] / "models" / "snapshots" / "gsv-base-phone1"

pytest.importorskip("pocketsphinx")


@pytest.mark.skipif(not (SNAPSHOT / "sovits.safetensors").is_file(), reason="snapshot not in this checkout")
def test_snapshot_loads_and_speaks_for_the_text_length(voices_dir: Path) -> None:
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.pipeline import SynthesisParams, Synthesizer, VoicePrompt

    bundle = ModelBundle.from_models_dir(SNAPSHOT)
    assert bundle.content_encoder == "gsv-phone-align-v1" and bundle.sovits_config.generator == "istft"
    assert bundle.sovits.enc_q is None  # the inference loader drops the training-only posterior
    assert (SNAPSHOT / "MODEL_CARD.md").read_text().startswith("# gsv-base-phone1")
    ref, sr = sf.read(voices_dir / "en_slt" / "ref.flac", dtype="float32")
    text = (voices_dir / "en_slt" / "ref.txt").read_text().strip()
    params = SynthesisParams(top_k=1, noise_scale=0.0, seed=1, text_lang="en", repetition_penalty=1.0)
    synth = Synthesizer(bundle)
    for voice in (VoicePrompt.from_audio(bundle, ref, sr, text, "en"), VoicePrompt.from_audio(bundle, ref, sr)):
        audio = synth.synthesize("Please close the door when you leave.", voice, params)
        seconds = len(audio) / bundle.sample_rate
        assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01
        assert 0.5 < seconds < 8.0  # a trained duration model, not an empty or runaway decode
