"""Wire schemas of the HTTP/WebSocket API (pydantic), with bounds and Literals.

Routes validate against these and nothing else; they are also what /openapi.json publishes.
Limits that depend on settings (text length, body size) are checked in the routes, so the
schemas here carry only fixed, model-level bounds.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["auto", "auto_yue", "en", "zh", "ja", "yue", "ko", "all_zh", "all_ja", "all_yue", "all_ko"]
SplitMethod = Literal["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"]
OutputFormat = Literal["wav", "pcm", "flac", "ogg", "mp3", "opus"]
StreamFormat = Literal["wav", "pcm"]
VoiceIdStr = str

_VOICE_ID = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$",
                  description="Voice ID returned by POST /v1/voices.")


class SamplingParams(BaseModel):
    """GPT sampling and rendering knobs, with the GPT-SoVITS API defaults."""

    model_config = ConfigDict(extra="forbid")

    language: Language = Field("auto", description="Language of `text`; auto detects per run.")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate (1 = natural).")
    top_k: int | None = Field(None, ge=1, le=1024, description="Sample among the k most likely tokens "
                              "(default: the model's recommendation; 15 for the official weights).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (1 = off).")
    temperature: float = Field(1.0, ge=0.01, le=2.0, description="Sampling temperature.")
    repetition_penalty: float | None = Field(None, ge=1.0, le=2.0, description="Penalty on repeated tokens "
                                             "(default: the model's recommendation; 1.35 for the official weights).")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Fixed seed for reproducible output.")
    grammar: bool | None = Field(None, description="Decode under the model's token grammar, e.g. a walk "
                                 "through the text's phones (default: as the model's config says; false: free decoding).")
    noise_scale: float = Field(0.5, ge=0.0, le=1.0,
                               description="SoVITS prior noise (0 = deterministic rendering of the tokens).")
    split_method: SplitMethod = Field("cut5", description="How text is split into segments (cut0 = none).")
    sample_rate: int | None = Field(None, ge=8000, le=48000,
                                    description="Resample output to this rate (default: model rate).")
    first_chunk_tokens: int | None = Field(
        None, ge=1, le=64,
        description="Streaming only: 40 ms tokens of audio in the first chunk (server default 4). "
                    "Larger arrives later, with more audio to start playback on.")


class TTSRequest(SamplingParams):
    """POST /v1/tts body."""

    voice_id: VoiceIdStr = _VOICE_ID
    text: str = Field(min_length=1, description="Text to speak (limit: settings.max_text_chars).")
    format: OutputFormat = Field("wav", description="Container/codec of the audio returned.")
    stream: bool = Field(False, description="Chunked streaming (wav or pcm only) instead of one file.")


class SpeechRequest(BaseModel):
    """OpenAI-compatible POST /v1/audio/speech body. `voice` is one of our voice IDs."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("gpt-sovits-v2", min_length=1, max_length=64,
                       description="Accepted for compatibility; the server has one model.")
    input: str = Field(min_length=1, description="Text to speak.")
    voice: VoiceIdStr = _VOICE_ID
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, max_length=4096,
                                     description="Accepted for compatibility and ignored.")
    stream_format: Literal["audio"] | None = Field(
        None, description="Only raw audio streaming is supported ('audio'); 'sse' is not.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What went wrong and what to do.")
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer has this shape."""

    error: ErrorDetail


class VoiceOut(BaseModel):
    """A stored voice as returned by the API (never the owner, embedding or file list)."""

    id: str
    name: str
    language: str
    transcript: str | None = None
    prompt_text: str | None = Field(None, description="Transcript used with the reference; null = reference-free.")
    created_at: str = Field(description="Creation time, ISO 8601 UTC.")
    status: str = "ready"
    has_finetune: bool = False
    stats: dict[str, Any] = Field(default_factory=dict, description="Ingest statistics (durations, levels).")
    warnings: list[dict[str, Any]] = Field(default_factory=list,
                                           description="Near-duplicate voices and other notes.")


class VoiceList(BaseModel):
    voices: list[VoiceOut]


class SimilarVoice(BaseModel):
    id: str
    name: str | None = None
    similarity: float


class SimilarList(BaseModel):
    voice_id: str
    similar: list[SimilarVoice]


class ServerInfo(BaseModel):
    """GET /v1/info: what the web page and clients need to know about this server."""

    random_weights: bool
    model: str | None = None
    """Which base model is loaded (where from, SoVITS version, content encoder); null while loading."""
    sample_rate: int
    formats: list[str]
    stream_formats: list[str]
    auth_required: bool
    max_text_chars: int
    languages: list[str]


class HealthStatus(BaseModel):
    status: Literal["ok", "ready", "starting", "draining", "failed"]
    detail: str | None = None


# ----------------------------------------------------------------------------- WebSocket
class WSConfig(SamplingParams):
    """First message on /v1/tts/ws. Audio frames are PCM s16le mono at `sample_rate`."""

    type: Literal["config"]
    voice_id: VoiceIdStr = _VOICE_ID
    api_key: str | None = Field(None, max_length=512,
                                description="For browsers, which cannot set headers on WebSockets.")


class WSText(BaseModel):
    """Append text; whole sentences are synthesized as soon as they are complete."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str = Field(min_length=0)


class WSFlush(BaseModel):
    """Synthesize whatever text is buffered, even without a sentence end."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["flush"]


class WSClose(BaseModel):
    """Flush, finish all audio, send `done`, then close."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["close"]
