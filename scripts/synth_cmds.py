"""`gsv synth`: one-off synthesis from weight files and a reference clip, no service needed."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger("gsv.synth")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="synthesize text with a reference clip and GPT/SoVITS weights",
        description="Clone the voice of --ref and read --text. Use --random-tiny to try the whole "
        "pipeline on tiny random models (the audio is noise).",
    )
    weights = p.add_argument_group("weights (local paths; nothing is downloaded)")
    weights.add_argument("--gpt", help="GPT weights: official .ckpt or our .safetensors")
    weights.add_argument("--sovits", help="SoVITS weights: official .pth or our .safetensors")
    weights.add_argument("--hubert", help="chinese-hubert-base directory (Hugging Face format) or our content encoder")
    weights.add_argument("--bert", help="chinese-roberta-wwm-ext-large directory (needed for zh text)")
    weights.add_argument("--sv", help="ERes2NetV2 checkpoint (only for v2Pro/v2ProPlus SoVITS)")
    weights.add_argument(
        "--models-dir",
        help="one folder in the official GPT_SoVITS/pretrained_models layout (or ours: gpt/sovits .safetensors + "
        ".json, hubert/, bert/) instead of --hubert/--bert/--sv; --gpt/--sovits then add fine-tuned weights on top. "
        "Without any weight flag the default base model (models/base, or GSV_DEFAULT_MODELS_DIR) is used",
    )
    weights.add_argument(
        "--version", default=None, choices=["v1", "v2", "v2Pro", "v2ProPlus"],
        help="which model set to take from --models-dir or the default base model (default v2 for the official layout; Pro "
        "fine-tunes need v2Pro/v2ProPlus so the speaker-verification model is loaded)",
    )
    weights.add_argument("--random-tiny", action="store_true", help="use tiny random models instead")
    p.add_argument("--ref", required=True, help="reference audio, 3-10 s (wav/flac/ogg/mp3)")
    p.add_argument("--ref-text", default=None, help="transcript of --ref (omit for reference-free mode)")
    p.add_argument("--ref-lang", default="auto", help="language of --ref-text (auto, zh, en, ...)")
    p.add_argument("--aux-ref", action="append", default=[], help="extra reference clip for timbre (repeatable)")
    p.add_argument("--text", required=True, help="text to read")
    p.add_argument("--lang", default="auto", help="language of --text (auto, zh, en, all_zh, ...)")
    p.add_argument("--split", default="cut5", help="text cut method cut0..cut5 (default cut5)")
    p.add_argument("--top-k", type=int, default=None, help="(default: the model's, else 15) sampling top-k")
    p.add_argument("--top-p", type=float, default=1.0, help="sampling top-p")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--repetition-penalty", type=float, default=None, help="(default: the model's, else 1.35) repetition penalty")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--free-decoding", action="store_true",
                   help="ignore the model's token grammar (GPTConfig.decode_grammar): the GPT picks among all tokens")
    p.add_argument("--speed", type=float, default=1.0, help="speaking rate (1.0 = normal)")
    p.add_argument("--stream", action="store_true", help="use the streaming path and report chunk timings")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("-o", "--output", required=True, help="output audio file (.wav/.flac/.ogg)")
    p.set_defaults(func=run_synth)


def _bundle(args: argparse.Namespace):
    bundle = _load_bundle(args)
    log.info("loaded %s", bundle.describe())
    return bundle


def _load_bundle(args: argparse.Namespace):
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.errors import GSVError

    if args.random_tiny:
        log.warning("using tiny random models: the output is noise, not speech")
        return ModelBundle.random_tiny(device=args.device)
    if args.models_dir:
        return _bundle_from_models_dir(args, args.models_dir)
    if not any((args.gpt, args.sovits, args.hubert, args.bert, args.sv)):
        from gpt_sovits.models_dir import find_default_models

        default, problem = find_default_models(version=args.version)
        if default is None:
            raise GSVError(
                "no weights given: pass --gpt, --sovits and --hubert (local paths to the GPT, the SoVITS and "
                "chinese-hubert-base or our content encoder), or --models-dir, or --random-tiny; " + str(problem),
                code="model_not_found",
            )
        return _bundle_from_models_dir(args, default)
    if args.version:
        raise GSVError("--version only applies to --models-dir or the default base model", code="invalid_arguments")
    missing = [flag for flag, value in (("--gpt", args.gpt), ("--sovits", args.sovits), ("--hubert", args.hubert)) if not value]
    if missing:
        raise GSVError(
            f"missing {', '.join(missing)}: give local paths to the GPT .ckpt, SoVITS .pth and the "
            "chinese-hubert-base directory (or our content encoder), or --models-dir with the official "
            "pretrained_models folder, or --random-tiny",
            code="model_not_found",
        )
    log.info("loading models from --gpt %s, --sovits %s, --hubert %s", args.gpt, args.sovits, args.hubert)
    return ModelBundle.from_paths(args.gpt, args.sovits, args.hubert, args.bert, device=args.device, sv_path=args.sv)


def _bundle_from_models_dir(args: argparse.Namespace, directory: str | Path):
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.errors import GSVError

    clashing = [flag for flag, value in (("--hubert", args.hubert), ("--bert", args.bert), ("--sv", args.sv)) if value]
    if clashing:
        raise GSVError(
            f"{', '.join(clashing)} cannot be combined with --models-dir, which provides them: "
            "drop one or the other",
            code="invalid_arguments",
        )
    log.info("loading models from '%s'%s", directory, "" if args.models_dir else " (the default base model)")
    bundle = ModelBundle.from_models_dir(directory, args.version, device=args.device)
    return bundle.with_weights(args.gpt, args.sovits)


def run_synth(args: argparse.Namespace) -> int:
    import numpy as np

    from gpt_sovits.audio import encode_audio, load_audio
    from gpt_sovits.pipeline import SynthesisParams, Synthesizer, VoicePrompt

    bundle = _bundle(args)
    ref, sr = load_audio(args.ref)
    aux = [load_audio(path) for path in args.aux_ref]
    voice = VoicePrompt.from_audio(bundle, ref, sr, args.ref_text, args.ref_lang, aux)
    params = SynthesisParams(
        text_lang=args.lang, split_method=args.split, top_k=args.top_k, top_p=args.top_p,
        temperature=args.temperature, repetition_penalty=args.repetition_penalty,
        seed=args.seed, speed=args.speed, grammar=False if args.free_decoding else None,
    )
    synth = Synthesizer(bundle)
    start = time.perf_counter()
    if args.stream:
        chunks = []
        for chunk in synth.stream(args.text, voice, params):
            if not chunks:
                log.info("first chunk after %.0f ms", 1000 * (time.perf_counter() - start))
            chunks.append(chunk.samples)
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    else:
        audio = synth.synthesize(args.text, voice, params)
    elapsed = time.perf_counter() - start
    seconds = len(audio) / bundle.sample_rate
    fmt = Path(args.output).suffix.lstrip(".").lower() or "wav"
    Path(args.output).write_bytes(encode_audio(audio, bundle.sample_rate, fmt))
    rtf = elapsed / seconds if seconds else float("nan")
    print(f"wrote {args.output}: {seconds:.2f} s of audio in {elapsed:.2f} s (RTF {rtf:.3f})")
    return 0
