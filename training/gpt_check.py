"""`gsv eval-gpt`: how close does the GPT come to the true tokens of held-out speech?

`gsv eval-decoder` scores SoVITS on perfect tokens; this scores the GPT alone, without audio or a
recogniser. For prepared utterances (a `gsv prepare` dataset) the GPT decodes each transcript's
phones, reference-free, and its tokens are compared with the utterance's own:

- `unit error rate`: edit distance between the two sequences after collapsing repeats (so
  durations do not count), divided by the true length. With a phone-aligner content encoder
  (`--aligner`), units are phones: a token's code maps to its phone and silence is dropped,
  which makes this a phone error rate of the GPT's output.
- `length ratio`: generated tokens / true tokens (durations: 1.0 is the speaker's own pace).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from training.dataset import DatasetDir
from training.decoder_check import pick_items

if TYPE_CHECKING:
    from gpt_sovits.phone_align import PhoneAlignConfig


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            above = row[j]
            row[j] = min(above + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1]))
            diagonal = above
    return row[len(b)]


@dataclass(frozen=True)
class UnitMap:
    """Token code -> comparison unit: `code // group`, with units in `drop` (silence) removed."""

    group: int = 1
    drop: frozenset[int] = frozenset()

    @classmethod
    def from_aligner(cls, directory: Path) -> "UnitMap":
        from gpt_sovits.phone_align import read_aligner_config

        cfg = read_aligner_config(directory)
        return cls(cfg.n_states, frozenset(i for i, p in enumerate(cfg.phones) if p == "SIL"))

    def units(self, tokens: list[int]) -> list[int]:
        out: list[int] = []
        for token in tokens:
            unit = token // self.group
            if unit not in self.drop and (not out or out[-1] != unit):
                out.append(unit)
        return out


@dataclass
class GptRow:
    id: str
    text: str
    true_tokens: int
    tokens: int
    errors: int
    units: int


@dataclass
class GptCheck:
    dataset: str
    gpt: str
    unit: str
    sampling: dict[str, float]
    rows: list[GptRow] = field(default_factory=list)

    def error_rate(self) -> float:
        return sum(r.errors for r in self.rows) / max(1, sum(r.units for r in self.rows))

    def length_ratios(self) -> list[float]:
        return [r.tokens / max(1, r.true_tokens) for r in self.rows]

    def to_json(self) -> dict:
        ratios = self.length_ratios()
        return {"dataset": self.dataset, "gpt": self.gpt, "unit": self.unit, "sampling": self.sampling,
                "error_rate": self.error_rate(), "length_ratio_mean": sum(ratios) / max(1, len(ratios)),
                "rows": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        ratios = sorted(self.length_ratios())
        mean = sum(ratios) / max(1, len(ratios))
        return "\n".join([
            f"{len(self.rows)} utterances, reference-free, {self.sampling}",
            f"{self.unit} error rate   {self.error_rate():.3f}   (repeats collapsed: durations do not count)",
            f"length ratio       {mean:.2f} mean, {ratios[0]:.2f}-{ratios[-1]:.2f}   (generated / true tokens)",
        ])


@torch.inference_mode()
def check_gpt(gpt_path: Path, dataset_dir: Path, n: int = 20, lang: str = "en", units: UnitMap | None = None,
              top_k: int | None = None, repetition_penalty: float | None = None, temperature: float = 1.0,
              max_tokens_per_phone: float = 8.0, seed: int = 0,
              grammar: "PhoneAlignConfig | None" = None) -> GptCheck:
    """Decode `n` prepared utterances' phones with the GPT and compare with their own tokens.

    `grammar`: decode under the phone grammar of this aligner's table (`gpt_sovits.grammar`),
    as the service does for a model whose config sets `decode_grammar`."""
    from gpt_sovits.checkpoint import load_gpt
    from gpt_sovits.engine import DecodeRequest, Decoder
    from gpt_sovits.grammar import PhoneGrammar
    from gpt_sovits.pipeline import SynthesisParams
    from gpt_sovits.text.symbols import symbols as symbol_table

    model, cfg = load_gpt(gpt_path)
    decoder = Decoder(model)
    units = units or UnitMap()
    dataset = DatasetDir(dataset_dir)
    params = SynthesisParams(top_k=top_k, repetition_penalty=repetition_penalty, temperature=temperature)
    probe = params.sampling(seed, model=cfg)
    out = GptCheck(str(dataset_dir), str(gpt_path), "phone" if units.group > 1 or units.drop else "token",
                   {"top_k": probe.top_k, "repetition_penalty": probe.repetition_penalty, "temperature": temperature,
                    "grammar": grammar is not None})
    symbols = symbol_table("v2")
    for i, item in enumerate(pick_items(dataset, lang, n)):
        feats = dataset.load_features(item)
        phones = feats["phones"].long()
        bert = feats["bert"].float() if "bert" in feats else torch.zeros(cfg.bert_dim, len(phones))
        cap = int(max_tokens_per_phone * len(phones)) + 25
        sampling = params.sampling(seed + i, cap, model=cfg)
        walk = None
        if grammar is not None:
            walk = PhoneGrammar.for_symbols([symbols[int(p)] for p in phones], grammar.phones, grammar.n_states, cfg.eos)
        tokens = decoder.generate([DecodeRequest(phones=phones, bert=bert, prompt=None, grammar=walk)],
                                  [sampling])[0].tolist()
        true = feats["semantic"].tolist()
        want = units.units(true)
        out.rows.append(GptRow(item.id, item.text, len(true), len(tokens), edit_distance(want, units.units(tokens)),
                               len(want)))
    return out


def write_gpt_check(check: GptCheck, path: Path) -> None:
    Path(path).write_text(json.dumps(check.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
