"""Initialise a base GPT + SoVITS from scratch (no pretrained weights) for our own base model.

Why this exists: `gsv prepare` turns content features into semantic tokens with the base
SoVITS's `ssl_proj` + quantizer, and both trainers keep that path frozen so the tokens keep
their meaning. A fresh `SynthesizerTrn` has a random conv and a random codebook, so its tokens
would be noise. Before preparing any data we therefore give the base SoVITS

- an `ssl_proj` that averages each pair of 50 Hz frames into one 25 Hz frame (a fixed,
  interpretable map; a random frozen conv would only distort distances), and
- a codebook of k-means centres of those pooled content vectors, `inited = 1`, so nothing
  re-initialises it from the first training batch.

Everything else (text encoder, flow, decoder, posterior, style encoder) keeps its random
initialisation, as does the GPT. Command line (writes `gpt.safetensors`, `sovits.safetensors`)::

    python -m training.base_init --gpt-config configs/gpt_base.json \
        --sovits-config configs/sovits_base.json --encoder ENC_DIR --corpus CORPUS_DIR --out BASE_DIR
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from gpt_sovits.checkpoint import save_gpt, save_sovits
from gpt_sovits.config import GPTConfig, SoVITSConfig
from gpt_sovits.errors import GSVError
from gpt_sovits.sovits.model import SynthesizerTrn
from gpt_sovits.t2s import T2SModel

log = logging.getLogger(__name__)


class BaseInitError(GSVError, ValueError):
    """Content features or configs that cannot make a from-scratch base model."""

    code = "base_init_error"


def pair_average_(conv: torch.nn.Conv1d) -> None:
    """Set a [C, C, 2] stride-2 conv to y_t = (x_2t + x_2t+1) / 2 per channel, bias 0."""
    out_ch, in_ch, kernel = conv.weight.shape
    if out_ch != in_ch or kernel != 2:
        raise BaseInitError(f"ssl_proj must be a [C, C, 2] conv to pool frame pairs, got {tuple(conv.weight.shape)}")
    with torch.no_grad():
        eye = torch.eye(in_ch, dtype=conv.weight.dtype)
        conv.weight.copy_(torch.stack([eye, eye], dim=-1) / 2)
        if conv.bias is not None:
            conv.bias.zero_()


def pooled_vectors(model: SynthesizerTrn, features: Iterable[Tensor], max_vectors: int, seed: int = 0) -> Tensor:
    """`ssl_proj` outputs of every feature map [C, T50] as rows [N, C], randomly subsampled to
    at most `max_vectors` (k-means cost grows with N)."""
    rows = []
    with torch.no_grad():
        for feat in features:
            if feat.dim() != 2 or feat.shape[0] != model.cfg.ssl_dim:
                raise BaseInitError(f"content features must be [ssl_dim={model.cfg.ssl_dim}, T50], got "
                                    f"{tuple(feat.shape)}: use the encoder named in the SoVITS config.")
            if feat.shape[1] >= 2:
                rows.append(model.ssl_proj(feat.float()[None])[0].T)
    if not rows:
        raise BaseInitError("no content feature map has 2 or more frames: give longer utterances.")
    x = torch.cat(rows)
    gen = torch.Generator().manual_seed(seed)
    return x[torch.randperm(x.shape[0], generator=gen)[:max_vectors]]


def init_codebook_(model: SynthesizerTrn, vectors: Tensor, iters: int = 25, seed: int = 0) -> Tensor:
    """k-means (k-means++ seeding) of `vectors` [N, C] into the quantizer's codebook; marks it
    `inited` and returns the per-code counts (how many vectors each centre won)."""
    from training.content_encoder import assign_clusters, kmeans

    book = model.quantizer.vq.layers[0]._codebook
    k = book.codebook_size
    if vectors.shape[0] < k:
        raise BaseInitError(f"k-means of {k} codes needs at least {k} vectors, got {vectors.shape[0]}: "
                            "use more utterances.")
    centres = kmeans(vectors, k, iters, seed)
    counts = torch.bincount(assign_clusters(vectors, centres), minlength=k).float()
    with torch.no_grad():
        book.embed.copy_(centres)
        book.embed_avg.copy_(centres * counts[:, None])
        book.cluster_size.copy_(counts)
        book.inited.fill_(1.0)
    return counts


def init_base_sovits(cfg: SoVITSConfig, features: Iterable[Tensor], seed: int = 0, max_vectors: int = 65536,
                     kmeans_iters: int = 25) -> SynthesizerTrn:
    """A random SoVITS (with its posterior encoder, for training) whose semantic path is fixed
    from the content features: pair-average `ssl_proj` + k-means codebook."""
    if not cfg.freeze_quantizer:
        raise BaseInitError("the from-scratch base keeps its k-means codebook frozen: set freeze_quantizer=true.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SynthesizerTrn(cfg, with_posterior=True)
    pair_average_(model.ssl_proj)
    counts = init_codebook_(model, pooled_vectors(model, features, max_vectors, seed), kmeans_iters, seed)
    log.info("codebook: %d codes, %d used, largest cluster %d of %d vectors", len(counts), int((counts > 0).sum()),
             int(counts.max()), int(counts.sum()))
    return model.eval()


def init_aligned_base_sovits(cfg: SoVITSConfig, seed: int = 0) -> SynthesizerTrn:
    """A random SoVITS for phone-aligned tokens (`gpt_sovits.phone_align`): the one-hot features
    of a token pair average to one code, and the codebook is the identity, so every feature
    frame quantizes to its own aligned (phone, state) code."""
    if not cfg.freeze_quantizer or cfg.ssl_dim != cfg.codebook_size:
        raise BaseInitError(f"aligned tokens need freeze_quantizer=true and ssl_dim == codebook_size; got "
                            f"{cfg.freeze_quantizer}, {cfg.ssl_dim} vs {cfg.codebook_size} (phone_token_sovits_config)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SynthesizerTrn(cfg, with_posterior=True)
    pair_average_(model.ssl_proj)
    book = model.quantizer.vq.layers[0]._codebook
    with torch.no_grad():
        eye = torch.eye(cfg.codebook_size)
        book.embed.copy_(eye)
        book.embed_avg.copy_(eye)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1.0)
    return model.eval()


def init_base_gpt(cfg: GPTConfig, seed: int = 0) -> T2SModel:
    """A randomly initialised GPT of `cfg` (its vocabulary must fit the SoVITS codebook)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return T2SModel(cfg).eval()


def check_pair(gpt_cfg: GPTConfig, sovits_cfg: SoVITSConfig) -> None:
    """The GPT predicts codebook indices + EOS: its vocabulary must be codebook_size + 1."""
    if gpt_cfg.vocab_size != sovits_cfg.codebook_size + 1 or gpt_cfg.eos != sovits_cfg.codebook_size:
        raise BaseInitError(f"GPT vocab_size {gpt_cfg.vocab_size} / eos {gpt_cfg.eos} do not fit a codebook of "
                            f"{sovits_cfg.codebook_size}: set vocab_size = codebook_size + 1 and eos = codebook_size.")


def corpus_features(encoder_dir: Path, corpus_dir: Path, max_files: int, seed: int = 0) -> list[Tensor]:
    """Content features [C, T50] of up to `max_files` random training utterances of a corpus."""
    from gpt_sovits.audio import load_audio
    from training.content_encoder import ContentFeatureExtractor
    from training.corpus import corpus_audio

    paths = corpus_audio(corpus_dir, "train")
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    extractor = ContentFeatureExtractor.from_pretrained(encoder_dir)
    feats = []
    for i in order[:max_files]:
        wav = torch.from_numpy(load_audio(paths[i], target_sr=16000)[0])
        if wav.numel() >= 400:
            feats.append(extractor(wav[None])[0])
    return feats


def write_base_models(out_dir: Path, gpt_cfg: GPTConfig, sovits_cfg: SoVITSConfig, features: Iterable[Tensor] | None,
                      seed: int = 0, info: dict | None = None) -> tuple[Path, Path]:
    """Initialise both models and write `gpt.safetensors` / `sovits.safetensors` (+ JSON, fp32,
    the SoVITS with `enc_q`) into `out_dir`; returns their paths. `features` None: the SoVITS is
    for phone-aligned tokens (`init_aligned_base_sovits`), no k-means."""
    check_pair(gpt_cfg, sovits_cfg)
    sovits = init_aligned_base_sovits(sovits_cfg, seed) if features is None else init_base_sovits(sovits_cfg, features, seed)
    gpt = init_base_gpt(gpt_cfg, seed)
    meta = {"source": "training.base_init (from scratch)", "seed": seed, **(info or {})}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_gpt(gpt, gpt_cfg, out_dir / "gpt", meta), save_sovits(sovits, sovits_cfg, out_dir / "sovits", meta)


def export_training_sovits(run_dir: Path, cfg: SoVITSConfig, out_stem: Path, info: dict | None = None) -> Path:
    """The latest S2 checkpoint of `run_dir` as one fp16 SoVITS file *with* `enc_q`: inference
    loaders drop the posterior encoder, and `gsv train sovits --base` can continue from it."""
    from safetensors.torch import load_file

    from training.state import latest_checkpoint

    ckpt = latest_checkpoint(Path(run_dir))
    if ckpt is None:
        raise BaseInitError(f"'{run_dir}' has no training checkpoint yet (checkpoints/latest.json).")
    state = load_file(str(ckpt / "generator.safetensors"))
    if not any(k.startswith("enc_q.") for k in state):
        raise BaseInitError(f"'{ckpt}' holds no posterior encoder: is it an S2 run?")
    model = SynthesizerTrn(cfg, with_posterior=True)
    model.load_state_dict(state, strict=True)  # fails loudly when cfg is not the run's config
    meta = {"source": "training.base_init.export_training_sovits", "checkpoint": ckpt.name, **(info or {})}
    return save_sovits(model, cfg, out_stem, meta, dtype=torch.float16)


def export_training_gpt(run_dir: Path, out_stem: Path, info: dict | None = None) -> Path:
    """The latest S1 checkpoint of `run_dir` as one fp16 GPT file; the model config is the
    run's `gpt.json` (written when a `gsv train gpt` chunk ends)."""
    from safetensors.torch import load_file

    from gpt_sovits.checkpoint import detect
    from training.state import latest_checkpoint

    ckpt = latest_checkpoint(Path(run_dir))
    if ckpt is None or not (Path(run_dir) / "gpt.json").is_file():
        raise BaseInitError(f"'{run_dir}' has no finished S1 chunk yet (checkpoints/latest.json and gpt.json).")
    cfg = detect(Path(run_dir) / "gpt.safetensors").config
    model = T2SModel(cfg)
    model.load_state_dict(load_file(str(ckpt / "gpt.safetensors")), strict=True)
    meta = {"source": "training.base_init.export_training_gpt", "checkpoint": ckpt.name, **(info or {})}
    return save_gpt(model.eval(), cfg, out_stem, meta, dtype=torch.float16)


def export_base(s2_run: Path, s1_run: Path | None, aligner_dir: Path, out_dir: Path) -> list[Path]:
    """Newest S2 (with `enc_q`, so fine-tunes and further pretraining can start from it) and S1
    checkpoints + the content-encoder folder -> `out_dir` in our model-folder layout. Without
    `s1_run` the GPT already in `out_dir` stays (a session that trained only SoVITS)."""
    import shutil

    from gpt_sovits.checkpoint import detect

    cfg = detect(Path(s2_run) / "sovits.safetensors").config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sovits = export_training_sovits(Path(s2_run), cfg, out_dir / "sovits")
    if s1_run is not None:
        gpt = export_training_gpt(Path(s1_run), out_dir / "gpt")
    elif (out_dir / "gpt.safetensors").is_file():
        gpt = out_dir / "gpt.safetensors"
    else:
        raise BaseInitError(f"no S1 run given and '{out_dir}' has no gpt.safetensors to keep: pass --s1-run")
    hubert = out_dir / "hubert"
    shutil.rmtree(hubert, ignore_errors=True)
    shutil.copytree(aligner_dir, hubert)
    return [gpt, sovits, hubert]


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "export":
        return _main_export(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpt-config", type=Path, required=True)
    p.add_argument("--sovits-config", type=Path, required=True)
    p.add_argument("--encoder", type=Path, help="content encoder folder (gsv corpus train-encoder)")
    p.add_argument("--corpus", type=Path, help="corpus folder (gsv corpus build)")
    p.add_argument("--phone-aligner", action="store_true",
                   help="tokens from forced alignment (gpt_sovits.phone_align) instead of --encoder/--corpus; "
                        "writes the aligner folder to OUT/hubert")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-files", type=int, default=600, help="utterances whose features feed the k-means")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from training.content_encoder import load_content_encoder

    sovits_cfg = SoVITSConfig.load(args.sovits_config)
    if args.phone_aligner:
        return _main_aligned(args, sovits_cfg)
    if args.encoder is None or args.corpus is None:
        p.error("--encoder and --corpus are required unless --phone-aligner is given")
    enc = load_content_encoder(args.encoder).cfg
    if enc.name != sovits_cfg.content_encoder or enc.hidden_size != sovits_cfg.ssl_dim:
        raise BaseInitError(f"encoder '{enc.name}' ({enc.hidden_size}-d) does not match the SoVITS config "
                            f"('{sovits_cfg.content_encoder}', ssl_dim {sovits_cfg.ssl_dim}).")
    feats = corpus_features(args.encoder, args.corpus, args.max_files, args.seed)
    gpt, sovits = write_base_models(args.out, GPTConfig.load(args.gpt_config), sovits_cfg, feats, args.seed,
                                    {"encoder": str(args.encoder), "corpus": str(args.corpus)})
    print(f"wrote {gpt}\n      {sovits}")
    return 0


def _main_export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m training.base_init export", description=export_base.__doc__)
    p.add_argument("--s2-run", type=Path, required=True)
    p.add_argument("--s1-run", type=Path, default=None, help="(default: keep OUT/gpt.safetensors)")
    p.add_argument("--aligner", type=Path, required=True, help="content encoder folder to copy to OUT/hubert")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    for path in export_base(args.s2_run, args.s1_run, args.aligner, args.out):
        print(f"wrote {path}")
    return 0


def _main_aligned(args: argparse.Namespace, sovits_cfg: SoVITSConfig) -> int:
    from gpt_sovits.phone_align import PhoneAlignFeatureExtractor

    aligner = PhoneAlignFeatureExtractor()
    if aligner.name != sovits_cfg.content_encoder or aligner.hidden_size != sovits_cfg.ssl_dim:
        raise BaseInitError(f"the phone aligner '{aligner.name}' ({aligner.hidden_size} codes) does not match the "
                            f"SoVITS config ('{sovits_cfg.content_encoder}', ssl_dim {sovits_cfg.ssl_dim}).")
    aligner.save(Path(args.out) / "hubert")
    gpt, sovits = write_base_models(args.out, GPTConfig.load(args.gpt_config), sovits_cfg, None, args.seed,
                                    {"encoder": aligner.name})
    print(f"wrote {gpt}\n      {sovits}\n      {Path(args.out) / 'hubert'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
