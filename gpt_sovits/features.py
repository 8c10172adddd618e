"""Pretrained feature extractors: HuBERT (SSL content features) and Chinese BERT (text features).

Both wrap Hugging Face `transformers` models loaded from local directories in the layout the
official GPT-SoVITS release ships (`pretrained_models/chinese-hubert-base`,
`pretrained_models/chinese-roberta-wwm-ext-large`). Nothing is downloaded: a missing directory
raises `ModelNotFoundError` saying what belongs there. `random_tiny` builds small random models
with the same interfaces so tests run offline in milliseconds.

Conventions follow the official call sites (see shared/reference/gptsovits-v2.md §1.4, §1.5):
- HuBERT gets the raw 16 kHz waveform (no Wav2Vec2FeatureExtractor normalisation) and its
  `last_hidden_state` is returned channels-first, one frame per 320 samples (50 Hz).
- BERT uses `hidden_states[-3]`, drops [CLS]/[SEP], and repeats character i `word2ph[i]` times.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gpt_sovits.errors import GSVError, ModelNotFoundError

if TYPE_CHECKING:  # transformers is imported lazily: it is slow to import and only loaders need it
    from transformers import HubertModel, PreTrainedModel, PreTrainedTokenizerBase

# The wav2vec2/HuBERT convolutional feature encoder: 7 layers, total stride 320 (20 ms @ 16 kHz).
SSL_CONV_KERNELS: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
SSL_CONV_STRIDES: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
SSL_SAMPLE_RATE = 16000

_HUBERT_WHAT = (
    "chinese-hubert-base (config.json + pytorch_model.bin or model.safetensors), as in the official "
    "GPT_SoVITS/pretrained_models/chinese-hubert-base layout"
)
_BERT_WHAT = (
    "chinese-roberta-wwm-ext-large (config.json + pytorch_model.bin or model.safetensors + tokenizer.json "
    "or vocab.txt), as in the official GPT_SoVITS/pretrained_models/chinese-roberta-wwm-ext-large layout"
)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


class BertAlignmentError(GSVError, ValueError):
    """The tokenizer did not give exactly one token per character, or word2ph does not fit."""

    code = "bert_alignment"


def ssl_frame_count(n_samples: int) -> int:
    """Frames the HuBERT conv stack produces for `n_samples` (0 when the input is too short)."""
    length = n_samples
    for kernel, stride in zip(SSL_CONV_KERNELS, SSL_CONV_STRIDES):
        length = (length - kernel) // stride + 1
        if length <= 0:
            return 0
    return length


def _require_files(directory: str | Path, what: str, groups: list[tuple[str, ...]]) -> Path:
    """Check that `directory` holds one file of every group; raise ModelNotFoundError otherwise."""
    path = Path(directory)
    if not path.is_dir():
        raise ModelNotFoundError(path, what, missing=["the directory itself"])
    missing = [" or ".join(group) for group in groups if not any((path / name).is_file() for name in group)]
    if missing:
        raise ModelNotFoundError(path, what, missing=missing)
    return path


class SSLFeatureExtractor:
    """HuBERT content features: waveform [B, samples] @ 16 kHz -> [B, hidden, T50]."""

    def __init__(self, model: HubertModel) -> None:
        self.model = model.eval()

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "SSLFeatureExtractor":
        """Move the wrapped model (in place) and return self, like nn.Module.to."""
        self.model.to(device=device, dtype=dtype) if dtype is not None else self.model.to(device)
        return self

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SSLFeatureExtractor:
        from transformers import HubertModel

        path = _require_files(directory, _HUBERT_WHAT, [("config.json",), _WEIGHT_FILES])
        return cls(HubertModel.from_pretrained(str(path), local_files_only=True))

    @classmethod
    def random_tiny(cls, hidden: int = 32, seed: int = 0) -> SSLFeatureExtractor:
        """A 2-layer random HuBERT with the real conv strides (so frame counts are realistic)."""
        from transformers import HubertConfig, HubertModel

        config = HubertConfig(
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            conv_dim=(16,) * len(SSL_CONV_KERNELS),
            conv_kernel=SSL_CONV_KERNELS,
            conv_stride=SSL_CONV_STRIDES,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            feat_extract_norm="group",  # as chinese-hubert-base: GroupNorm on the first conv only
            do_stable_layer_norm=False,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(HubertModel(config))

    @torch.no_grad()
    def __call__(self, wav16k: Tensor) -> Tensor:
        """Raw float waveform [B, samples] (or [samples]) at 16 kHz -> [B, hidden, T50].

        Batched items should have equal length: the official model takes no attention mask, so
        zero padding changes the features of the shorter items.
        """
        if wav16k.dim() == 1:
            wav16k = wav16k.unsqueeze(0)
        if wav16k.dim() != 2:
            raise ValueError(f"SSLFeatureExtractor expects [B, samples], got shape {tuple(wav16k.shape)}")
        if ssl_frame_count(wav16k.shape[-1]) < 1:
            raise ValueError(f"Waveform of {wav16k.shape[-1]} samples is too short for HuBERT (needs >= 400).")
        param = next(self.model.parameters())
        hidden = self.model(wav16k.to(device=param.device, dtype=param.dtype)).last_hidden_state
        return hidden.transpose(1, 2)


class BertFeatureExtractor:
    """Chinese BERT text features: normalised text + word2ph -> [hidden, n_phones]."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "BertFeatureExtractor":
        """Move the wrapped model (in place) and return self, like nn.Module.to."""
        self.model.to(device=device, dtype=dtype) if dtype is not None else self.model.to(device)
        return self

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> BertFeatureExtractor:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        path = _require_files(directory, _BERT_WHAT, [("config.json",), _WEIGHT_FILES, _TOKENIZER_FILES])
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForMaskedLM.from_pretrained(str(path), local_files_only=True)
        return cls(model, tokenizer)

    @classmethod
    def random_tiny(cls, hidden: int = 32, seed: int = 0) -> BertFeatureExtractor:
        """A 4-layer random BERT with a character-level vocabulary of all CJK chars in U+4E00-U+9FA5
        (the range the zh normaliser keeps), ASCII and punctuation, like chinese-roberta's."""
        from transformers import BertConfig, BertForMaskedLM, BertTokenizer

        with tempfile.TemporaryDirectory() as tmp:
            vocab_file = Path(tmp) / "vocab.txt"
            vocab_file.write_text("\n".join(_tiny_vocab()) + "\n", encoding="utf-8")
            tokenizer = BertTokenizer(str(vocab_file))
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=512,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(BertForMaskedLM(config), tokenizer)

    @torch.no_grad()
    def __call__(self, norm_text: str, word2ph: list[int]) -> Tensor:
        """Features for `norm_text` expanded to phones: [hidden, sum(word2ph)].

        `norm_text` is the zh normaliser output (one token per character); `word2ph[i]` is the
        number of phones of character i. Returned on the model's device and dtype.
        """
        if len(word2ph) != len(norm_text):
            raise BertAlignmentError(
                f"word2ph has {len(word2ph)} entries but the text has {len(norm_text)} characters; "
                "pass the normalised text that produced word2ph."
            )
        if any(n < 0 for n in word2ph):
            raise BertAlignmentError("word2ph entries must be >= 0")
        limit = int(self.model.config.max_position_embeddings) - 2
        if len(norm_text) > limit:
            raise BertAlignmentError(
                f"Text of {len(norm_text)} characters exceeds BERT's {limit}; split it into sentences first."
            )
        param = next(self.model.parameters())
        inputs = self.tokenizer(norm_text, return_tensors="pt")
        n_tokens = inputs["input_ids"].shape[1] - 2
        if n_tokens != len(norm_text):
            raise BertAlignmentError(
                f"The tokenizer produced {n_tokens} tokens for {len(norm_text)} characters; BERT features "
                "need one token per character (normalise zh text first: no spaces, Latin words or digits)."
            )
        inputs = {name: value.to(param.device) for name, value in inputs.items()}
        hidden_states = self.model(**inputs, output_hidden_states=True).hidden_states
        per_char = hidden_states[-3][0, 1:-1]  # third from last = layer L-2; drop [CLS] and [SEP]
        counts = torch.tensor(word2ph, device=per_char.device)
        return per_char.repeat_interleave(counts, dim=0).transpose(0, 1)


def _tiny_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_chars = [chr(c) for c in range(33, 127)]
    punctuation = list("…，。！？、；：“”‘’（）《》—～·")
    cjk = [chr(c) for c in range(0x4E00, 0x9FA6)]
    seen: set[str] = set()
    vocab = []
    for token in specials + ascii_chars + punctuation + cjk:
        if token not in seen:
            seen.add(token)
            vocab.append(token)
    return vocab
