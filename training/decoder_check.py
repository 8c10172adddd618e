"""`gsv eval-decoder`: which half of SoVITS loses the words?

For prepared utterances (a `gsv prepare` dataset) the recogniser scores three versions:

- `original`: the recording itself (the recogniser's floor on these voices);
- `posterior`: linear spectrogram -> posterior encoder `enc_q` -> generator (`dec`). No tokens
  are involved: this is an autoencoder of the recording, so its errors belong to the generator;
- `tokens`: the utterance's own semantic tokens + phones -> text encoder, flow, generator (what
  synthesis does with perfect GPT output).

If `posterior` is far above `original`, training the generator longer is the only fix; if
`posterior` is near `original` and `tokens` is not, the token path (content encoder, quantizer,
text encoder, flow) is the weak part. `gsv eval` measures the whole chain including the GPT.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from gpt_sovits.audio import resample
from training.dataset import DatasetDir
from training.evaluate import EvalError, Recognizer, text_errors

PATHS = ("original", "posterior", "tokens")


@dataclass
class DecoderRow:
    id: str
    text: str
    hypotheses: dict[str, str]
    errors: dict[str, int]
    words: int


@dataclass
class DecoderCheck:
    dataset: str
    sovits: str
    recognizer: str
    rows: list[DecoderRow] = field(default_factory=list)

    def rates(self) -> dict[str, float]:
        words = sum(r.words for r in self.rows)
        return {p: sum(r.errors[p] for r in self.rows) / max(1, words) for p in PATHS}

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "sovits": self.sovits, "recognizer": self.recognizer,
                "error_rates": self.rates(), "rows": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        rates = self.rates()
        words = sum(r.words for r in self.rows)
        return "\n".join([f"{'path':<10} {'err':>6}   ({len(self.rows)} utterances, {words} words, {self.recognizer})",
                          *(f"{p:<10} {rates[p]:>6.2f}" for p in PATHS)])


def pick_items(dataset: DatasetDir, lang: str, n: int) -> list:
    """`n` utterances of `lang`, evenly spaced through the manifest (so several speakers appear)."""
    items = [it for it in dataset.require_items() if it.lang == lang]
    if not items:
        raise EvalError(f"No '{lang}' utterance in '{dataset.root}'.", code="no_items")
    step = max(1, len(items) // max(1, n))
    return items[::step][:n]


@torch.inference_mode()
def check_decoder(sovits_path: Path, dataset_dir: Path, recognizer: Recognizer, n: int = 12, lang: str = "en",
                  noise_scale: float = 0.5, seed: int = 0) -> DecoderCheck:
    """Score the original, posterior and token paths of `n` prepared utterances (see module doc)."""
    from gpt_sovits.checkpoint import load_sovits

    if not recognizer.supports(lang):
        raise EvalError(f"The recogniser '{recognizer.name}' does not support '{lang}'.", code="unsupported_language")
    # a file without enc_q (fine-tuned outputs drop it) is refused by the loader with a clear message
    model, cfg = load_sovits(sovits_path, with_posterior=True)
    model = model.float().eval()
    dataset = DatasetDir(dataset_dir)
    generator = torch.Generator().manual_seed(seed)
    out = DecoderCheck(str(dataset_dir), str(sovits_path), recognizer.name)
    for item in pick_items(dataset, lang, n):
        feats = dataset.load_features(item)
        spec = feats["spec"][None].float()
        style = model.style(spec)
        assert model.enc_q is not None
        _, mean, _, _ = model.enc_q(spec, torch.tensor([spec.shape[-1]]), g=style)
        original, original_sr = sf.read(dataset.root / item.wav, dtype="float32")
        audio = {
            "original": (original, original_sr),
            "posterior": (model.dec(mean, g=style)[0, 0].numpy(), cfg.sampling_rate),
            "tokens": (model.decode(feats["semantic"][None, None], feats["phones"][None], style,
                                   noise_scale=noise_scale, generator=generator)[0, 0].numpy(), cfg.sampling_rate),
        }
        hyps, errs, words = {}, {}, 0
        for path, (wav, sr) in audio.items():
            hyps[path] = recognizer.transcribe(resample(np.asarray(wav, np.float32), sr, 16000), lang)
            count = text_errors(item.text, hyps[path], lang)
            errs[path], words = count.errors, count.length
        out.rows.append(DecoderRow(item.id, item.text, hyps, errs, words))
    return out


def write_check(check: DecoderCheck, path: Path) -> None:
    Path(path).write_text(json.dumps(check.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
