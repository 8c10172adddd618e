"""`gsv corpus`: list offline speech sources, build the base-model corpus, train the content encoder."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("gsv.corpus")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="build the multi-speaker base-model corpus and its content encoder",
                       description="Offline corpus tooling for training our own base model (docs/base_model.md).")
    cmds = p.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)

    s = cmds.add_parser("sources", help="list the corpus sources, their licences and what is installed")
    s.add_argument("--voices", type=Path, default=None, help="voice folders root to include (shared/data/voices)")
    s.set_defaults(func=run_sources)

    b = cmds.add_parser("build", help="assemble the corpus (audio, lists, manifest with licences)")
    b.add_argument("--out", type=Path, required=True, help="output folder (must be empty unless --overwrite)")
    b.add_argument("--voices", type=Path, default=None,
                   help="voice folders root: added as a source, and its test.txt sentences are excluded")
    b.add_argument("--source", action="append", default=None, metavar="NAME",
                   help="use only these sources (repeatable; see `gsv corpus sources`)")
    b.add_argument("--heldout", nargs="*", default=None, metavar="PERSON",
                   help="persons kept out of training (default: allison-smith arctic-slt arctic-rms piper-joe)")
    b.add_argument("--max-utts", type=int, default=400, help="utterances per training speaker (0 = all)")
    b.add_argument("--heldout-utts", type=int, default=20, help="utterances per held-out speaker")
    b.add_argument("--seed", type=int, default=0, help="seed of the per-speaker utterance order")
    b.add_argument("--overwrite", action="store_true", help="replace an existing corpus folder")
    b.set_defaults(func=run_build)

    t = cmds.add_parser("train-encoder", help="train the content encoder on a corpus (HuBERT-style pseudo labels)")
    t.add_argument("--corpus", type=Path, required=True, help="corpus folder from `gsv corpus build`")
    t.add_argument("--out", type=Path, required=True, help="folder for config.json + model.safetensors")
    t.add_argument("--init", type=Path, default=None, help="continue from this encoder (needed for --label-layer)")
    t.add_argument("--label-layer", type=int, default=0,
                   help="0: MFCC k-means targets (iteration 0); N: cluster layer N of --init (next iteration)")
    t.add_argument("--clusters", type=int, default=100, help="k-means classes")
    t.add_argument("--steps", type=int, default=20000, help="optimizer steps")
    t.add_argument("--batch-size", type=int, default=8, help="crops per step")
    t.add_argument("--crop-seconds", type=float, default=4.0, help="seconds per crop")
    t.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    t.add_argument("--hidden", type=int, default=768, help="encoder width (becomes the SoVITS ssl_dim)")
    t.add_argument("--layers", type=int, default=8, help="transformer layers")
    t.add_argument("--heads", type=int, default=12, help="attention heads")
    t.add_argument("--max-files", type=int, default=0, help="use at most this many utterances (0 = all)")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.set_defaults(func=run_train_encoder)

    ph = cmds.add_parser("train-phones", help="fine-tune a content encoder with CTC on transcript phones (en/zh)")
    ph.add_argument("--list", type=Path, required=True, help="wav|speaker|lang|text list (e.g. corpus/train.list)")
    ph.add_argument("--heldout-list", type=Path, default=None, help="list to report the phone error rate on")
    ph.add_argument("--init", type=Path, required=True, help="encoder to start from (gsv corpus train-encoder)")
    ph.add_argument("--out", type=Path, required=True, help="folder for the new encoder (+ phones.json, ctc_head)")
    ph.add_argument("--name", default="gsv-content-v2", help="encoder name recorded by SoVITS configs")
    ph.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    ph.add_argument("--batch-seconds", type=float, default=24.0, help="audio seconds per step")
    ph.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    ph.add_argument("--mpl-weight", type=float, default=0.0,
                    help="weight of the auxiliary masked prediction of --init's MFCC clusters (0 = CTC only)")
    ph.add_argument("--augment", type=float, default=0.0, metavar="PROB",
                    help="share of utterances given another apparent voice (frequency scaling, tilt, noise); 0 = off")
    ph.add_argument("--save-every", type=int, default=500, help="write the encoder every N steps")
    ph.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ph.add_argument("--seed", type=int, default=0, help="random seed")
    ph.set_defaults(func=run_train_phones)


def run_sources(args: argparse.Namespace) -> int:
    from training.corpus_sources import default_sources

    for source in default_sources(args.voices):
        why = source.missing()
        status = "ok" if why is None else f"MISSING: {why}"
        print(f"{source.info.name:<12} {source.info.kind:<19} {source.info.licence}")
        print(f"{'':<12} {status}")
        if why is None:
            print(f"{'':<12} speakers: {', '.join(s.id for s in source.speakers())}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from training.corpus import DEFAULT_HELDOUT, CorpusConfig, CorpusError, build_corpus
    from training.corpus_sources import default_sources

    sources = default_sources(args.voices)
    if args.source:
        known = {s.info.name for s in sources}
        unknown = sorted(set(args.source) - known)
        if unknown:
            raise CorpusError(f"unknown source(s) {unknown}; choose from {sorted(known)}")
        sources = [s for s in sources if s.info.name in set(args.source)]
    cfg = CorpusConfig(
        heldout_persons=list(DEFAULT_HELDOUT if args.heldout is None else args.heldout),
        max_utts_per_speaker=args.max_utts, heldout_utts_per_speaker=args.heldout_utts, seed=args.seed,
    )
    report = build_corpus(args.out, sources, cfg, eval_voices=args.voices, overwrite=args.overwrite,
                          on_speaker=lambda sid: log.info("building speaker %s", sid))
    print(report.summary())
    if report.skipped_sources:
        print("\nTo add the skipped sources, install what is named above and build again.")
    return 0


def run_train_encoder(args: argparse.Namespace) -> int:
    from gpt_sovits.audio import load_audio
    from training.content_encoder import (
        ContentEncoderConfig,
        PseudoLabelConfig,
        load_content_encoder,
        save_content_encoder,
        train_content_encoder,
    )
    from training.corpus import corpus_audio
    from training.runtime import resolve_device

    paths = corpus_audio(args.corpus, "train")
    if args.max_files:
        paths = paths[: args.max_files]
    log.info("loading %d utterances at 16 kHz", len(paths))
    wavs = [load_audio(p, target_sr=16000)[0] for p in paths]
    model_cfg = ContentEncoderConfig(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                                     ffn_size=4 * args.hidden)
    cfg = PseudoLabelConfig(steps=args.steps, batch_size=args.batch_size, crop_seconds=args.crop_seconds, lr=args.lr,
                            warmup_steps=min(1000, max(1, args.steps // 10)), n_clusters=args.clusters,
                            label_layer=args.label_layer, seed=args.seed)
    init = load_content_encoder(args.init) if args.init else None
    device = resolve_device(args.device)

    def report(step: int, loss: float) -> None:
        if step % 100 == 0 or step == cfg.steps - 1:
            log.info("step %d/%d loss %.4f", step + 1, cfg.steps, loss)

    result = train_content_encoder(wavs, model_cfg, cfg, init=init, device=device, on_step=report)
    out = save_content_encoder(result.model.cpu(), args.out, extra={"centroids": result.centroids})
    cfg.save(out / "train_config.json")
    print(f"wrote {out} (final loss {result.losses[-1]:.4f}); name it in SoVITSConfig.content_encoder: "
          f"'{result.model.cfg.name}', ssl_dim={result.model.cfg.hidden_size}")
    return 0


def run_train_phones(args: argparse.Namespace) -> int:
    from training.phone_encoder import PhoneCTCConfig, run_phone_training

    cfg = PhoneCTCConfig(name=args.name, steps=args.steps, batch_seconds=args.batch_seconds, lr=args.lr,
                         warmup_steps=min(200, max(1, args.steps // 10)), mpl_weight=args.mpl_weight, seed=args.seed,
                         augment_prob=args.augment)
    return run_phone_training(args.list, args.init, args.out, cfg, args.heldout_list, args.save_every, args.device)
