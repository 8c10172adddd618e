"""The prepared dataset on disk, and the S1/S2 views of it used by the trainers.

Layout of a dataset folder (written by `training.prepare`)::

    DATASET/
      prepare_config.json   PrepareConfig used (a rerun with different settings is refused)
      dataset.json          which models produced the features (SoVITS base, HuBERT, BERT)
      manifest.jsonl        one JSON line per finished utterance (ManifestItem)
      report.json           accepted / rejected slices with reasons
      items/<id>.safetensors  phones [N] i64, word2ph [W] i64, bert [D, N] f16 (zh only),
                              ssl [C, T50] f16, semantic [T25] i64, spec [F, T50] f32
      wavs/<id>.wav         the utterance, 32 kHz 16-bit, loudness-normalised
      plans/<hash>.json     cached slicing plan per source recording (makes reruns cheap)

An item is finished when its features file exists *and* its manifest line is written; features
are renamed into place only when complete, and the manifest line comes last, so a crash leaves
at most one orphan file that the next run simply overwrites.
"""
from __future__ import annotations

import json
import math
import os
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from gpt_sovits.errors import GSVError

MANIFEST = "manifest.jsonl"


class DatasetError(GSVError):
    """A dataset folder is missing, empty, or was prepared with other settings/models."""

    code = "dataset_error"


@dataclass
class ManifestItem:
    """One prepared utterance (a line of manifest.jsonl)."""

    id: str
    source: str
    start: float
    end: float
    lang: str
    text: str
    norm_text: str
    n_phones: int
    n_ssl: int
    n_semantic: int
    n_spec: int
    has_bert: bool
    wav: str
    features: str

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ManifestItem":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class DatasetDir:
    """Read/write access to one dataset folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.items_dir = self.root / "items"
        self.wavs_dir = self.root / "wavs"
        self.plans_dir = self.root / "plans"
        self.manifest_path = self.root / MANIFEST

    def create(self) -> None:
        for d in (self.root, self.items_dir, self.wavs_dir, self.plans_dir):
            d.mkdir(parents=True, exist_ok=True)

    def read_manifest(self) -> list[ManifestItem]:
        """All finished items; a torn last line (crash while appending) is ignored."""
        if not self.manifest_path.is_file():
            return []
        items: dict[str, ManifestItem] = {}
        for line in self.manifest_path.read_text(encoding="utf-8").splitlines():
            try:
                item = ManifestItem.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            if (self.root / item.features).is_file():
                items[item.id] = item
        return list(items.values())

    def append_manifest(self, item: ManifestItem) -> None:
        """Append one line durably; a torn previous line is first cut off so lines never merge."""
        if self.manifest_path.is_file() and self.manifest_path.stat().st_size > 0:
            with open(self.manifest_path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            if torn:
                data = self.manifest_path.read_bytes()
                atomic_write_bytes(self.manifest_path, data[: data.rfind(b"\n") + 1])
        with open(self.manifest_path, "ab") as f:
            f.write((item.to_json() + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def write_item(self, item_id: str, tensors: dict[str, Tensor], wav: np.ndarray, sample_rate: int) -> tuple[str, str]:
        """Store an item's wav and features; returns their paths relative to the dataset root."""
        wav_rel, feat_rel = f"wavs/{item_id}.wav", f"items/{item_id}.safetensors"
        wav_tmp = self.root / f"wavs/.{item_id}.tmp.wav"
        sf.write(wav_tmp, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16")
        os.replace(wav_tmp, self.root / wav_rel)
        feat_tmp = self.root / f"items/.{item_id}.tmp.safetensors"
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(feat_tmp))
        os.replace(feat_tmp, self.root / feat_rel)
        return wav_rel, feat_rel

    def load_features(self, item: ManifestItem) -> dict[str, Tensor]:
        return load_file(str(self.root / item.features))

    def load_wav(self, item: ManifestItem) -> np.ndarray:
        wav, _ = sf.read(self.root / item.wav, dtype="float32")
        return wav

    def require_items(self) -> list[ManifestItem]:
        """The manifest, or a clear error when the folder is not a prepared dataset."""
        items = self.read_manifest()
        if not items:
            raise DatasetError(
                f"'{self.root}' holds no prepared utterances (no {MANIFEST} entries). "
                "Run `gsv prepare AUDIO... -o DIR` first.",
                code="empty_dataset",
            )
        return items


# ------------------------------------------------------------------------------- batching


def make_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, min_items: int = 0) -> list[list[int]]:
    """Deterministic batches for one epoch: same (seed, epoch) -> same batches, so a resumed run
    can skip the batches it already did.

    Small datasets are repeated (official S2 rule: n < min_items -> max(2, min_items // n)
    copies). Items are shuffled, sorted by length inside windows of 8 batches (less padding),
    and the batches shuffled again.
    """
    n = len(lengths)
    if n == 0:
        return []
    copies = max(2, min_items // n) if 0 < n < min_items else 1
    rng = random.Random(seed * 100_003 + epoch)
    order = [i for _ in range(copies) for i in range(n)]
    rng.shuffle(order)
    window = batch_size * 8
    batches: list[list[int]] = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: lengths[i])
        batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _pad_stack(tensors: list[Tensor], value: float = 0.0) -> Tensor:
    """Right-pad along the last axis and stack."""
    longest = max(t.shape[-1] for t in tensors)
    return torch.stack([torch.nn.functional.pad(t, (0, longest - t.shape[-1]), value=value) for t in tensors])


# ------------------------------------------------------------------------------------ S1


class S1Dataset(torch.utils.data.Dataset):
    """(phones, BERT, semantic tokens) triples for the GPT; BERT is zeros for non-zh items.

    `prompt_pairs` > 0 trains some items in the layout of prompted inference: another utterance
    of the same speaker first (its phones before the item's phones, its tokens before the item's
    tokens, no EOS between). A GPT trained only on single utterances scores a target about 7x
    worse in cross-entropy when a prompt precedes it (our CPU base: 3.4 vs 0.5 nats per token),
    which is the layout every cloned voice uses. Utterances from one source folder (corpus
    `audio/<speaker>/`, or the slices of one uploaded recording) count as one speaker.
    """

    def __init__(self, dataset: DatasetDir, bert_dim: int, max_semantic_tokens: int,
                 prompt_pairs: float = 0.0) -> None:
        if not 0.0 <= prompt_pairs <= 1.0:
            raise ValueError(f"prompt_pairs must be in [0, 1], got {prompt_pairs}")
        self.dataset = dataset
        self.bert_dim = bert_dim
        self.max_semantic_tokens = max_semantic_tokens
        self.prompt_pairs = prompt_pairs
        self.items = [
            it for it in dataset.require_items() if 0 < it.n_semantic <= max_semantic_tokens and it.n_phones > 0
        ]
        if not self.items:
            raise DatasetError(f"No utterance in '{dataset.root}' fits the GPT limits.", code="empty_dataset")
        groups: dict[str, list[int]] = {}
        for i, it in enumerate(self.items):
            groups.setdefault(speaker_key(it), []).append(i)
        self._same_speaker = [groups[speaker_key(it)] for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[int]:
        return [it.n_semantic for it in self.items]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        feats = self.dataset.load_features(self.items[index])
        phones = feats["phones"].long()
        bert = feats.get("bert")
        if bert is None:
            bert = torch.zeros(self.bert_dim, phones.numel())
        elif bert.shape[0] != self.bert_dim:
            raise DatasetError(f"BERT width {bert.shape[0]} in the dataset does not match the GPT's {self.bert_dim}.")
        return {"phones": phones, "bert": bert.float(), "semantic": feats["semantic"].long()}

    def sample(self, index: int, rng: random.Random) -> dict[str, Tensor]:
        """Item `index`, preceded by a same-speaker prompt with probability `prompt_pairs`."""
        row = self[index]
        if self.prompt_pairs == 0.0 or rng.random() >= self.prompt_pairs:
            return row
        room = self.max_semantic_tokens - self.items[index].n_semantic
        partners = [j for j in self._same_speaker[index] if j != index and self.items[j].n_semantic <= room]
        if not partners:
            return row
        prompt = self[rng.choice(partners)]
        return {k: torch.cat([prompt[k], row[k]], dim=-1) for k in row}


def speaker_key(item: ManifestItem) -> str:
    """Which speaker an item belongs to, for prompt pairs: the folder of its source recording."""
    return str(Path(item.source).parent)


def collate_s1(batch: list[dict[str, Tensor]], eos: int) -> dict[str, Tensor]:
    """Right-padded batch; semantic padding is EOS (as official), phone padding 0."""
    return {
        "phones": _pad_stack([b["phones"] for b in batch]),
        "phone_lens": torch.tensor([b["phones"].numel() for b in batch]),
        "bert": _pad_stack([b["bert"] for b in batch]),
        "semantic": _pad_stack([b["semantic"] for b in batch], value=eos),
        "semantic_lens": torch.tensor([b["semantic"].numel() for b in batch]),
    }


# ------------------------------------------------------------------------------------ S2


class S2Dataset(torch.utils.data.Dataset):
    """(SSL features, linear spectrogram, waveform, phones) for the SoVITS GAN fine-tune.

    SSL (16 kHz, stride 320) can be one frame shorter than the 32 kHz spectrogram; it is padded
    by repeating its last frame, as official, and the waveform is trimmed/padded to
    frames * hop so every view covers the same time. Long items are randomly cropped to
    `max_frames` (seeded per item and epoch).
    """

    def __init__(self, dataset: DatasetDir, hop_length: int, max_frames: int, seed: int = 0) -> None:
        self.dataset = dataset
        self.hop = hop_length
        self.max_frames = max_frames
        self.seed = seed
        self.epoch = 0
        self.items = [it for it in dataset.require_items() if it.n_spec >= 8 and it.n_phones > 0]
        if not self.items:
            raise DatasetError(f"No utterance in '{dataset.root}' is long enough for SoVITS.", code="empty_dataset")

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[int]:
        return [min(it.n_spec, self.max_frames) for it in self.items]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = self.items[index]
        feats = self.dataset.load_features(item)
        spec, ssl = feats["spec"].float(), feats["ssl"].float()
        frames = spec.shape[-1]
        if ssl.shape[-1] < frames:
            ssl = torch.cat([ssl, ssl[:, -1:].expand(-1, frames - ssl.shape[-1])], dim=-1)
        ssl = ssl[:, :frames]
        wav = torch.from_numpy(self.dataset.load_wav(item))
        wav = torch.nn.functional.pad(wav, (0, max(0, frames * self.hop - wav.numel())))[: frames * self.hop]
        if frames > self.max_frames:
            start = random.Random(f"{self.seed}:{self.epoch}:{item.id}").randrange(frames - self.max_frames + 1)
            spec, ssl = spec[:, start : start + self.max_frames], ssl[:, start : start + self.max_frames]
            wav = wav[start * self.hop : (start + self.max_frames) * self.hop]
        return {"ssl": ssl, "spec": spec, "wav": wav, "phones": feats["phones"].long()}


def collate_s2(batch: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {
        "ssl": _pad_stack([b["ssl"] for b in batch]),
        "spec": _pad_stack([b["spec"] for b in batch]),
        "spec_lens": torch.tensor([b["spec"].shape[-1] for b in batch]),
        "wav": _pad_stack([b["wav"] for b in batch]).unsqueeze(1),
        "wav_lens": torch.tensor([b["wav"].numel() for b in batch]),
        "phones": _pad_stack([b["phones"] for b in batch]),
        "phone_lens": torch.tensor([b["phones"].numel() for b in batch]),
    }


def steps_per_epoch(n_items: int, batch_size: int, min_items: int = 0) -> int:
    """Number of batches `make_batches` yields per epoch (for schedules and progress bars)."""
    copies = max(2, min_items // n_items) if 0 < n_items < min_items else 1
    total = n_items * copies
    window = batch_size * 8
    full, rest = divmod(total, window)
    return full * 8 + math.ceil(rest / batch_size)
