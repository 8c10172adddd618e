"""`gsv prepare`, `gsv train sovits|gpt` and `gsv finetune`: thin argparse glue over `training/`.

Flags cover the settings people change; any other config field can be set with
`--set FIELD=VALUE` (JSON values: `--set betas=[0.9,0.98]`), or a whole config loaded with
`--config FILE.json` (the `*_config.json` files written beside every output have that format).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("gsv.train")

TINY_S2 = {"segment_frames": 4, "discriminator_periods": []}
"""--random-tiny S2 settings: a full-size MPD on 20480-sample slices takes ~20 s a step on a CPU."""


def register(sub: argparse._SubParsersAction) -> None:
    _register_prepare(sub)
    train = sub.add_parser("train", help="fine-tune one stage on a prepared dataset",
                           description="Fine-tune SoVITS (S2) or the GPT (S1) on a dataset made by `gsv prepare`.")
    stages = train.add_subparsers(dest="stage", metavar="STAGE", required=True)
    _register_train(stages, "sovits")
    _register_train(stages, "gpt")
    _register_finetune(sub)


# ---------------------------------------------------------------------------------- helpers


def _add_recording_args(p: argparse.ArgumentParser, nargs: str, inputs_help: str, output_help: str) -> None:
    """Recordings in, a folder out, and where the transcripts come from (prepare and finetune)."""
    p.add_argument("inputs", nargs=nargs, type=Path, help=inputs_help)
    p.add_argument("-o", "--output", type=Path, required=True, help=output_help)
    g = p.add_argument_group("transcripts (one of them, or --asr-model)")
    g.add_argument("--list", type=Path, help="GPT-SoVITS list file: lines 'wav|speaker|lang|text'")
    g.add_argument("--transcripts", type=Path, help="folder with NAME.txt for every NAME.wav/.flac/...")
    g.add_argument("--lang", default="auto", help="language of .txt/ASR transcripts (auto, zh, en, all_zh, ...)")
    g.add_argument("--asr-model", type=Path, help="local faster-whisper model folder, used for audio without transcript")


def _add_model_args(p: argparse.ArgumentParser, title: str, base_flags: dict[str, str], random_tiny_help: str) -> None:
    """The base weights (`base_flags`: flag -> help), then the feature extractors every dataset needs."""
    m = p.add_argument_group(f"{title} (local paths; nothing is downloaded)")
    for flag, help_text in base_flags.items():
        m.add_argument(flag, type=Path, help=help_text)
    m.add_argument("--hubert", type=Path, help="chinese-hubert-base folder")
    m.add_argument("--bert", type=Path, help="chinese-roberta-wwm-ext-large folder (for zh text)")
    m.add_argument("--random-tiny", action="store_true", help=random_tiny_help)


def _add_common(p: argparse.ArgumentParser, set_help: str) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda[:N]")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE", help=set_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def apply_overrides(cfg: Any, items: list[str]) -> Any:
    """Return `cfg` with FIELD=VALUE items applied (values parsed as JSON when they are JSON)."""
    data = cfg.to_dict()
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in data:
            from gpt_sovits.errors import GSVError

            raise GSVError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(data)}",
                           code="bad_argument")
        try:
            data[key] = json.loads(raw)
        except json.JSONDecodeError:
            data[key] = raw
    return type(cfg).from_dict(data)


def _load_config(cls: type, path: Path | None) -> Any:
    return cls.load(path) if path else cls()


# ---------------------------------------------------------------------------------- prepare


def _register_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare", help="turn recordings + transcripts into a training dataset",
        description="Decode, slice (VAD, 2-10 s), loudness-normalise and featurise recordings into "
        "DATASET_DIR (manifest.jsonl + safetensors). Rerunning skips finished utterances.",
    )
    _add_recording_args(p, "*", "audio files and/or folders", "dataset folder to create or complete")
    _add_model_args(p, "models", {"--sovits": "base SoVITS whose quantizer makes the semantic tokens (s2G*.pth)"},
                    "tiny random models (tests; features are noise)")
    p.add_argument("--config", type=Path, help="PrepareConfig JSON to start from")
    _add_common(p, "set any PrepareConfig field, e.g. max_seconds=8")
    p.set_defaults(func=run_prepare)


def _prepare_config(args: argparse.Namespace) -> Any:
    from training.config import PrepareConfig

    cfg = apply_overrides(_load_config(PrepareConfig, getattr(args, "config", None)), args.overrides)
    cfg.lang, cfg.device = args.lang, args.device
    return cfg


def _sources(args: argparse.Namespace) -> list:
    from training.transcripts import collect_sources

    return collect_sources(list(args.inputs), args.list, args.transcripts, args.lang)


def run_prepare(args: argparse.Namespace) -> int:
    from gpt_sovits.errors import GSVError
    from training.features import FeatureModels
    from training.prepare import prepare_dataset
    from training.runtime import resolve_device
    from training.transcripts import WhisperTranscriber

    cfg = _prepare_config(args)
    sources = _sources(args)
    if args.random_tiny:
        models = FeatureModels.random_tiny(0, args.sovits)
    else:
        missing = [f for f, v in (("--sovits", args.sovits), ("--hubert", args.hubert)) if v is None]
        if missing:
            raise GSVError(f"missing {', '.join(missing)}: prepare needs the base SoVITS (its quantizer makes the "
                           "semantic tokens) and the HuBERT folder; or use --random-tiny", code="model_not_found")
        models = FeatureModels.from_paths(args.sovits, args.hubert, args.bert, resolve_device(args.device))
    transcriber = WhisperTranscriber(args.asr_model, args.device) if args.asr_model else None
    report = prepare_dataset(sources, args.output, cfg, models, transcriber, str(args.asr_model or ""),
                             progress=not args.no_progress)
    print(f"{report.summary()}\ndataset: {args.output} (report.json lists rejected slices)")
    return 0


# ------------------------------------------------------------------------------------ train


def _register_train(stages: argparse._SubParsersAction, stage: str) -> None:
    what = "SoVITS (S2, GAN)" if stage == "sovits" else "GPT (S1, cross-entropy)"
    p = stages.add_parser(stage, help=f"fine-tune the {what}",
                          description=f"Fine-tune the {what} from a base model on a prepared dataset. "
                          "Reruns resume from the last checkpoint in the output folder.")
    p.add_argument("--data", type=Path, required=True, help="dataset folder from `gsv prepare`")
    p.add_argument("--base", type=Path, help=f"base {stage} weights (official or ours)")
    if stage == "sovits":
        p.add_argument("--discriminator", type=Path, help="base discriminator (s2D*.pth); default: the s2D beside an s2G base")
    p.add_argument("-o", "--output", type=Path, required=True, help="run folder (weights, logs, checkpoints)")
    p.add_argument("--epochs", type=int, help=f"epochs (default {8 if stage == 'sovits' else 15}, the WebUI one-minute recipe)")
    p.add_argument("--batch-size", type=int, help="utterances per step (default 8)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-4)")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], help="autocast precision (default auto)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and start over")
    p.add_argument("--random-tiny", action="store_true", help="tiny random base model (tests; use a --random-tiny dataset)")
    p.add_argument("--config", type=Path, help="training config JSON to start from")
    _add_common(p, "set any config field, e.g. text_low_lr_rate=0.3")
    p.set_defaults(func=run_train_sovits if stage == "sovits" else run_train_gpt)


def _train_config(cls: type, args: argparse.Namespace) -> Any:
    cfg = apply_overrides(_load_config(cls, args.config), args.overrides)
    for field in ("epochs", "batch_size", "lr", "precision", "max_steps"):
        value = getattr(args, field)
        if value is not None:
            setattr(cfg, field, value)
    cfg.device = args.device
    return cfg


def _tiny_base(out: Path) -> tuple[Path, Path]:
    from training.finetune import make_random_tiny_base

    return make_random_tiny_base(out / "base_tiny")


def _require_base(args: argparse.Namespace) -> None:
    if args.base is None and not args.random_tiny:
        from gpt_sovits.errors import GSVError

        raise GSVError("missing --base: give the pretrained weights to start from (or --random-tiny)",
                       code="model_not_found")


def run_train_sovits(args: argparse.Namespace) -> int:
    from training.config import TrainS2Config
    from training.train_sovits import train_sovits

    _require_base(args)
    cfg = _train_config(TrainS2Config, args)
    base = args.base
    if args.random_tiny:
        base = base or _tiny_base(args.output)[1]
        cfg = apply_overrides(cfg, [f"{k}={json.dumps(v)}" for k, v in TINY_S2.items()] + args.overrides)
    result = train_sovits(args.data, base, args.output, cfg, args.discriminator, resume=not args.no_resume,
                          progress_bar=not args.no_progress)
    return _report("SoVITS", result)


def run_train_gpt(args: argparse.Namespace) -> int:
    from training.config import TrainS1Config
    from training.train_gpt import train_gpt

    _require_base(args)
    cfg = _train_config(TrainS1Config, args)
    base = args.base or _tiny_base(args.output)[0]
    result = train_gpt(args.data, base, args.output, cfg, resume=not args.no_resume, progress_bar=not args.no_progress)
    return _report("GPT", result)


EXIT_STOPPED = 75
"""Exit status of a run stopped by SIGTERM/Ctrl-C after saving (EX_TEMPFAIL: not done, run it again)."""


def _report(name: str, result) -> int:  # noqa: ANN001 - training.loop.TrainResult (imported lazily)
    print(f"{name}: {result.steps} steps in {result.seconds:.0f} s, final {_fmt(result.final)}\nweights: {result.weights}")
    if result.stopped:
        print(f"stopped early at step {result.steps}: its checkpoint is saved; run the same command to resume")
        return EXIT_STOPPED
    return 0


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k.startswith(("loss", "top3")))


# --------------------------------------------------------------------------------- finetune


def _register_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune", help="one-minute recipe: prepare -> train SoVITS -> train GPT -> weights",
        description="Fine-tune a voice from about a minute of audio with transcripts. Defaults fit one "
        "16-24 GB GPU (8 SoVITS epochs, 15 GPT epochs, batch 8). Rerun to resume after an interruption.",
    )
    _add_recording_args(p, "+", "voice folder and/or audio files",
                        "output folder (gpt.safetensors, sovits.safetensors, ...)")
    _add_model_args(p, "base models", {
        "--base-gpt": "pretrained GPT (s1bert25hz-*.ckpt or ours)",
        "--base-sovits": "pretrained SoVITS G (s2G2333k.pth or ours)",
        "--base-discriminator": "pretrained SoVITS D (default: s2D beside s2G)",
    }, "tiny random base models (tests; the voice is noise)")
    t = p.add_argument_group("training")
    t.add_argument("--s2-epochs", type=int, help="SoVITS epochs (default 8)")
    t.add_argument("--s1-epochs", type=int, help="GPT epochs (default 15)")
    t.add_argument("--batch-size", type=int, help="batch size of both stages (default 8)")
    t.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], help="autocast precision (default auto)")
    t.add_argument("--s2-max-steps", type=int, help="cap on SoVITS steps")
    t.add_argument("--s1-max-steps", type=int, help="cap on GPT steps")
    t.add_argument("--s2-set", dest="s2_overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="set a TrainS2Config field")
    t.add_argument("--s1-set", dest="s1_overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="set a TrainS1Config field")
    _add_common(p, "set a PrepareConfig field")
    p.set_defaults(func=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    from training.config import TrainS1Config, TrainS2Config
    from training.finetune import BaseModels, FinetuneStopped, finetune

    prepare_cfg = _prepare_config(args)
    s2_cfg = _stage_config(TrainS2Config, args, "s2")
    s1_cfg = _stage_config(TrainS1Config, args, "s1")
    if args.random_tiny:
        s2_cfg = apply_overrides(s2_cfg, [f"{k}={json.dumps(v)}" for k, v in TINY_S2.items()] + args.s2_overrides)
    base = BaseModels(args.base_gpt, args.base_sovits, args.hubert, args.bert, args.base_discriminator,
                      random_tiny=args.random_tiny)
    try:
        result = finetune(_sources(args), args.output, base, prepare_cfg, s2_cfg, s1_cfg, args.asr_model,
                          progress=not args.no_progress)
    except FinetuneStopped as exc:
        print(exc)
        return EXIT_STOPPED
    print(result.summary())
    return 0


def _stage_config(cls: type, args: argparse.Namespace, stage: str) -> Any:
    cfg = apply_overrides(cls(), getattr(args, f"{stage}_overrides"))
    for flag, field in ((f"{stage}_epochs", "epochs"), ("batch_size", "batch_size"), ("precision", "precision"),
                        (f"{stage}_max_steps", "max_steps")):
        value = getattr(args, flag, None)
        if value is not None:
            setattr(cfg, field, value)
    cfg.device = args.device
    return cfg
