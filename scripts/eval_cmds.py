"""`gsv eval`: speaker similarity, WER/CER and real-time factor of cloned voices (table + JSON)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("gsv.eval")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure cloning quality: speaker similarity, WER/CER, real-time factor",
        description="Synthesize each voice's test.txt with its ref.flac/ref.txt as the prompt and compare "
        "with the voice's own clone.flac. Prints a table and writes JSON. Zero-shot uses the base weights; "
        "--finetuned adds a per-voice fine-tuned system.",
    )
    p.add_argument("--voices", nargs="+", required=True, type=Path,
                   help="voice folders, or folders that contain voice folders (e.g. shared/data/voices)")
    p.add_argument("--only", nargs="*", default=None, help="evaluate only these voice ids")
    weights = p.add_argument_group("base weights (local paths; nothing is downloaded)")
    weights.add_argument("--gpt", type=Path, help="base GPT weights (.ckpt or .safetensors)")
    weights.add_argument("--sovits", type=Path, help="base SoVITS weights (.pth or .safetensors)")
    weights.add_argument("--hubert", type=Path,
                         help="content encoder folder: chinese-hubert-base, or ours from `gsv corpus train-encoder`")
    weights.add_argument("--bert", type=Path, help="chinese-roberta-wwm-ext-large folder (needed for zh text)")
    weights.add_argument("--random-tiny", action="store_true", help="tiny random models (audio is noise)")
    p.add_argument("--finetuned", action="append", default=[], metavar="VOICE=GPT,SOVITS",
                   help="fine-tuned weights for one voice (either path may be empty to keep the base); repeatable")
    p.add_argument("--asr", default="auto", choices=["auto", "pocketsphinx", "whisper", "none"],
                   help="recogniser for WER/CER (auto: whisper if --asr-model, else pocketsphinx for English)")
    p.add_argument("--asr-model", type=Path, default=None, help="local faster-whisper model folder")
    p.add_argument("--speaker-weights", type=Path, default=None,
                   help="GE2E weights (default: the ones inside the resemblyzer package)")
    p.add_argument("--corpus", type=Path, default=None,
                   help="corpus folder of the base model: marks voices as held-out or seen in training")
    p.add_argument("--max-sentences", type=int, default=None, help="sentences per voice (default: all of test.txt)")
    p.add_argument("--max-new-tokens", type=int, default=1500, help="cap on GPT tokens per segment (40 ms each)")
    p.add_argument("--seed", type=int, default=1234, help="sampling seed (the same for every system)")
    decode = p.add_argument_group("decoding (defaults: the model config's recommendation, else the official engine's)")
    decode.add_argument("--top-k", type=int, default=None, help="(default: the model's, else 15) GPT: sample among the k most likely tokens")
    decode.add_argument("--temperature", type=float, default=1.0, help="GPT sampling temperature")
    decode.add_argument("--repetition-penalty", type=float, default=None, help="(default: the model's, else 1.35) GPT repetition penalty")
    decode.add_argument("--noise-scale", type=float, default=0.5, help="SoVITS prior sampling temperature")
    decode.add_argument("--free-decoding", action="store_true",
                        help="ignore the model's token grammar (GPTConfig.decode_grammar): the GPT picks among all tokens")
    decode.add_argument("--reference-free", action="store_true",
                        help="ignore ref.txt: the GPT gets no prompt tokens, the reference sets only the voice's style "
                             "(what the service does for an upload without a transcript)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("-o", "--output", type=Path, default=Path("eval_report.json"), help="JSON report path")
    p.set_defaults(func=run_eval_cmd)

    d = sub.add_parser(
        "eval-decoder",
        help="which half of SoVITS loses the words: recording vs posterior (generator) vs true tokens",
        description="For prepared utterances, score with the recogniser: the recording, its posterior "
        "reconstruction (spectrogram -> enc_q -> generator: the decoder alone) and a decode of its own "
        "semantic tokens (perfect GPT output). Needs a SoVITS file that still has enc_q (a training export).",
    )
    d.add_argument("dataset", type=Path, help="a `gsv prepare` dataset folder")
    d.add_argument("--sovits", type=Path, required=True, help="SoVITS weights with the posterior encoder (enc_q)")
    d.add_argument("-n", "--items", type=int, default=12, help="utterances, evenly spaced through the manifest")
    d.add_argument("--lang", default="en", help="language of the utterances to use")
    d.add_argument("--asr", default="auto", choices=["auto", "pocketsphinx", "whisper"],
                   help="recogniser (auto: whisper if --asr-model, else pocketsphinx for English)")
    d.add_argument("--asr-model", type=Path, default=None, help="local faster-whisper model folder")
    d.add_argument("-o", "--output", type=Path, default=None, help="JSON report path (every transcript)")
    d.set_defaults(func=run_eval_decoder_cmd)

    g = sub.add_parser(
        "eval-gpt",
        help="the GPT alone: its tokens for held-out transcripts vs their true tokens (unit error rate, durations)",
        description="For prepared utterances, decode each transcript with the GPT (reference-free) and compare "
        "with the utterance's own semantic tokens: edit distance after collapsing repeats, and the length "
        "ratio. With --aligner (a phone-aligner content encoder folder) units are phones and silence is dropped.",
    )
    g.add_argument("dataset", type=Path, help="a `gsv prepare` dataset folder")
    g.add_argument("--gpt", type=Path, required=True, help="GPT weights (.ckpt or .safetensors)")
    g.add_argument("--aligner", type=Path, default=None,
                   help="phone-aligner folder the dataset was prepared with: compare phones, not codes")
    g.add_argument("-n", "--items", type=int, default=20, help="utterances, evenly spaced through the manifest")
    g.add_argument("--lang", default="en", help="language of the utterances to use")
    g.add_argument("--top-k", type=int, default=None, help="(default: the model's, else 15)")
    g.add_argument("--repetition-penalty", type=float, default=None, help="(default: the model's, else 1.35)")
    g.add_argument("--temperature", type=float, default=1.0, help="GPT sampling temperature")
    g.add_argument("--grammar", action="store_true",
                   help="decode as a monotonic walk through each transcript's phones (needs --aligner)")
    g.add_argument("-o", "--output", type=Path, default=None, help="JSON report path (every utterance)")
    g.set_defaults(func=run_eval_gpt_cmd)


def run_eval_decoder_cmd(args: argparse.Namespace) -> int:
    from training.decoder_check import check_decoder, write_check
    from training.evaluate import EvalError, make_recognizer

    recognizer = make_recognizer(args.asr, args.asr_model)
    if recognizer is None:
        raise EvalError("No recogniser: install pocketsphinx (train extra) or pass --asr-model DIR.")
    check = check_decoder(args.sovits, args.dataset, recognizer, args.items, args.lang)
    print(check.table())
    if args.output is not None:
        write_check(check, args.output)
        print(f"wrote {args.output}")
    return 0


def run_eval_gpt_cmd(args: argparse.Namespace) -> int:
    from training.gpt_check import UnitMap, check_gpt, write_gpt_check

    from gpt_sovits.phone_align import read_aligner_config

    if args.grammar and args.aligner is None:
        raise SystemExit("gsv eval-gpt: --grammar walks the aligner's phone table: pass --aligner DIR too")
    units = UnitMap.from_aligner(args.aligner) if args.aligner is not None else UnitMap()
    grammar = read_aligner_config(args.aligner) if args.grammar else None
    check = check_gpt(args.gpt, args.dataset, args.items, args.lang, units, args.top_k, args.repetition_penalty,
                      args.temperature, grammar=grammar)
    print(check.table())
    if args.output is not None:
        write_gpt_check(check, args.output)
        print(f"wrote {args.output}")
    return 0


def _voice_folders(paths: list[Path], only: list[str] | None) -> list[Path]:
    from training.evaluate import EvalError

    folders: list[Path] = []
    for path in paths:
        if (path / "test.txt").is_file():
            folders.append(path)
        elif path.is_dir():
            folders.extend(sorted(p for p in path.iterdir() if (p / "test.txt").is_file()))
        else:
            raise EvalError(f"'{path}' is neither a voice folder nor a folder of voice folders.")
    if only:
        folders = [f for f in folders if f.name in set(only)]
    return folders


def _parse_finetuned(items: list[str]) -> dict[str, tuple[Path | None, Path | None]]:
    from training.evaluate import EvalError

    out: dict[str, tuple[Path | None, Path | None]] = {}
    for item in items:
        voice, sep, paths = item.partition("=")
        gpt, comma, sovits = paths.partition(",")
        if not sep or not comma or not voice or not (gpt or sovits):
            raise EvalError(f"--finetuned '{item}': expected VOICE=GPT,SOVITS (one path may be empty).")
        out[voice] = (Path(gpt) if gpt else None, Path(sovits) if sovits else None)
    return out


def _base_bundle(args: argparse.Namespace):
    from gpt_sovits.bundle import ModelBundle
    from training.evaluate import EvalError, load_bundle

    if args.random_tiny:
        log.warning("using tiny random models: the audio is noise, scores show the pipeline works, not quality")
        return ModelBundle.random_tiny(device=args.device)
    missing = [f for f, v in (("--gpt", args.gpt), ("--sovits", args.sovits), ("--hubert", args.hubert)) if not v]
    if missing:
        raise EvalError(f"missing {', '.join(missing)}: give the base weights and content encoder folder, or --random-tiny")
    return load_bundle(args.gpt, args.sovits, args.hubert, args.bert, args.device)


def _seen_map(corpus: Path | None, voice_ids: list[str]) -> dict[str, str]:
    if corpus is None:
        return {}
    from training.corpus import load_manifest
    from training.corpus_sources import VOICE_PERSONS

    manifest = load_manifest(corpus)
    heldout = set(manifest["heldout"]["persons"])
    persons = {s["person"] for s in manifest["speakers"].values() if s["split"] == "train"}
    out = {}
    for vid in voice_ids:
        person = VOICE_PERSONS.get(vid, vid)
        out[vid] = "held-out" if person in heldout else ("seen" if person in persons else "unseen")
    return out


def run_eval_cmd(args: argparse.Namespace) -> int:
    from gpt_sovits.pipeline import SynthesisParams
    from training.evaluate import SimilarityJudge, System, load_voice, make_recognizer, run_eval, write_report

    try:
        params = SynthesisParams(seed=args.seed, max_new_tokens=args.max_new_tokens, top_k=args.top_k,
                                 temperature=args.temperature, repetition_penalty=args.repetition_penalty,
                                 noise_scale=args.noise_scale, grammar=False if args.free_decoding else None)
    except ValueError as exc:
        raise SystemExit(f"gsv eval: {exc}") from exc  # a bad knob fails before any model loads
    folders = _voice_folders(args.voices, args.only)
    voices = [load_voice(f) for f in folders]
    finetuned = _parse_finetuned(args.finetuned)
    base = _base_bundle(args)
    systems = [System("zero-shot", lambda _voice: base)]
    if finetuned:
        cache: dict[str, object] = {}

        def tuned(voice: str):
            if voice not in finetuned:
                return None
            if voice not in cache:
                cache[voice] = base.with_weights(*finetuned[voice])
            return cache[voice]

        systems.append(System("fine-tuned", tuned))
    recognizer = make_recognizer(args.asr, args.asr_model, args.device)
    report = run_eval(voices, systems, SimilarityJudge(args.speaker_weights), recognizer, params,
                      args.max_sentences, _seen_map(args.corpus, [v.id for v in voices]), args.reference_free)
    write_report(report, args.output)
    print(report.baseline_table())
    print()
    print(report.table())
    print(f"\nwrote {args.output}")
    return 0
