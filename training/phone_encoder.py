"""Phonetic content encoder: fine-tune our content encoder with a CTC loss on phone sequences.

Why: HuBERT iteration 0 (masked prediction of MFCC clusters, `training.content_encoder`) learns
features that still carry much speaker and channel identity; the k-means tokens made from them
differ between two speakers reading the same sentence, so the GPT memorised the training
speakers (docs/base_model_snapshot.md). We do have a transcript for every en/zh training
utterance and a G2P frontend, so we can *tell* the encoder what is being said: a CTC loss on the
phone sequence makes its top layer predict phones, which a speaker-independent representation
does best. The k-means tokens of that layer then mean "which phone" much more than "which voice".

Design:
- labels: the v2 frontend's phones of the transcript, punctuation dropped; English stress digits
  are dropped by default (AH0/AH1 are the same sound class for our purpose), Mandarin tones kept
  (they are lexical). Label 0 is the CTC blank.
- the CTC head (conv over 3 frames + linear) sits *outside* the encoder: the encoder's output,
  which SoVITS consumes, stays a dense frame representation, while the head absorbs CTC's
  "peaky" blank-dominated posteriors.
- optional auxiliary masked prediction of the previous iteration's MFCC clusters (`mpl_weight`),
  on the same forward pass, to keep frame-level acoustic detail.
- batches are utterances of similar length (the encoder has no padding mask, so padding is kept
  small), capped by total seconds.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpt_sovits.config import JsonConfig
from gpt_sovits.errors import GSVError
from gpt_sovits.features import SSL_SAMPLE_RATE, ssl_frame_count
from training.augment import VoicePerturbation
from training.content_encoder import ContentEncoder, assign_clusters, mfcc_features, span_mask

log = logging.getLogger(__name__)

PHONE_TABLE_FILE = "phones.json"
CTC_HEAD_FILE = "ctc_head.safetensors"
SKIPPED_PHONES = frozenset({"!", "?", "…", ",", ".", "-", "SP", "SP2", "SP3", "UNK", "_"})
"""Punctuation and pause symbols: not sounds, so not CTC targets."""


class PhoneEncoderError(GSVError, ValueError):
    """Bad transcripts, labels or settings for phonetic encoder training."""

    code = "phone_encoder_error"


# ------------------------------------------------------------------------------------ labels


def phone_class(phone: str, strip_stress: bool = True) -> str | None:
    """The CTC class of one frontend phone, or None for punctuation/pauses.

    English ARPAbet vowels end in a stress digit (AH0, AH1); they are merged when `strip_stress`.
    Mandarin finals also end in a digit (the tone, e.g. "ao3") but are lower case and keep it.
    """
    if phone in SKIPPED_PHONES:
        return None
    if strip_stress and phone[-1:].isdigit() and phone[:-1].isupper():
        return phone[:-1]
    return phone


@dataclass
class PhoneTable:
    """CTC label inventory: `classes[i]` has label i + 1 (0 is the blank)."""

    classes: list[str]
    strip_stress: bool = True

    @classmethod
    def build(cls, phone_lists: Sequence[Sequence[str]], strip_stress: bool = True) -> "PhoneTable":
        seen = {c for phones in phone_lists for p in phones if (c := phone_class(p, strip_stress)) is not None}
        if not seen:
            raise PhoneEncoderError("no phone in any transcript: give en/zh utterances with text.")
        return cls(sorted(seen), strip_stress)

    @property
    def n_labels(self) -> int:
        """Output size of the CTC head (classes + blank)."""
        return len(self.classes) + 1

    def encode(self, phones: Sequence[str]) -> list[int]:
        """Phones -> labels (1-based); punctuation is dropped, an unknown class is an error."""
        index = {c: i + 1 for i, c in enumerate(self.classes)}
        out = []
        for p in phones:
            c = phone_class(p, self.strip_stress)
            if c is None:
                continue
            if c not in index:
                raise PhoneEncoderError(f"phone '{p}' (class '{c}') is not in the table; "
                                        "rebuild it from these transcripts.")
            out.append(index[c])
        return out

    def decode(self, labels: Sequence[int]) -> list[str]:
        return [self.classes[i - 1] for i in labels if i > 0]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"classes": self.classes, "strip_stress": self.strip_stress}, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "PhoneTable":
        data = json.loads(Path(path).read_text())
        return cls(list(data["classes"]), bool(data["strip_stress"]))


def transcript_phones(texts: Sequence[tuple[str, str]], version: str = "v2") -> list[list[str]]:
    """Frontend phones of (text, lang) pairs, as the GPT sees them at training time."""
    from gpt_sovits.text.frontend import TextFrontend

    frontend = TextFrontend(version)
    return [frontend.sentence(text, lang).phones for text, lang in texts]


def greedy_ctc(logits: Tensor) -> list[int]:
    """Best path of [T, L] logits: argmax per frame, repeats merged, blanks removed."""
    best = logits.argmax(-1).tolist()
    out, prev = [], -1
    for b in best:
        if b != prev and b != 0:
            out.append(b)
        prev = b
    return out


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


# ------------------------------------------------------------------------------------- model


class CTCHead(nn.Module):
    """Encoder frames [B, T, H] -> phone logits [B, T, n_labels] (conv over 3 frames + linear)."""

    def __init__(self, hidden: int, n_labels: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)
        self.out = nn.Linear(hidden, n_labels)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2))


@dataclass
class PhoneCTCConfig(JsonConfig):
    """One CTC fine-tuning run of the content encoder (`gsv corpus train-phones`)."""

    name: str = "gsv-content-v2"
    """New encoder name: SoVITS models record it, so a v1-token model is never paired with it."""
    steps: int = 3000
    batch_seconds: float = 24.0
    """Audio per step (utterances of similar length until this total)."""
    lr: float = 5e-4
    head_lr_scale: float = 4.0
    """The new head starts random: a higher LR lets it catch up with the pretrained encoder."""
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    mask_prob: float = 0.04
    """SpecAugment-like span masking of input frames (fewer than HuBERT's 0.08: CTC needs context)."""
    mask_length: int = 5
    mpl_weight: float = 0.0
    """Weight of the auxiliary masked prediction of the previous MFCC clusters (0 = CTC only)."""
    strip_stress: bool = True
    augment_prob: float = 0.0
    """Share of training utterances given a random other apparent voice (`training.augment`); 0 = off."""
    seed: int = 0


@dataclass
class PhoneItem:
    """One training utterance: 16 kHz audio, CTC labels, optional MFCC-cluster frame labels."""

    wav: np.ndarray
    labels: list[int]
    clusters: np.ndarray | None = None


def make_items(wavs: Sequence[np.ndarray], phones: Sequence[Sequence[str]], table: PhoneTable,
               centroids: Tensor | None = None) -> list[PhoneItem]:
    """Pair audio with labels; utterances whose labels cannot fit CTC (too short audio) are dropped."""
    if len(wavs) != len(phones):
        raise PhoneEncoderError(f"{len(wavs)} waveforms but {len(phones)} transcripts.")
    items = []
    for wav, ph in zip(wavs, phones):
        labels = table.encode(ph)
        frames = ssl_frame_count(len(wav))
        if not labels or frames < 2 * len(labels) + 1:  # CTC needs room for repeats and blanks
            continue
        clusters = None
        if centroids is not None:
            clusters = assign_clusters(torch.from_numpy(mfcc_features(wav)), centroids).numpy()
        items.append(PhoneItem(np.asarray(wav, dtype=np.float32), labels, clusters))
    if not items:
        raise PhoneEncoderError("no utterance has audio long enough for its phone sequence.")
    return items


def length_batches(items: Sequence[PhoneItem], batch_seconds: float, gen: torch.Generator) -> list[list[int]]:
    """Shuffled batches of utterances of similar length, each about `batch_seconds` of audio."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].wav))
    limit = batch_seconds * SSL_SAMPLE_RATE
    batches, cur = [], []
    for i in order:
        longest = len(items[i].wav)  # sorted ascending: the newest item is the longest
        if cur and longest * (len(cur) + 1) > limit:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[p] for p in perm]


def collate(items: Sequence[PhoneItem]) -> dict[str, Tensor]:
    """Zero-padded waveforms [B, S], frame counts, concatenated labels and their lengths."""
    longest = max(len(it.wav) for it in items)
    wav = torch.zeros(len(items), longest)
    for k, it in enumerate(items):
        wav[k, : len(it.wav)] = torch.from_numpy(it.wav)
    frames = torch.tensor([ssl_frame_count(len(it.wav)) for it in items])
    out = {"wav": wav, "frames": frames, "labels": torch.tensor([l for it in items for l in it.labels]),
           "label_lens": torch.tensor([len(it.labels) for it in items])}
    if all(it.clusters is not None for it in items):
        total = ssl_frame_count(longest)
        clusters = torch.full((len(items), total), -100, dtype=torch.long)
        for k, it in enumerate(items):
            n = min(total, len(it.clusters))
            clusters[k, :n] = torch.from_numpy(it.clusters[:n]).long()
        out["clusters"] = clusters
    return out


def phone_losses(model: ContentEncoder, head: CTCHead, batch: dict[str, Tensor], mask: Tensor | None = None,
                 mpl_head: nn.Linear | None = None) -> dict[str, Tensor]:
    """CTC loss (mean per label) and, with `mpl_head` and cluster labels, masked-frame CE."""
    hidden = model(batch["wav"], mask=mask)
    logp = head(hidden).float().log_softmax(-1)
    ctc = F.ctc_loss(logp.transpose(0, 1), batch["labels"], batch["frames"], batch["label_lens"],
                     blank=0, reduction="mean", zero_infinity=True)
    out = {"ctc": ctc}
    if mpl_head is not None and "clusters" in batch and mask is not None and mask.any():
        target = batch["clusters"].masked_fill(~mask, -100)
        out["mpl"] = F.cross_entropy(mpl_head(hidden).transpose(1, 2), target, ignore_index=-100)
    return out


# ------------------------------------------------------------------------------------- train


@dataclass
class PhoneTrainResult:
    model: ContentEncoder
    head: CTCHead
    table: PhoneTable
    losses: list[float]


def train_phone_encoder(items: Sequence[PhoneItem], table: PhoneTable, init: ContentEncoder, cfg: PhoneCTCConfig,
                        n_clusters: int = 0, on_step: Callable[[int, dict[str, float]], None] | None = None,
                        device: str | torch.device = "cpu", save_every: int = 0,
                        on_save: Callable[[int, PhoneTrainResult], None] | None = None) -> PhoneTrainResult:
    """CTC fine-tuning of `init` (modified in place and renamed `cfg.name`) for `cfg.steps` steps.

    `n_clusters` > 0 with `cfg.mpl_weight` > 0 adds the masked prediction of the items' clusters.
    `on_save(step, result)` is called every `save_every` steps (a snapshot survives a killed run).
    """
    from training.schedules import set_lr, warmup_cosine

    torch.manual_seed(cfg.seed)
    model = init.to(device).train()
    model.cfg = dataclasses.replace(model.cfg, name=cfg.name)
    head = CTCHead(model.cfg.hidden_size, table.n_labels).to(device).train()
    mpl_head = nn.Linear(model.cfg.hidden_size, n_clusters).to(device) if cfg.mpl_weight > 0 and n_clusters else None
    groups = [{"params": list(model.parameters()), "lr_scale": 1.0},
              {"params": list(head.parameters()) + (list(mpl_head.parameters()) if mpl_head else []),
               "lr_scale": cfg.head_lr_scale}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    params = [p for g in groups for p in g["params"]]
    gen = torch.Generator().manual_seed(cfg.seed)
    perturb = VoicePerturbation(prob=cfg.augment_prob) if cfg.augment_prob > 0 else None
    rng = np.random.default_rng(cfg.seed)
    batches: list[list[int]] = []
    losses: list[float] = []
    for step in range(cfg.steps):
        lr = warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
        set_lr(optimizer, lr)
        if not batches:
            batches = length_batches(items, cfg.batch_seconds, gen)
        chosen = [items[i] for i in batches.pop()]
        if perturb is not None:
            chosen = [perturbed(it, perturb, rng) for it in chosen]
        batch = {k: v.to(device) for k, v in collate(chosen).items()}
        mask = None
        if cfg.mask_prob > 0:
            mask = span_mask(batch["wav"].shape[0], int(batch["frames"].max()), cfg.mask_prob, cfg.mask_length, gen)
            mask &= torch.arange(mask.shape[1])[None] < batch["frames"][:, None].cpu()
            mask = mask.to(device)
        parts = phone_losses(model, head, batch, mask, mpl_head)
        loss = parts["ctc"] + cfg.mpl_weight * parts.get("mpl", torch.zeros((), device=parts["ctc"].device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, {k: float(v.detach()) for k, v in parts.items()} | {"lr": lr})
        if on_save is not None and save_every > 0 and (step + 1) % save_every == 0 and step + 1 < cfg.steps:
            on_save(step + 1, PhoneTrainResult(model, head, table, losses))
            model.train()
            head.train()
    model.eval()
    head.eval()
    return PhoneTrainResult(model, head, table, losses)


def perturbed(item: PhoneItem, perturb: VoicePerturbation, rng: np.random.Generator) -> PhoneItem:
    """The item with another apparent voice; frame-level cluster labels follow the new duration."""
    wav = perturb(item.wav, rng)
    clusters = item.clusters
    if clusters is not None and len(wav) != len(item.wav):
        n_new, n_old = ssl_frame_count(len(wav)), len(clusters)
        clusters = clusters[np.minimum(np.arange(n_new) * n_old // max(1, n_new), n_old - 1)]
    return dataclasses.replace(item, wav=wav, clusters=clusters)


@torch.no_grad()
def phone_error_rate(model: ContentEncoder, head: CTCHead, items: Sequence[PhoneItem],
                     device: str | torch.device = "cpu") -> float:
    """Greedy-decoding phone error rate (edits / reference labels) over `items`, one at a time."""
    was_training = model.training
    model.eval()
    head.eval()
    edits = total = 0
    for it in items:
        logits = head(model(torch.from_numpy(it.wav)[None].to(device)))[0]
        edits += edit_distance(greedy_ctc(logits), it.labels)
        total += len(it.labels)
    model.train(was_training)
    return edits / max(1, total)


def save_phone_encoder(result: PhoneTrainResult, directory: str | Path, cfg: PhoneCTCConfig) -> Path:
    """The encoder folder (`config.json` + `model.safetensors`, loadable by `load_content_encoder`)
    plus `phones.json`, `ctc_head.safetensors` and `train_phones_config.json`."""
    from safetensors.torch import save_file

    from training.content_encoder import save_content_encoder

    out = save_content_encoder(result.model.cpu(), directory)
    result.table.save(out / PHONE_TABLE_FILE)
    save_file({k: v.detach().cpu().contiguous() for k, v in result.head.state_dict().items()}, str(out / CTC_HEAD_FILE))
    cfg.save(out / "train_phones_config.json")
    return out


def load_phone_head(directory: str | Path) -> tuple[CTCHead, PhoneTable]:
    """The CTC head and phone table saved beside an encoder by `save_phone_encoder`."""
    from safetensors.torch import load_file

    path = Path(directory)
    if not (path / PHONE_TABLE_FILE).is_file() or not (path / CTC_HEAD_FILE).is_file():
        raise PhoneEncoderError(f"'{path}' has no {PHONE_TABLE_FILE} / {CTC_HEAD_FILE}: train it with "
                                "`gsv corpus train-phones`.")
    table = PhoneTable.load(path / PHONE_TABLE_FILE)
    state = load_file(str(path / CTC_HEAD_FILE))
    head = CTCHead(state["conv.weight"].shape[0], table.n_labels, state["conv.weight"].shape[-1])
    head.load_state_dict(state, strict=True)
    return head.eval(), table


# ------------------------------------------------------------------------------------ driver


def read_list(path: Path) -> list[tuple[Path, str, str]]:
    """(audio path, lang, text) rows of a `wav|speaker|lang|text` list (paths relative to the list)."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|", 3)
        if len(parts) != 4:
            raise PhoneEncoderError(f"{path}:{n}: expected wav|speaker|lang|text, got {line[:60]!r}")
        wav = Path(parts[0]) if Path(parts[0]).is_absolute() else Path(path).parent / parts[0]
        rows.append((wav, parts[2], parts[3]))
    return rows


def load_list_items(path: Path, table: PhoneTable | None,
                    centroids: Tensor | None = None) -> tuple[list[PhoneItem], PhoneTable]:
    """Audio (16 kHz) + phone labels of a list; builds the table when `table` is None."""
    from gpt_sovits.audio import load_audio

    rows = read_list(path)
    phones = transcript_phones([(text, lang) for _, lang, text in rows])
    table = table or PhoneTable.build(phones)
    known = set(table.classes)
    keep = [k for k, ph in enumerate(phones)
            if all((c := phone_class(p, table.strip_stress)) is None or c in known for p in ph)]
    wavs = [load_audio(rows[k][0], target_sr=SSL_SAMPLE_RATE)[0] for k in keep]
    return make_items(wavs, [phones[k] for k in keep], table, centroids), table


def run_phone_training(list_path: Path, init_dir: Path, out_dir: Path, cfg: PhoneCTCConfig,
                       heldout_list: Path | None = None, save_every: int = 500, device: str = "auto") -> int:
    """`gsv corpus train-phones`: load, train with periodic saves and metrics.jsonl, report PER."""
    from safetensors.torch import load_file

    from training.content_encoder import load_content_encoder
    from training.runtime import resolve_device

    dev = resolve_device(device)
    centroids = None
    targets = Path(init_dir) / "targets.safetensors"
    if cfg.mpl_weight > 0:
        if not targets.is_file():
            raise PhoneEncoderError(f"--mpl-weight needs the MFCC centroids of '{init_dir}' (targets.safetensors).")
        centroids = load_file(str(targets))["centroids"]
    items, table = load_list_items(list_path, None, centroids)
    heldout = load_list_items(heldout_list, table)[0] if heldout_list else []
    log.info("%d training utterances, %d held out, %d phone classes", len(items), len(heldout), len(table.classes))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_content_encoder(init_dir)
    metrics = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")
    window: list[dict[str, float]] = []

    def on_step(step: int, values: dict[str, float]) -> None:
        window.append(values)
        if (step + 1) % 20 == 0 or step + 1 == cfg.steps:
            mean = {k: sum(v[k] for v in window) / len(window) for k in window[0]}
            metrics.write(json.dumps({"step": step + 1, **mean}) + "\n")
            metrics.flush()
            log.info("step %d/%d %s", step + 1, cfg.steps, " ".join(f"{k} {v:.4g}" for k, v in mean.items()))
            window.clear()

    def on_save(step: int, snapshot: PhoneTrainResult) -> None:
        frozen = PhoneTrainResult(copy.deepcopy(snapshot.model).cpu(), snapshot.head, table, [])
        save_phone_encoder(frozen, out_dir, cfg)
        per = phone_error_rate(snapshot.model, snapshot.head, heldout[:40], dev) if heldout else float("nan")
        metrics.write(json.dumps({"step": step, "heldout_per_40": per}) + "\n")
        metrics.flush()
        log.info("step %d: saved %s, held-out PER (40 items) %.3f", step, out_dir, per)

    result = train_phone_encoder(items, table, model, cfg, centroids.shape[0] if centroids is not None else 0,
                                 on_step, dev, save_every, on_save)
    save_phone_encoder(result, out_dir, cfg)
    per = phone_error_rate(result.model.to(dev), result.head.to(dev), heldout, dev) if heldout else float("nan")
    metrics.write(json.dumps({"step": cfg.steps, "heldout_per": per}) + "\n")
    metrics.close()
    print(f"wrote {out_dir} ('{cfg.name}', {len(table.classes)} phone classes); held-out PER {per:.3f}")
    return 0
