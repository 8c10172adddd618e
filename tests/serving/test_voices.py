"""VoiceService: create/get/list/delete, transcripts, owners, prompt cache, duplicates, fine-tunes.

Most tests use `FakePrompt`, which keeps `VoicePrompt`'s contract (3-10 s reference check,
save/load through files, content hash) at no model cost, so they exercise the service logic
with the real ingest, store, speaker encoder and similarity index. `test_real_tiny_bundle` runs
the same flow with `ModelBundle.random_tiny()` and the real `VoicePrompt`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serving.ingest import IngestError, Ingestor
from serving.settings import Settings
from serving.storage import SQLiteFileStore
from serving.voices import GPT_FILE, SOVITS_FILE, VoiceError, VoiceNotFoundError, VoiceService, owner_hash


class FakePrompt:
    """Stand-in for `VoicePrompt` with the same contract and no models."""

    def __init__(self, reference: np.ndarray, prompt_text: str | None, prompt_lang: str, n_aux: int,
                 bundle: str) -> None:
        self.reference, self.prompt_text, self.prompt_lang = reference, prompt_text, prompt_lang
        self.n_aux, self.bundle = n_aux, bundle

    @classmethod
    def from_audio(cls, bundle, reference, sr, prompt_text=None, prompt_lang="auto", aux=()):
        seconds = len(reference) / sr
        if not 3.0 <= seconds <= 10.0:
            raise ValueError(f"reference is {seconds:.2f} s")
        assert sr == 32000 and all(a_sr == 32000 for _, a_sr in aux)
        return cls(np.asarray(reference, np.float32), prompt_text, prompt_lang, len(aux), bundle.name)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.reference.tobytes() + (self.prompt_text or "").encode()).hexdigest()[:16]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "reference.npy", self.reference)
        meta = {"prompt_text": self.prompt_text, "prompt_lang": self.prompt_lang, "n_aux": self.n_aux,
                "bundle": self.bundle}
        (directory / "voice.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> "FakePrompt":
        meta = json.loads((directory / "voice.json").read_text())
        return cls(np.load(directory / "reference.npy"), meta["prompt_text"], meta["prompt_lang"], meta["n_aux"],
                   meta["bundle"])


@dataclasses.dataclass
class FakeBundle:
    name: str = "base"

    def with_weights(self, gpt: str | None = None, sovits: str | None = None) -> "FakeBundle":
        """Validates with the real checkpoint loaders, like `ModelBundle.with_weights`."""
        from gpt_sovits.checkpoint import load_gpt, load_sovits

        if gpt:
            load_gpt(gpt)
        if sovits:
            load_sovits(sovits)
        return FakeBundle(name=f"finetune:{Path(gpt or sovits).parent.parent.name}")


class FakePool:
    def __init__(self) -> None:
        self.base = FakeBundle()
        self.requests: list[tuple[str | None, str | None]] = []
        self.evicted: list[tuple[str | None, str | None]] = []
        self.adopted: dict[tuple[str | None, str | None], FakeBundle] = {}

    def put(self, gpt: str | None, sovits: str | None, bundle: FakeBundle) -> None:
        self.adopted[(gpt, sovits)] = bundle

    def get(self, gpt: str | None, sovits: str | None) -> FakeBundle:
        self.requests.append((gpt, sovits))
        return self.base if not gpt and not sovits else self.base.with_weights(gpt, sovits)

    def evict(self, gpt: str | None, sovits: str | None) -> None:
        self.evicted.append((gpt, sovits))


@pytest.fixture(scope="module")
def encoder():
    import speaker_encoder

    model, _ = speaker_encoder.load()
    return model


@pytest.fixture(scope="module")
def audio(voices_dir: Path) -> dict[str, bytes]:
    """A one-minute upload plus short clips (short ones keep the tests fast)."""
    utts = [sf.read(voices_dir / "en_slt" / "utts" / f"00{i}.flac", dtype="float32") for i in (1, 2)]
    sr = utts[0][1]
    pair = np.concatenate([utts[0][0], np.zeros(int(0.3 * sr), np.float32), utts[1][0]])
    buf = io.BytesIO()
    sf.write(buf, pair, sr, format="FLAC")
    return {
        "slt": (voices_dir / "en_slt" / "clone.flac").read_bytes(),
        "slt_ref": (voices_dir / "en_slt" / "ref.flac").read_bytes(),
        "slt_pair": buf.getvalue(),
        "allison_ref": (voices_dir / "en_allison" / "ref.flac").read_bytes(),
    }


@pytest.fixture
def make_service(tmp_path: Path, encoder):
    made: list[VoiceService] = []

    def make(pool: FakePool | None = None, **overrides) -> VoiceService:
        settings = Settings(data_dir=tmp_path / "data", max_aux_refs=2, **overrides)
        service = VoiceService(SQLiteFileStore(settings.data_dir), pool or FakePool(), encoder, settings,
                               ingestor=Ingestor(settings), prompt_class=FakePrompt)
        service.start()
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


def test_create_stores_everything_and_serves_the_prompt(make_service, audio) -> None:
    service = make_service()
    record = service.create("key-a", audio["slt"], "clone.flac", name="SLT", language="EN",
                            transcript="fifteen sentences of text")
    assert record.name == "SLT" and record.language == "en"
    assert record.owner == owner_hash("key-a") and "key-a" not in record.owner
    assert record.transcript == "fifteen sentences of text"
    assert record.prompt_text is None  # the transcript covers the whole minute, not the slice
    assert record.stats["prompt_mode"] == "ref_free"
    assert "not the chosen reference" in record.stats["prompt_mode_reason"]
    assert {"prompt/voice.json", "prompt/reference.npy", "audio/reference.flac", "audio/source.flac",
            "audio/aux_0.flac", "audio/aux_1.flac"} == set(record.files)
    assert service.store.verify(record.id) == []
    assert record.embedding.shape == (256,) and np.linalg.norm(record.embedding) == pytest.approx(1, abs=1e-5)
    ref, sr = sf.read(io.BytesIO(service.store.read_file(record.id, "audio/reference.flac")))
    assert sr == 32000 and 3.0 <= len(ref) / sr <= 10.0
    source, _ = sf.read(io.BytesIO(service.store.read_file(record.id, "audio/source.flac")))
    t0, t1 = record.stats["source_trim_s"]
    assert len(source) / 32000 == pytest.approx(t1 - t0, abs=0.01)
    assert 0 <= t0 < 1.0 and record.stats["duration_s"] - 1.0 < t1 <= record.stats["duration_s"]

    prompt = service.load_prompt(record.id, "key-a")
    assert prompt.content_hash == record.content_hash
    assert prompt.n_aux == 2 and prompt.prompt_text is None and prompt.prompt_lang == "en"
    assert service.load_prompt(record.id) is prompt  # served from memory
    assert service.get(record.id, "key-a").id == record.id
    assert [r.id for r in service.list("key-a")] == [record.id]


def test_transcript_is_used_when_the_reference_is_the_whole_upload(make_service, audio) -> None:
    service = make_service()
    text = "The weather was so nice on Saturday that we decided to eat lunch outside in the park."
    record = service.create("k", audio["slt_ref"], "ref.flac", transcript=f"  {text} ")
    assert record.prompt_text == text
    assert record.stats["prompt_mode"] == "text"
    assert service.load_prompt(record.id).prompt_text == text
    plain = service.create("k", audio["slt_ref"], "ref.flac")
    assert plain.prompt_text is None and plain.stats["prompt_mode_reason"] == "no transcript given"
    assert plain.name == "ref"  # named after the file when no name is given


def test_other_owners_cannot_see_a_voice(make_service, audio) -> None:
    service = make_service()
    record = service.create("alice", audio["slt_ref"], "a.flac")
    for call in (lambda: service.get(record.id, "bob"), lambda: service.load_prompt(record.id, "bob"),
                 lambda: service.delete(record.id, "bob"), lambda: service.similar(record.id, "bob")):
        with pytest.raises(VoiceNotFoundError) as info:
            call()
        assert info.value.code == "voice_not_found"
    assert service.list("bob") == []
    assert service.get(record.id, "alice").id == record.id
    with pytest.raises(VoiceNotFoundError):
        service.get("v_doesnotexist")
    with pytest.raises(VoiceNotFoundError):
        service.get("../../etc/passwd")


def test_prompt_cache_is_lru_with_disk_as_second_level(make_service, audio) -> None:
    service = make_service(voice_cache_entries=1)
    first = service.create("k", audio["slt_ref"], "a.flac", transcript="x")
    second = service.create("k", audio["slt_ref"], "b.flac")
    assert first.id not in service.cache and second.id in service.cache
    misses = service.cache.misses
    loaded = service.load_prompt(first.id)  # evicted from memory: read from disk
    assert service.cache.misses == misses + 1
    assert loaded.content_hash == first.content_hash and loaded.prompt_text == "x"
    assert service.load_prompt(first.id) is loaded
    assert second.id not in service.cache


def test_corrupt_stored_tensors_are_detected(make_service, audio) -> None:
    service = make_service()
    record = service.create("k", audio["slt_ref"], "a.flac")
    service.cache.evict(record.id)
    path = service.store.local_dir(record.id) / "prompt" / "reference.npy"
    np.save(path, np.zeros(32000 * 4, np.float32))
    with pytest.raises(Exception) as info:
        service.load_prompt(record.id)
    assert getattr(info.value, "code", None) == "voice_corrupt"


def test_delete_erases_files_cache_and_index_and_survives_restart(make_service, audio, tmp_path) -> None:
    service = make_service()
    record = service.create("k", audio["slt_ref"], "a.flac")
    keep = service.create("k", audio["allison_ref"], "b.flac")
    service.load_prompt(record.id)
    voice_dir = service.store.local_dir(record.id)
    assert voice_dir.is_dir() and record.id in service.index and record.id in service.cache

    service.delete(record.id, "k")

    assert not voice_dir.exists()
    assert record.id not in service.cache and record.id not in service.index
    with pytest.raises(VoiceNotFoundError):
        service.load_prompt(record.id)
    with pytest.raises(VoiceNotFoundError):
        service.delete(record.id)
    assert [r.id for r in service.list("k")] == [keep.id]
    service.close()

    again = make_service()
    with pytest.raises(VoiceNotFoundError):
        again.get(record.id)
    assert record.id not in again.index and keep.id in again.index
    assert again.load_prompt(keep.id).content_hash == keep.content_hash


def test_near_duplicates_are_flagged_and_similar_voices_ranked(make_service, audio) -> None:
    service = make_service(duplicate_threshold=0.85)
    slt = service.create("k", audio["slt_ref"], "slt.flac")
    allison = service.create("k", audio["allison_ref"], "allison.flac")
    assert slt.warnings == [] and allison.warnings == []  # different speakers (cosine ~0.65)
    again = service.create("k", audio["slt_pair"], "slt-pair.flac")  # other sentences, same voice
    assert [w["voice_id"] for w in again.warnings] == [slt.id]
    assert again.warnings[0]["code"] == "near_duplicate" and again.warnings[0]["similarity"] > 0.85
    assert service.get(again.id).warnings == again.warnings  # kept in the record

    ranked = service.similar(again.id, "k", k=5)
    assert [v.voice_id for v in ranked] == [slt.id, allison.id]
    assert ranked[0].similarity > ranked[1].similarity
    # Another owner's identical upload is not compared with this owner's voices.
    other = service.create("someone-else", audio["slt_ref"], "slt.flac")
    assert other.warnings == []


def test_bad_requests_store_nothing(make_service, audio) -> None:
    service = make_service(max_text_chars=50)
    cases = [
        (dict(name="x" * 101), "invalid_name"),
        (dict(name="bad\nname"), "invalid_name"),
        (dict(language="e n"), "invalid_language"),
        (dict(transcript="y" * 51), "text_too_long"),
        (dict(gpt_weights_bytes=b"definitely not a checkpoint"), "invalid_weights"),
        (dict(sovits_weights_bytes=b""), "invalid_weights"),
    ]
    for kwargs, code in cases:
        with pytest.raises(VoiceError) as info:
            service.create("k", audio["slt_ref"], "a.flac", **kwargs)
        assert info.value.code == code, kwargs
    with pytest.raises(IngestError) as info:
        service.create("k", b"", "empty.wav")
    assert info.value.code == "empty_upload"
    assert service.list("k") == []
    assert list(service.store.voices_dir.iterdir()) == []


def _official_tiny_weights(configs_dir: Path, tmp_path: Path) -> tuple[bytes, bytes]:
    """Official-format GPT .ckpt and SoVITS .pth with tiny random weights."""
    from gpt_sovits.checkpoint_legacy import export_official_gpt, export_official_sovits
    from gpt_sovits.config import GPTConfig, SoVITSConfig
    from gpt_sovits.sovits.model import SynthesizerTrn
    from gpt_sovits.t2s import T2SModel

    gpt_cfg = GPTConfig.load(configs_dir / "gpt_tiny.json")
    # The official format hard-codes ffn = 4 * hidden and BERT width 1024.
    gpt_cfg = dataclasses.replace(gpt_cfg, ffn_dim=4 * gpt_cfg.hidden_dim, bert_dim=1024, n_layer=1)
    sovits_cfg = SoVITSConfig.load(configs_dir / "sovits_tiny.json")
    gpt = export_official_gpt(T2SModel(gpt_cfg), gpt_cfg, tmp_path / "ft" / "gpt.ckpt")
    sovits = export_official_sovits(SynthesizerTrn(sovits_cfg, with_posterior=False), sovits_cfg,
                                    tmp_path / "ft" / "sovits.pth")
    return gpt.read_bytes(), sovits.read_bytes()


def test_finetuned_weights_are_validated_stored_and_pooled(make_service, audio, configs_dir, tmp_path) -> None:
    gpt_bytes, sovits_bytes = _official_tiny_weights(configs_dir, tmp_path)
    pool = FakePool()
    service = make_service(pool=pool)
    with pytest.raises(VoiceError) as info:  # a SoVITS file offered as the GPT
        service.create("k", audio["slt_ref"], "a.flac", gpt_weights_bytes=sovits_bytes)
    assert info.value.code == "invalid_weights" and service.list("k") == []

    record = service.create("k", audio["slt_ref"], "a.flac", gpt_weights_bytes=gpt_bytes,
                            sovits_weights_bytes=sovits_bytes)
    assert (record.gpt_weights, record.sovits_weights) == (GPT_FILE, SOVITS_FILE)
    assert service.load_prompt(record.id).bundle.startswith("finetune:")  # prompt made with the fine-tune
    gpt_path, sovits_path = service.weights_paths(record.id)
    assert Path(gpt_path).read_bytes() == gpt_bytes and Path(sovits_path).read_bytes() == sovits_bytes
    # the bundle loaded to validate the upload is handed to the pool under the stored paths
    assert list(pool.adopted) == [(gpt_path, sovits_path)]
    assert pool.adopted[(gpt_path, sovits_path)].name == service.load_prompt(record.id).bundle
    assert service.bundle_for(record.id).name.startswith("finetune:")
    assert pool.requests[-1] == (gpt_path, sovits_path)
    service.delete(record.id)
    assert pool.evicted == [(gpt_path, sovits_path)]
    assert not Path(gpt_path).exists()


def test_finetune_disabled(make_service, audio) -> None:
    service = make_service(finetune_pool_size=0)
    with pytest.raises(VoiceError) as info:
        service.create("k", audio["slt_ref"], "a.flac", gpt_weights_bytes=b"x")
    assert info.value.code == "finetune_disabled"


@pytest.mark.slow
def test_real_tiny_bundle(tmp_path, encoder, audio, configs_dir) -> None:
    """The same flow with the real models (tiny, random) and the real `VoicePrompt`."""
    try:
        from gpt_sovits.pipeline import ModelBundle

        bundle = ModelBundle.random_tiny()
    except Exception as exc:  # noqa: BLE001 - the pipeline is still being written by the lead
        pytest.skip(f"ModelBundle.random_tiny() not available yet: {exc}")
    settings = Settings(data_dir=tmp_path / "real", max_aux_refs=1)
    service = VoiceService(SQLiteFileStore(settings.data_dir), bundle, encoder, settings)
    text = "The weather was so nice on Saturday that we decided to eat lunch outside in the park."
    record = service.create("k", audio["slt_ref"], "ref.flac", language="en", transcript=text)
    sliced = service.create("k", audio["slt"], "clone.flac", language="en", transcript=text)
    assert record.prompt_text == text and sliced.prompt_text is None
    gpt_bytes, sovits_bytes = _official_tiny_weights(configs_dir, tmp_path)
    with pytest.raises(VoiceError) as info:  # BERT width 1024 does not fit the tiny base's BERT
        service.create("k", audio["slt_ref"], "ref.flac", gpt_weights_bytes=gpt_bytes)
    assert info.value.code == "invalid_weights"
    tuned = service.create("k", audio["slt_ref"], "ref.flac", sovits_weights_bytes=sovits_bytes)
    assert tuned.sovits_weights == SOVITS_FILE and tuned.gpt_weights is None
    service.close()

    restarted = VoiceService(SQLiteFileStore(settings.data_dir), bundle, encoder, settings)
    restarted.start()
    try:
        prompt = restarted.load_prompt(record.id, "k")
        assert prompt.content_hash == record.content_hash
        assert not prompt.ref_free and prompt.prompt_text == text
        ref_free = restarted.load_prompt(sliced.id, "k")
        assert ref_free.ref_free and len(ref_free.refer_specs) == 2  # reference + one auxiliary
        assert restarted.bundle_for(record.id) is bundle
        tuned_bundle = restarted.bundle_for(tuned.id, "k")
        assert tuned_bundle is not bundle and tuned_bundle.ssl is bundle.ssl  # shares the SSL model
        assert restarted.load_prompt(tuned.id, "k").content_hash == tuned.content_hash
    finally:
        restarted.close()
