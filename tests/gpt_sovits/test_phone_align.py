"""Phone-aligned semantic tokens: alignment, features that quantize to the aligned codes, and a
tiny base on the aligner that clones and synthesizes like any other."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from gpt_sovits.audio import resample
from gpt_sovits.features import ssl_frame_count
from gpt_sovits.phone_align import (
    PHONES,
    PhoneAlignConfig,
    PhoneAlignError,
    PhoneAlignFeatureExtractor,
    is_aligner_dir,
    phone_token_sovits_config,
    tokens_from_labels,
)

pytest.importorskip("pocketsphinx")


@pytest.fixture(scope="module")
def slt(voices_dir: Path) -> tuple[np.ndarray, str]:
    wav, sr = sf.read(voices_dir / "en_slt" / "ref.flac", dtype="float32")
    return resample(wav, sr, 16000), (voices_dir / "en_slt" / "ref.txt").read_text().strip()


@pytest.fixture(scope="module")
def extractor() -> PhoneAlignFeatureExtractor:
    return PhoneAlignFeatureExtractor()


def _phone_runs(tokens: np.ndarray) -> list[str]:
    """Phones in order, repeats collapsed, silence dropped."""
    out: list[str] = []
    for t in tokens:
        p = PHONES[int(t) // 3]
        if p != "SIL" and (not out or out[-1] != p):
            out.append(p)
    return out


def test_token_centres() -> None:
    labels = np.arange(20)
    # 3200 samples = 0.2 s: HuBERT gives 9 frames at 50 Hz -> 4 tokens at 25 Hz, centres 2, 6, 10, 14
    assert tokens_from_labels(labels, 3200).tolist() == [2, 6, 10, 14]
    assert tokens_from_labels(np.zeros(0, dtype=np.int64), 3200).tolist() == [0, 0, 0, 0]


def test_alignment_follows_the_transcript(extractor: PhoneAlignFeatureExtractor, slt) -> None:
    wav, text = slt
    tokens = extractor.tokens(wav, text)
    assert len(tokens) == ssl_frame_count(len(wav)) // 2
    assert tokens.min() >= 0 and tokens.max() < 120
    runs = _phone_runs(tokens)
    # "The weather was so nice ..." starts DH AH W EH DH ER; "... in the park" ends P AA R K
    assert runs[:4] == ["DH", "AH", "W", "EH"]
    assert runs[-4:] == ["P", "AA", "R", "K"]
    # every word is there: the collapsed phone sequence is about as long as the pronunciation
    expected = [p for w in extractor.aligner.words(text) for p in _dict_phones(extractor, w)]
    assert 0.8 * len(expected) <= len(runs) <= len(expected)
    # states run 0 -> 1 -> 2 inside a phone, never backwards
    for a, b in zip(tokens[:-1], tokens[1:]):
        if a // 3 == b // 3:
            assert b % 3 >= a % 3


def _dict_phones(extractor: PhoneAlignFeatureExtractor, word: str) -> list[str]:
    return extractor.aligner._decoder.lookup_word(word).split()


def test_the_same_sentence_aligns_alike_for_two_voices(extractor: PhoneAlignFeatureExtractor, voices_dir: Path,
                                                       slt) -> None:
    """Speaker independence: the tokens of one sentence read by another voice share the phone
    sequence (what the self-supervised encoders could not do)."""
    wav, text = slt
    other, sr = sf.read(voices_dir / "en_allison" / "ref.flac", dtype="float32")
    other_text = (voices_dir / "en_allison" / "ref.txt").read_text().strip()
    a = _phone_runs(extractor.tokens(wav, text))
    b = _phone_runs(extractor.tokens(resample(other, sr, 16000), other_text))
    assert a != b  # different sentences give different phones ...
    again = _phone_runs(extractor.tokens(wav * 0.3, text))  # ... the same one at another level the same
    assert again == a


def test_features_quantize_to_the_aligned_codes(extractor: PhoneAlignFeatureExtractor, slt) -> None:
    from training.base_init import init_aligned_base_sovits

    wav, text = slt
    feats = extractor(torch.from_numpy(wav)[None], [text])
    assert feats.shape[:2] == (1, 120)
    assert torch.equal(feats.sum(1), torch.ones(1, feats.size(2)))
    cfg = json.loads((Path(__file__).resolve().parents[2] / "configs" / "sovits_tiny.json").read_text())
    from gpt_sovits.config import SoVITSConfig

    sovits_cfg = phone_token_sovits_config(extractor.cfg, SoVITSConfig.from_dict(cfg))
    model = init_aligned_base_sovits(sovits_cfg)
    codes = model.extract_latent(feats)[0, 0].numpy()
    assert codes.tolist() == extractor.tokens(wav, text).tolist()


def test_a_transcript_is_required(extractor: PhoneAlignFeatureExtractor) -> None:
    wav = torch.zeros(1, 16000)
    with pytest.raises(PhoneAlignError) as err:
        extractor(wav)
    assert err.value.code == "transcript_required"
    with pytest.raises(PhoneAlignError, match="no English words"):
        extractor(wav, ["!!! ..."])
    with pytest.raises(PhoneAlignError, match="2 transcripts"):
        extractor(wav, ["one", "two"])


def test_unknown_words_get_a_pronunciation(extractor: PhoneAlignFeatureExtractor) -> None:
    words = extractor.aligner.words("Zorbleflax met Gwendolyn at 5.")
    assert words[0] == "zorbleflax" and "five" in words
    assert extractor.aligner._decoder.lookup_word("zorbleflax")


def test_folder_round_trip(tmp_path: Path) -> None:
    from gpt_sovits.content_encoder import open_content_encoder

    cfg = PhoneAlignConfig(name="aligner-x")
    PhoneAlignFeatureExtractor(cfg).save(tmp_path)
    assert is_aligner_dir(tmp_path) and not is_aligner_dir(tmp_path / "nope")
    opened = open_content_encoder(tmp_path)
    assert isinstance(opened, PhoneAlignFeatureExtractor)
    assert dataclasses.asdict(opened.cfg) == dataclasses.asdict(cfg) and opened.hidden_size == 120


def test_a_base_on_the_aligner_clones_and_synthesizes(tmp_path: Path, voices_dir: Path, slt) -> None:
    """base_init --phone-aligner -> bundle: prompt tokens are the aligned codes, synthesis runs."""
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.config import GPTConfig, SoVITSConfig
    from gpt_sovits.pipeline import SynthesisParams, Synthesizer, VoicePrompt
    from training.base_init import main as base_init

    configs = Path(__file__).resolve().parents[2] / "configs"
    sovits = phone_token_sovits_config(PhoneAlignConfig(), SoVITSConfig.load(configs / "sovits_tiny.json"))
    gpt = dataclasses.replace(GPTConfig.load(configs / "gpt_tiny.json"), vocab_size=121, eos=120)
    sovits.save(tmp_path / "sovits_cfg.json")
    gpt.save(tmp_path / "gpt_cfg.json")
    assert base_init(["--gpt-config", str(tmp_path / "gpt_cfg.json"), "--sovits-config",
                      str(tmp_path / "sovits_cfg.json"), "--phone-aligner", "--out", str(tmp_path / "base")]) == 0
    base = tmp_path / "base"
    bundle = ModelBundle.from_paths(base / "gpt.safetensors", base / "sovits.safetensors", base / "hubert")
    assert isinstance(bundle.ssl, PhoneAlignFeatureExtractor)
    # our folder layout takes the aligner's hubert/ (config only) as a complete model
    from gpt_sovits.models_dir import resolve_models_dir

    assert resolve_models_dir(base).hubert_dir == base / "hubert"
    assert ModelBundle.from_models_dir(base).content_encoder == "gsv-phone-align-v1"
    ref, sr = sf.read(voices_dir / "en_slt" / "ref.flac", dtype="float32")
    voice = VoicePrompt.from_audio(bundle, ref, sr, slt[1], "en")
    # the prompt's tokens are the clip's own alignment, as prepare makes them for training
    # prompts (no HuBERT-style silence padding)
    assert voice.prompt_tokens.tolist() == PhoneAlignFeatureExtractor().tokens(resample(ref, sr, 16000), slt[1]).tolist()
    free = VoicePrompt.from_audio(bundle, ref, sr)  # no transcript: reference-free, no alignment
    assert free.ref_free
    audio = Synthesizer(bundle).synthesize(
        "Good morning.", voice, SynthesisParams(top_k=1, noise_scale=0.0, seed=3, text_lang="en",
                                                max_tokens_per_phone=3.0))
    assert audio.dtype == np.float32 and len(audio) > 0 and np.isfinite(audio).all()
    # a config naming the phone grammar: every segment decodes as a walk through its phones,
    # unless the request turns it off
    from gpt_sovits.grammar import PhoneGrammar

    walking = Synthesizer(dataclasses.replace(bundle, gpt_config=dataclasses.replace(gpt, decode_grammar="phones")))
    params = SynthesisParams(noise_scale=0.0, seed=3, text_lang="en", max_tokens_per_phone=3.0)
    seg = walking.segments("Good morning.", params)[0]
    grammar = walking._request(seg, voice, params).grammar
    assert isinstance(grammar, PhoneGrammar) and len(grammar.phones) == 9  # G UH D M AO R N IH NG
    assert walking._request(seg, voice, dataclasses.replace(params, grammar=False)).grammar is None
    tokens = walking.decoder.generate([walking._request(seg, voice, params)], [params.sampling(3, 60, gpt)])[0]
    state = grammar.start()
    for t in tokens.tolist():
        assert t in grammar.allowed(state)
        state = grammar.advance(state, t)


def test_audio_too_short_for_its_transcript_is_a_clear_error(extractor: PhoneAlignFeatureExtractor, slt) -> None:
    """pocketsphinx finds no path (0.3 s for a dozen words): an alignment_failed error that a
    prepare run records as a rejected item, never a crash."""
    with pytest.raises(PhoneAlignError, match="could not align") as err:
        extractor.tokens(np.zeros(4800, dtype=np.float32), "the quick brown fox jumps over the lazy dog again and again")
    assert err.value.code == "alignment_failed"
    # the aligner still works after a failure (the decoder is reused)
    wav, text = slt
    assert _phone_runs(extractor.tokens(wav, text))[:4] == ["DH", "AH", "W", "EH"]
