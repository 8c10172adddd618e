"""The voice registry service: create, read, list, delete voices and serve their prompts.

`VoiceService` glues the parts together: `Ingestor` (upload -> reference segments),
`VoicePrompt.from_audio` (segments -> voice tensors), a speaker encoder (-> embedding for the
similar-voice index), and a `VoiceStore` (durable registry). Prompts are served through a
two-level cache: an in-memory LRU keyed by (voice id, content hash), then the stored tensors.

Transcripts. A transcript describes the whole upload, but the reference is usually a 3-10 s
slice of it. Pairing a slice with the full transcript would tell the GPT the reference says words
it does not say, which derails synthesis. So the transcript is used as the prompt text only when
the reference holds every detected speech region of the upload (a short upload); otherwise the
voice is built in reference-free mode (`prompt_text=None`) and the transcript is kept in the
record for later use (e.g. fine-tuning). `record.stats["prompt_mode"]` says which happened.

Owners. Callers pass any owner string (an API key, a user id); it is hashed before it reaches
storage, so raw keys are never written to disk, and every lookup compares hashes.
"""
from __future__ import annotations

import builtins
import hashlib
import logging
import re
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gpt_sovits.audio import encode_audio
from gpt_sovits.errors import GSVError

from .ingest import MODEL_SAMPLE_RATE, IngestError, Ingestor, IngestResult
from .settings import Settings
from .similarity import SimilarityIndex, SimilarVoice
from .storage import FileSource, SweepReport, VoiceRecord, VoiceStore, new_voice_id

log = logging.getLogger(__name__)

PROMPT_DIR = "prompt"
GPT_FILE = "weights/gpt.ckpt"
SOVITS_FILE = "weights/sovits.pth"
"""Stored names of uploaded official weights (PyTorch zip, decoded weights-only)."""
GPT_NATIVE_FILE = "weights/gpt.safetensors"
SOVITS_NATIVE_FILE = "weights/sovits.safetensors"
"""Stored names of uploaded weights in our format (one .safetensors with its config embedded)."""
_LANGUAGE_RE = re.compile(r"^[a-z][a-z_-]{1,15}$")


class VoiceError(GSVError, ValueError):
    """A create request that cannot be served (bad name, language, transcript or weights)."""

    code = "invalid_voice_request"


class VoiceNotFoundError(GSVError, LookupError):
    """No voice with this id is visible to this owner (other owners' voices look the same)."""

    code = "voice_not_found"
    http_status = 404


class BundleProvider(Protocol):
    """Hands out model bundles: the base one, or one with a voice's fine-tuned weights.

    `serving.bundle_pool.BundlePool` satisfies it; a plain `ModelBundle` is wrapped automatically.
    """

    base: Any

    def get(self, gpt: str | None, sovits: str | None) -> Any: ...

    # optional: `put(gpt, sovits, bundle)` adopts a bundle loaded elsewhere (see `VoiceService.create`)


class SpeakerEncoder(Protocol):
    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray: ...


class _SingleBundle:
    """Adapter: a bare `ModelBundle` as a `BundleProvider` (fine-tunes are loaded per call)."""

    def __init__(self, bundle: Any) -> None:
        self.base = bundle

    def get(self, gpt: str | None, sovits: str | None) -> Any:
        return self.base if not gpt and not sovits else self.base.with_weights(gpt, sovits)


def owner_hash(owner: str) -> str:
    """What the store keeps instead of the owner string (a salted SHA-256, 32 hex chars)."""
    return hashlib.sha256(b"gsv-owner\0" + owner.encode()).hexdigest()[:32]


class PromptCache:
    """Thread-safe LRU of loaded voice prompts keyed by (voice id, content hash)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str]) -> Any | None:
        with self._lock:
            prompt = self._items.get(key)
            if prompt is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return prompt

    def put(self, key: tuple[str, str], prompt: Any) -> None:
        with self._lock:
            self._items[key] = prompt
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def evict(self, voice_id: str) -> int:
        """Drop every entry of a voice; returns how many were dropped."""
        with self._lock:
            keys = [k for k in self._items if k[0] == voice_id]
            for key in keys:
                del self._items[key]
            return len(keys)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, voice_id: str) -> bool:
        with self._lock:
            return any(k[0] == voice_id for k in self._items)


class VoiceService:
    """Voice registry operations; one instance per server, shared by all request threads."""

    def __init__(self, store: VoiceStore, bundle_provider: Any, speaker_encoder: SpeakerEncoder | None,
                 settings: Settings, *, ingestor: Ingestor | None = None,
                 index: SimilarityIndex | None = None, prompt_class: Any = None) -> None:
        self.store = store
        self.bundles: BundleProvider = (bundle_provider if hasattr(bundle_provider, "get")
                                        else _SingleBundle(bundle_provider))
        self.speaker_encoder = speaker_encoder
        self.settings = settings
        self.ingestor = ingestor or Ingestor(settings)
        self.index = index or SimilarityIndex()
        self.cache = PromptCache(settings.voice_cache_entries)
        if prompt_class is None:
            from gpt_sovits.voice import VoicePrompt as prompt_class
        self.prompt_class = prompt_class

    def start(self) -> SweepReport:
        """Start-up: remove crash leftovers, then rebuild the similarity index from the store."""
        report = self.store.sweep_orphans()
        if report.removed_dirs or report.removed_temp_files:
            log.warning("voice store sweep removed %d directories and %d temp files",
                        len(report.removed_dirs), len(report.removed_temp_files))
        if report.damaged:
            log.error("voices with missing files (left in place): %s", ", ".join(report.damaged))
        self.index.rebuild(self.store.list())
        return report

    # ---------------------------------------------------------------------------- create
    def create(self, owner: str, audio_bytes: bytes, filename: str | None = None, name: str | None = None,
               language: str = "auto", transcript: str | None = None,
               gpt_weights_bytes: bytes | None = None, sovits_weights_bytes: bytes | None = None) -> VoiceRecord:
        """Ingest an upload, compute its prompt and embedding, store it durably, return the record.

        Raises `IngestError` (bad audio), `VoiceError` (bad fields or weights), `StorageError`.
        `record.warnings` lists near-duplicates of the owner's existing voices.
        """
        name = self._check_name(name, filename)
        language = self._check_language(language)
        transcript = self._check_transcript(transcript)
        self._check_weights_sizes(gpt_weights_bytes, sovits_weights_bytes)
        result = self.ingestor.ingest(audio_bytes, filename)
        prompt_text = transcript if transcript and result.reference_covers_all_speech else None
        with tempfile.TemporaryDirectory(prefix="gsv-voice-") as tmp:
            staging = Path(tmp)
            weights = _stage_weights(staging, gpt_weights_bytes, sovits_weights_bytes)
            bundle = self._bundle_for_upload(weights)
            prompt = self._make_prompt(bundle, result, prompt_text, language)
            embedding = self._embed(result)
            owner_h = owner_hash(owner)
            record = VoiceRecord(
                id=new_voice_id(), owner=owner_h, name=name, language=language, transcript=transcript,
                prompt_text=prompt_text, created_at=time.time(), content_hash=prompt.content_hash,
                embedding=embedding, gpt_weights=_stored_name(weights, "gpt"),
                sovits_weights=_stored_name(weights, "sovits"),
                stats=self._stats(result, transcript, prompt_text),
                warnings=self._duplicate_warnings(owner_h, embedding),
            )
            files = self._files(staging, prompt, result, weights)
            record = self.store.put_voice(record, files)
        if embedding is not None:
            self.index.add(owner_h, record.id, embedding)
        self.cache.put((record.id, record.content_hash), prompt)
        adopt = getattr(self.bundles, "put", None)
        if weights and callable(adopt):
            # the fine-tune is in memory already (loaded to validate it): loading it again on the
            # first synthesis cost seconds of first-byte latency with our base on a CPU
            adopt(*self.weights_paths(record.id), bundle)
        return record

    def _check_name(self, name: str | None, filename: str | None) -> str:
        text = (name or "").strip() or Path(filename or "voice").stem.strip() or "voice"
        if len(text) > self.settings.max_voice_name_chars or not text.isprintable():
            raise VoiceError(f"The voice name must be printable text of at most "
                             f"{self.settings.max_voice_name_chars} characters.", code="invalid_name")
        return text

    @staticmethod
    def _check_language(language: str | None) -> str:
        lang = (language or "auto").strip().lower()
        if not _LANGUAGE_RE.match(lang):
            raise VoiceError(f"Unknown language {language!r}; use a code such as 'auto', 'en' or 'zh'.",
                             code="invalid_language")
        return lang

    def _check_transcript(self, transcript: str | None) -> str | None:
        text = (transcript or "").strip()
        if len(text) > self.settings.max_text_chars:
            raise VoiceError(f"The transcript has {len(text)} characters; the limit is "
                             f"{self.settings.max_text_chars}.", code="text_too_long")
        return text or None

    def _check_weights_sizes(self, *blobs: bytes | None) -> None:
        given = [b for b in blobs if b is not None]
        if given and self.settings.finetune_pool_size == 0:
            raise VoiceError("This server does not accept fine-tuned weights (finetune_pool_size is 0).",
                             code="finetune_disabled")
        for blob in given:
            if len(blob) == 0:
                raise VoiceError("An uploaded weight file is empty.", code="invalid_weights")
            if len(blob) > self.settings.max_weights_bytes:
                raise VoiceError(f"An uploaded weight file is {len(blob) / 1e6:.0f} MB; the limit is "
                                 f"{self.settings.max_weights_bytes / 1e6:.0f} MB.", code="upload_too_large")

    def _bundle_for_upload(self, weights: dict[str, Path]) -> Any:
        """The base bundle, or a throwaway one with the uploaded weights (which validates them)."""
        if not weights:
            return self.bundles.base
        gpt_name, sovits_name = _stored_name(weights, "gpt"), _stored_name(weights, "sovits")
        gpt = weights[gpt_name] if gpt_name else None
        sovits = weights[sovits_name] if sovits_name else None
        try:
            # with_weights loads through gpt_sovits.checkpoint.load_gpt / load_sovits (strict, no
            # pickled code) and the bundle checks that the models fit the shared SSL/BERT.
            return self.bundles.base.with_weights(str(gpt) if gpt else None, str(sovits) if sovits else None)
        except GSVError as exc:  # CheckpointError, ModelConfigError (weights that do not fit the base)
            raise VoiceError(f"The uploaded fine-tuned weights are not usable: {exc}", code="invalid_weights") from exc

    def _make_prompt(self, bundle: Any, result: IngestResult, prompt_text: str | None, language: str) -> Any:
        try:
            return self.prompt_class.from_audio(bundle, result.reference_32k, MODEL_SAMPLE_RATE, prompt_text,
                                                language, result.aux_pairs())
        except GSVError:
            raise
        except ValueError as exc:
            raise VoiceError(f"The voice prompt could not be computed: {exc}", code="invalid_reference") from exc

    def _embed(self, result: IngestResult) -> np.ndarray | None:
        if self.speaker_encoder is None or result.speech_16k.size == 0:
            return None
        try:
            vector = np.asarray(self.speaker_encoder.embed(result.speech_16k, 16000), dtype=np.float32)
        except ValueError as exc:  # e.g. GE2E found nothing voiced; the voice is still usable
            log.warning("speaker embedding failed: %s", exc)
            return None
        norm = float(np.linalg.norm(vector))
        return vector / norm if np.isfinite(norm) and norm > 0 else None

    def _duplicate_warnings(self, owner_h: str, embedding: np.ndarray | None) -> builtins.list[dict[str, Any]]:
        if embedding is None:
            return []
        warnings = []
        for hit in self.index.similar(owner_h, embedding, k=3):
            if hit.similarity >= self.settings.duplicate_threshold:
                warnings.append({
                    "code": "near_duplicate", "voice_id": hit.voice_id, "similarity": round(hit.similarity, 4),
                    "message": f"This voice sounds like your voice {hit.voice_id} "
                               f"(similarity {hit.similarity:.2f}); it was created anyway.",
                })
        return warnings

    @staticmethod
    def _stats(result: IngestResult, transcript: str | None, prompt_text: str | None) -> dict[str, Any]:
        stats = dict(result.stats)
        if prompt_text is not None:
            stats["prompt_mode"] = "text"
        else:
            stats["prompt_mode"] = "ref_free"
            stats["prompt_mode_reason"] = ("no transcript given" if transcript is None else
                                           "the transcript covers the whole upload, not the chosen reference")
        return stats

    @staticmethod
    def _files(staging: Path, prompt: Any, result: IngestResult, weights: dict[str, Path]) -> dict[str, FileSource]:
        prompt_dir = staging / PROMPT_DIR
        prompt.save(prompt_dir)
        files: dict[str, FileSource] = {
            f"{PROMPT_DIR}/{p.relative_to(prompt_dir).as_posix()}": p
            for p in sorted(prompt_dir.rglob("*")) if p.is_file()
        }
        files["audio/reference.flac"] = encode_audio(result.reference_32k, MODEL_SAMPLE_RATE, "flac")
        files["audio/source.flac"] = encode_audio(result.audio_32k, MODEL_SAMPLE_RATE, "flac")
        for i, aux in enumerate(result.aux_32k):
            files[f"audio/aux_{i}.flac"] = encode_audio(aux, MODEL_SAMPLE_RATE, "flac")
        files.update(weights)
        return files

    # ------------------------------------------------------------------------------ read
    def get(self, voice_id: str, owner: str | None = None) -> VoiceRecord:
        """The record; with `owner`, only if it belongs to that owner. Raises `VoiceNotFoundError`."""
        record = self.store.get(voice_id)
        if record is None or (owner is not None and record.owner != owner_hash(owner)):
            raise VoiceNotFoundError(f"Voice '{voice_id}' does not exist.")
        return record

    def list(self, owner: str) -> builtins.list[VoiceRecord]:
        """The owner's voices, oldest first."""
        return self.store.list(owner_hash(owner))

    def load_prompt(self, voice_id: str, owner: str | None = None) -> Any:
        """The voice's `VoicePrompt`: memory LRU first, then the stored tensors (integrity-checked)."""
        record = self.get(voice_id, owner)  # always consult the store: a deleted voice never comes back
        key = (record.id, record.content_hash)
        prompt = self.cache.get(key)
        if prompt is not None:
            return prompt
        prompt = self.prompt_class.load(self.store.local_dir(record.id) / PROMPT_DIR)
        if prompt.content_hash != record.content_hash:
            raise GSVError(f"The stored tensors of voice '{voice_id}' do not match its record; "
                           "re-create the voice.", code="voice_corrupt")
        if self.store.get(voice_id) is None:  # deleted while we were reading
            raise VoiceNotFoundError(f"Voice '{voice_id}' does not exist.")
        self.cache.put(key, prompt)
        return prompt

    def weights_paths(self, voice_id: str, owner: str | None = None) -> tuple[str | None, str | None]:
        """Local paths of the voice's fine-tuned (GPT, SoVITS) weights; (None, None) for base voices."""
        record = self.get(voice_id, owner)
        root = self.store.local_dir(record.id)
        return (str(root / record.gpt_weights) if record.gpt_weights else None,
                str(root / record.sovits_weights) if record.sovits_weights else None)

    def bundle_for(self, voice_id: str, owner: str | None = None) -> Any:
        """The model bundle that synthesizes this voice (base, or pooled fine-tune)."""
        return self.bundles.get(*self.weights_paths(voice_id, owner))

    def similar(self, voice_id: str, owner: str, k: int = 5) -> builtins.list[SimilarVoice]:
        """The owner's voices that sound most like `voice_id` (best first)."""
        record = self.get(voice_id, owner)
        if record.embedding is None or voice_id not in self.index:
            return []
        return self.index.similar(record.owner, voice_id, k)

    # ---------------------------------------------------------------------------- delete
    def delete(self, voice_id: str, owner: str | None = None) -> None:
        """Erase the voice: registry row (committed first), files, cached prompt, index entry,
        and any loaded fine-tuned bundle. Raises `VoiceNotFoundError` when it is not visible."""
        record = self.get(voice_id, owner)
        paths = self.weights_paths(voice_id) if record.has_finetune else (None, None)
        self.store.delete(record.id)
        self.cache.evict(record.id)
        self.index.remove(record.id)
        evict = getattr(self.bundles, "evict", None)
        if record.has_finetune and callable(evict):
            evict(*paths)

    def close(self) -> None:
        self.store.close()


def _stage_weights(staging: Path, gpt: bytes | None, sovits: bytes | None) -> dict[str, Path]:
    """Write uploaded weights to the staging dir under their final names (for loading/validation).

    The name follows the content, so an operator (and the loader) can tell our single-file
    `.safetensors` from an official `.ckpt`/`.pth` without opening it.
    """
    out: dict[str, Path] = {}
    for (official, native), blob in (((GPT_FILE, GPT_NATIVE_FILE), gpt), ((SOVITS_FILE, SOVITS_NATIVE_FILE), sovits)):
        if blob is not None:
            name = native if _is_safetensors(blob) else official
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
            out[name] = path
    return out


def _stored_name(weights: dict[str, Path], kind: str) -> str | None:
    """The staged/stored file name of the uploaded `kind` ("gpt" or "sovits") weights, if any."""
    names = (GPT_FILE, GPT_NATIVE_FILE) if kind == "gpt" else (SOVITS_FILE, SOVITS_NATIVE_FILE)
    return next((name for name in names if name in weights), None)


def _is_safetensors(blob: bytes) -> bool:
    """safetensors: a little-endian u64 header length, then a JSON object that fits in the file."""
    if len(blob) < 10 or blob[8:9] != b"{":
        return False
    return 0 < int.from_bytes(blob[:8], "little") <= len(blob) - 8


__all__ = ["BundleProvider", "IngestError", "PromptCache", "VoiceError", "VoiceNotFoundError",
           "VoiceService", "owner_hash"]
