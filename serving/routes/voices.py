"""/v1/voices: create (multipart upload), list, get, delete, similar voices."""
from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile

from serving.protocol import Language, SimilarList, SimilarVoice, VoiceList, VoiceOut
from serving.routes.deps import ERRORS, Caller, State, Voices

router = APIRouter(prefix="/v1/voices", tags=["voices"], responses=ERRORS)

VoiceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


def _plain(value: Any) -> Any:
    """JSON-safe copy (numpy scalars/arrays in ingest stats become Python numbers/lists)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def voice_out(record: Any) -> VoiceOut:
    """Public view of a `VoiceRecord`: no owner hash, embedding or file list."""
    created = datetime.fromtimestamp(record.created_at, tz=timezone.utc).isoformat()
    stats = _plain(dict(record.stats or {}))
    return VoiceOut(
        id=record.id, name=record.name, language=record.language, transcript=record.transcript,
        prompt_text=record.prompt_text, created_at=created, status=record.status,
        has_finetune=record.has_finetune,
        stats=stats, warnings=_plain(list(record.warnings or [])),
    )


async def _read(upload: UploadFile | None) -> bytes | None:
    return None if upload is None else await upload.read()


@router.post("", status_code=201, response_model=VoiceOut, summary="Clone a voice from a recording")
async def create_voice(
    caller: Caller,
    state: State,
    voices: Voices,
    file: Annotated[UploadFile, File(description="About a minute of speech: wav/flac/ogg/mp3, any rate")],
    name: Annotated[str | None, Form(max_length=200, description="Display name")] = None,
    language: Annotated[Language, Form(description="Language spoken in the recording")] = "auto",
    transcript: Annotated[str | None, Form(description="What is said (optional; improves cloning)")] = None,
    gpt_weights: Annotated[UploadFile | None, File(
        description="Fine-tuned GPT weights: official .ckpt, or our .safetensors (from `gsv finetune`)")] = None,
    sovits_weights: Annotated[UploadFile | None, File(
        description="Fine-tuned SoVITS weights: official .pth, or our .safetensors (from `gsv finetune`)")] = None,
) -> VoiceOut:
    audio = await file.read()
    gpt, sovits = await _read(gpt_weights), await _read(sovits_weights)
    create = functools.partial(voices.create, caller.owner, audio, file.filename, name, language, transcript,
                               gpt, sovits)
    record = await anyio.to_thread.run_sync(create, limiter=state.ingest_limiter)
    return voice_out(record)


@router.get("", response_model=VoiceList, summary="List your voices")
async def list_voices(caller: Caller, voices: Voices) -> VoiceList:
    records = await anyio.to_thread.run_sync(voices.list, caller.owner)
    return VoiceList(voices=[voice_out(r) for r in records])


@router.get("/{voice_id}", response_model=VoiceOut, summary="Get one voice")
async def get_voice(voice_id: VoiceId, caller: Caller, voices: Voices) -> VoiceOut:
    return voice_out(await anyio.to_thread.run_sync(voices.get, voice_id, caller.owner))


@router.delete("/{voice_id}", status_code=204, response_class=Response, summary="Delete a voice and its files")
async def delete_voice(voice_id: VoiceId, caller: Caller, voices: Voices) -> Response:
    await anyio.to_thread.run_sync(voices.delete, voice_id, caller.owner)
    return Response(status_code=204)


@router.get("/{voice_id}/similar", response_model=SimilarList, summary="Your voices that sound most alike")
async def similar_voices(voice_id: VoiceId, caller: Caller, voices: Voices,
                         k: Annotated[int, Query(ge=1, le=50)] = 5) -> SimilarList:
    hits = await anyio.to_thread.run_sync(voices.similar, voice_id, caller.owner, k)

    def name_of(vid: str) -> str | None:
        try:
            return voices.get(vid, caller.owner).name
        except Exception:  # deleted in between: still report the hit
            return None

    out = [SimilarVoice(id=h.voice_id, name=await anyio.to_thread.run_sync(name_of, h.voice_id),
                        similarity=round(float(h.similarity), 4)) for h in hits]
    return SimilarList(voice_id=voice_id, similar=out)
