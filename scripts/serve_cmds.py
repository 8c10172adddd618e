"""`gsv serve`, `gsv clone`, `gsv say`: run the service, or use its voice registry directly.

`clone` and `say` work on the local data directory without a server (they open the same SQLite +
files registry the server uses, so stop the server first or use `--url` to talk to it instead).
Model flags mirror `Settings` (and the same `GSV_*` environment variables apply).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from gpt_sovits.errors import GSVError

log = logging.getLogger("gsv.serve")


class UsageError(GSVError, ValueError):
    """Flags that contradict each other or do not validate (printed as one line, exit status 2)."""

    code = "invalid_arguments"

_MODEL_FLAGS = ("data_dir", "models_dir", "model_version", "gpt", "sovits", "hubert_dir", "bert_dir", "sv_path",
                "device")
_PATH_FLAGS = {"models_dir": "--models-dir", "gpt": "--gpt", "sovits": "--sovits", "hubert_dir": "--hubert-dir",
               "bert_dir": "--bert-dir", "sv_path": "--sv"}


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models and data (default: GSV_* environment, then built-in defaults)")
    g.add_argument("--data-dir", help="voice registry directory (default ./data)")
    g.add_argument("--models-dir", help="folder in the official GPT_SoVITS/pretrained_models layout, or ours "
                                       "(gpt/sovits .safetensors + .json, hubert/, bert/); default: the base "
                                       "model in models/ (GSV_DEFAULT_MODELS_DIR) when complete")
    g.add_argument("--model-version", "--version", dest="model_version",
                   help="model set to take from --models-dir: v1, v2 (default), v2Pro, v2ProPlus")
    g.add_argument("--gpt", help="base GPT weights (.ckpt or .safetensors); overrides --models-dir")
    g.add_argument("--sovits", help="base SoVITS weights (.pth or .safetensors); overrides --models-dir")
    g.add_argument("--hubert-dir", help="chinese-hubert-base directory (Hugging Face format) or our content encoder")
    g.add_argument("--bert-dir", help="chinese-roberta-wwm-ext-large directory (Chinese text)")
    g.add_argument("--sv", dest="sv_path", help="ERes2NetV2 checkpoint (needed by v2Pro/v2ProPlus SoVITS)")
    g.add_argument("--device", help="torch device: cpu, cuda, cuda:1, ...")
    g.add_argument("--random-weights", action="store_true", default=None,
                   help="tiny random models: everything runs, the audio is noise")


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="talk to a running server at this base URL instead of the local data dir")
    p.add_argument("--api-key", help="API key (server mode: sent as Bearer; local mode: selects the key's voices)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (voices, TTS, streaming, web page)",
                       description="Serve the REST/WebSocket API and the web page at http://HOST:PORT/.")
    _model_args(p)
    p.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--workers", type=int, help="synthesis worker threads (default 1)")
    p.add_argument("--api-key", action="append", dest="api_keys", help="accepted API key (repeatable)")
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    p.set_defaults(func=run_serve)

    p = sub.add_parser("clone", help="create a voice from a recording",
                       description="Clone a voice from about a minute of speech; prints the voice ID.")
    p.add_argument("file", help="recording of one speaker (wav/flac/ogg/mp3)")
    p.add_argument("--name", help="display name (default: the file name)")
    p.add_argument("--transcript", help="what is said in the recording (optional)")
    p.add_argument("--language", default="auto", help="language spoken (auto, en, zh, ...)")
    p.add_argument("--gpt-weights", dest="ft_gpt", help="fine-tuned GPT weights to attach to the voice")
    p.add_argument("--sovits-weights", dest="ft_sovits", help="fine-tuned SoVITS weights to attach to the voice")
    _client_args(p)
    _model_args(p)
    p.set_defaults(func=run_clone)

    p = sub.add_parser("say", help="synthesize text with a stored voice",
                       description="Make voice VOICE say TEXT and write the audio to -o.")
    p.add_argument("voice", help="voice ID (from `gsv clone` or POST /v1/voices)")
    p.add_argument("text", help="text to say")
    p.add_argument("-o", "--output", required=True,
                   help="output file; the format follows the extension (.wav/.flac/.ogg/.mp3)")
    p.add_argument("--language", default="auto", help="language of the text")
    p.add_argument("--seed", type=int, help="random seed for reproducible output")
    p.add_argument("--speed", type=float, default=1.0, help="speaking rate (1.0 = normal)")
    _client_args(p)
    _model_args(p)
    p.set_defaults(func=run_say)


def _settings(args: argparse.Namespace, **extra: Any):
    from serving.settings import Settings

    values = {k: getattr(args, k, None) for k in _MODEL_FLAGS}
    values["random_weights"] = getattr(args, "random_weights", None)
    if values["random_weights"]:
        ignored = [flag for name, flag in _PATH_FLAGS.items() if values.get(name) is not None]
        if ignored:  # e.g. `--gpt FT` meant as a fine-tune to attach: say so instead of silently dropping it
            raise UsageError(
                f"{', '.join(ignored)} choose the base models, which --random-weights replaces; drop one of them"
                + (" (to attach fine-tuned weights to a voice, use --gpt-weights / --sovits-weights)"
                   if args.func is run_clone else "")
            )
    values.update(extra)
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"invalid settings ({problems})") from exc


def _missing_models(settings: Any) -> bool:
    """Print what is missing and how to provide it; True when the caller must stop."""
    message = settings.describe_missing_models()
    if message:
        print(message, file=sys.stderr)
        return True
    return False


def run_serve(args: argparse.Namespace) -> int:
    from scripts.bench_cmds import quiet_openmp_waits

    quiet_openmp_waits()  # before torch loads: spinning OpenMP workers starve the GPT/SoVITS threads
    settings = _settings(args, host=args.host, port=args.port, workers=args.workers, api_keys=args.api_keys)
    if _missing_models(settings):
        return 2
    if settings.random_weights:
        log.warning("serving tiny random models: the audio is noise (the web page says so)")
    serve(settings, log_level=args.log_level)
    return 0


def serve(settings: Any, log_level: str = "info") -> None:
    """Run uvicorn with graceful drain: on SIGTERM/SIGINT readiness fails at once, the socket
    closes, in-flight requests finish (up to `drain_timeout_s`), then the engine drains."""
    import uvicorn

    from serving.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                            timeout_graceful_shutdown=int(settings.drain_timeout_s))
    make_server(config).run()


def make_server(config: Any) -> Any:
    """A uvicorn.Server whose exit handler marks the app as draining before it stops accepting
    connections (uvicorn is imported lazily so `gsv --help` stays fast)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state = getattr(getattr(self.config.app, "state", None), "gsv", None)
            if state is not None:
                state.begin_drain()
            super().handle_exit(sig, frame)

    return DrainingServer(config)


# ------------------------------------------------------------------------ local mode
def _owner(api_key: str | None) -> str:
    from serving.auth import ANONYMOUS_OWNER, owner_id

    return owner_id(api_key) if api_key else ANONYMOUS_OWNER


def _local_services(args: argparse.Namespace) -> tuple[Any, Any] | None:
    from serving.app import build_voice_service, load_bundle
    from serving.engine import BundlePool

    from serving.storage import DataDirLockedError

    settings = _settings(args)
    if _missing_models(settings):
        return None
    pool = BundlePool(load_bundle(settings), settings.finetune_pool_size)
    try:
        return build_voice_service(settings, pool), pool
    except DataDirLockedError as exc:  # the usual cause: `gsv serve` runs on the same data dir
        raise DataDirLockedError(
            f"{exc} If `gsv serve` is running on it, pass --url http://HOST:PORT to use that server instead."
        ) from exc


def _read_input(path: str, what: str) -> bytes:
    if not Path(path).is_file():
        raise UsageError(f"{what} '{path}' not found: pass the path of an existing file")
    return Path(path).read_bytes()


def _read_optional(path: str | None, what: str) -> bytes | None:
    return _read_input(path, what) if path else None


def run_clone(args: argparse.Namespace) -> int:
    audio = _read_input(args.file, "recording")
    ft_gpt = _read_optional(args.ft_gpt, "--gpt-weights file")
    ft_sovits = _read_optional(args.ft_sovits, "--sovits-weights file")
    if args.url:
        return _clone_remote(args, audio)
    services = _local_services(args)
    if services is None:
        return 2
    voices, _ = services
    try:
        record = voices.create(_owner(args.api_key), audio, Path(args.file).name, args.name, args.language,
                               args.transcript, ft_gpt, ft_sovits)
    finally:
        voices.close()
    for warning in record.warnings:
        print(f"warning: {warning.get('message', warning)}", file=sys.stderr)
    print(record.id)
    return 0


class ServerUnreachableError(GSVError, ConnectionError):
    """`--url` names no running server (refused, timed out, bad address)."""

    code = "server_unreachable"


def _post(url: str, path: str, **kwargs: Any) -> Any:
    """POST to the server at `url`; connection problems become one clear line, not a traceback."""
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request at INFO
    try:
        return httpx.post(url.rstrip("/") + path, timeout=600, **kwargs)
    except httpx.TransportError as exc:
        raise ServerUnreachableError(
            f"cannot reach the server at {url} ({exc}); start it with `gsv serve` or fix --url"
        ) from exc


def _clone_remote(args: argparse.Namespace, audio: bytes) -> int:
    files = {"file": (Path(args.file).name, audio)}
    for field, path in (("gpt_weights", args.ft_gpt), ("sovits_weights", args.ft_sovits)):
        if path:
            files[field] = (Path(path).name, Path(path).read_bytes())
    data = {k: v for k, v in (("name", args.name), ("language", args.language),
                              ("transcript", args.transcript)) if v}
    resp = _post(args.url, "/v1/voices", files=files, data=data, headers=_auth(args.api_key))
    if resp.status_code != 201:
        return _http_error(resp)
    body = resp.json()
    for warning in body.get("warnings", []):
        print(f"warning: {warning.get('message', warning)}", file=sys.stderr)
    print(body["id"])
    return 0


def run_say(args: argparse.Namespace) -> int:
    fmt = Path(args.output).suffix.lstrip(".").lower() or "wav"
    if args.url:
        return _say_remote(args, fmt)
    services = _local_services(args)
    if services is None:
        return 2
    voices, pool = services
    from gpt_sovits.pipeline import SynthesisParams, Synthesizer
    from serving.audio_encoding import encode_file

    try:
        owner = _owner(args.api_key)
        prompt = voices.load_prompt(args.voice, owner)
        bundle = pool.get(*voices.weights_paths(args.voice, owner))
    finally:
        voices.close()
    params = SynthesisParams(text_lang=args.language, seed=args.seed, speed=args.speed)
    audio = Synthesizer(bundle).synthesize(args.text, prompt, params)
    Path(args.output).write_bytes(encode_file(audio, bundle.sample_rate, fmt))
    print(f"wrote {args.output}: {len(audio) / bundle.sample_rate:.2f} s")
    return 0


def _say_remote(args: argparse.Namespace, fmt: str) -> int:
    body = {"voice_id": args.voice, "text": args.text, "language": args.language, "format": fmt,
            "speed": args.speed}
    if args.seed is not None:
        body["seed"] = args.seed
    resp = _post(args.url, "/v1/tts", json=body, headers=_auth(args.api_key))
    if resp.status_code != 200:
        return _http_error(resp)
    Path(args.output).write_bytes(resp.content)
    print(f"wrote {args.output}")
    return 0


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _http_error(resp: Any) -> int:
    try:
        err = resp.json()["error"]
        print(f"error [{err['code']}]: {err['message']}", file=sys.stderr)
    except Exception:
        print(f"error: HTTP {resp.status_code}: {resp.text[:500]}", file=sys.stderr)
    return 1
