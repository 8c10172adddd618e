"""`gsv bench`: streaming latency and throughput per model size, backend, precision and concurrency.

Set-up (stated in every report's `meta`):
- models: random weights at the chosen size (`configs/gpt_<size>.json` + `configs/sovits_<size>.json`);
  SSL is a 2-layer random HuBERT of the SoVITS's width and BERT a 2-layer random BERT of the GPT's
  width (the reference path is computed once per voice and cached, so its size does not enter
  the timings; zh BERT features per request do, and a real 24-layer BERT costs more);
- voice: tests/data/voices/en_slt/ref.flac (6 s) with its transcript, or with `reference="short"` a
  3 s utterance of the same voice, computed before timing;
- token budget: random weights never emit EOS in a controlled way, so every segment decodes
  exactly round(tokens_per_phone * target phones) tokens (min = max); runs are comparable;
- texts: fixed zh / en / mixed, short and long; `Synthesizer.stream` with default chunking unless
  `BenchOptions.stream` overrides it (recorded in `meta.stream_params`).

Per (size, backend, precision, concurrency): time to first audio chunk p50/p95, playback stall
(time a listener who starts at the first chunk waits for later chunks: p50 and max), RTF (wall time /
seconds of speech, inserted pauses excluded) p50/mean, GPT tokens/s per stream (prefill included)
and prefill time p50, SoVITS seconds of audio per second of decode (raw: every decoded window,
left context and lookahead included; net: delivered speech only), peak RSS (and CUDA memory).
"""
from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpt_sovits.errors import GSVError
from gpt_sovits.fast import set_threads
from gpt_sovits.sampling import SamplingParams

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS_DIR = REPO_ROOT / "configs"
VOICE_DIR = REPO_ROOT / "tests" / "data" / "voices" / "en_slt"


@dataclass(frozen=True)
class BenchText:
    name: str
    lang: str
    text: str


TEXTS = (
    BenchText("en_short", "en", "The quick brown fox jumps over the lazy dog."),
    BenchText("en_long", "en", "Streaming speech synthesis has to start talking quickly, then keep "
              "ahead of the listener. Each chunk of audio must be ready before the previous one "
              "has finished playing, or the voice stutters and the illusion is gone."),
    BenchText("zh_short", "zh", "今天天气很好，我们去公园散步吧。"),
    BenchText("zh_long", "zh", "语音合成服务需要很快开始说话，然后一直领先于听众。每一段音频都必须在"
              "上一段播放结束之前准备好，否则声音就会卡顿，听起来很不自然。"),
    BenchText("mixed", "auto", "我今天用 Python 写了一个 text to speech 的小程序，效果还不错。"),
)


class BenchError(GSVError, ValueError):
    code = "bench_failed"


@dataclass
class BenchOptions:
    sizes: list[str] = field(default_factory=lambda: ["tiny"])
    backends: list[str] = field(default_factory=lambda: ["torch"])
    precisions: list[str] = field(default_factory=lambda: ["auto"])
    concurrency: list[int] = field(default_factory=lambda: [1])
    texts: list[str] = field(default_factory=lambda: [t.name for t in TEXTS])
    repeats: int = 1
    """Passes over the text list per configuration."""
    tokens_per_phone: float = 2.2
    """Forced token budget per target phone (~English speaking rate at 25 tokens/s)."""
    threads: int = 0
    """torch / ONNX Runtime intra-op threads (0: all cores)."""
    device: str = "cpu"
    export_root: Path | None = None
    """Where ONNX exports are written and reused (default: a temporary directory)."""
    max_concurrency_by_size: dict[str, int] = field(default_factory=dict)
    """Skip concurrency levels above this for a size (e.g. {"v2": 1} when time is short)."""
    stream: dict[str, Any] = field(default_factory=dict)
    """`SynthesisParams` overrides for every stream (e.g. first_chunk_tokens); default: none."""
    reference: str = "default"
    """Which en_slt reference makes the voice (`REFERENCES`)."""


# ------------------------------------------------------------------------------ models
def random_bundle(size: str, seed: int = 0, device: str = "cpu") -> Any:
    """Random-weight bundle at `size` (tiny, v2, ...); see the module docstring for SSL/BERT."""
    from gpt_sovits.bundle import ModelBundle
    from gpt_sovits.config import GPTConfig, SoVITSConfig
    from gpt_sovits.features import BertFeatureExtractor, SSLFeatureExtractor
    from gpt_sovits.sovits.model import SynthesizerTrn
    from gpt_sovits.t2s import T2SModel
    from gpt_sovits.text.frontend import TextFrontend

    if size == "tiny":
        return ModelBundle.random_tiny(seed, device)  # already audible
    gpt_path, sovits_path = CONFIGS_DIR / f"gpt_{size}.json", CONFIGS_DIR / f"sovits_{size}.json"
    if not gpt_path.is_file() or not sovits_path.is_file():
        raise BenchError(f"unknown model size {size!r}: need {gpt_path.name} and {sovits_path.name} in configs/")
    gpt_cfg, sovits_cfg = GPTConfig.load(gpt_path), SoVITSConfig.load(sovits_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gpt = T2SModel(gpt_cfg).eval()
        sovits = SynthesizerTrn(sovits_cfg, with_posterior=False).eval()
        sovits.quantizer.vq.layers[0]._codebook.inited.fill_(1)
    ssl = SSLFeatureExtractor.random_tiny(hidden=sovits_cfg.ssl_dim, seed=seed)
    bert = BertFeatureExtractor.random_tiny(hidden=gpt_cfg.bert_dim, seed=seed)
    dev = torch.device(device)
    ssl.model.to(dev)
    bert.model.to(dev)
    frontend = TextFrontend(version="v2", bert=bert, bert_dim=gpt_cfg.bert_dim)
    bundle = ModelBundle(gpt.to(dev), gpt_cfg, sovits.to(dev), sovits_cfg, ssl, bert, frontend, dev,
                         f"random-{size}-{seed}")
    return _audible(bundle)


def _audible(bundle: Any) -> Any:
    """Random init shrinks the decoder signal towards a constant (and towards denormal floats,
    which make CPU convolutions unrealistically slow); trained weights do neither."""
    from gpt_sovits.sovits.random_init import make_audible

    make_audible(bundle.sovits)
    return bundle


REFERENCES = {
    "default": ("ref.flac", "ref.txt"),  # 6.0 s with its transcript
    "short": ("utts/009.flac", "clone.list"),  # 3.1 s, its line of clone.list gives the transcript
    "free": ("ref.flac", None),  # 6.0 s, no transcript: reference-free prompt (style only)
}
"""Bench references of the en_slt voice: the voice's own 6 s reference with its transcript, a 3 s
utterance (a low-latency voice: ~75 fewer GPT prompt slots to prefill), or the 6 s clip without a
transcript (reference-free mode, what the service builds when an upload's transcript does not
match the chosen reference: no prompt tokens at all)."""


def _transcript(clip: str, source: str | None) -> str | None:
    """The clip's transcript: None, a text file, or the clip's line of a `path|spk|lang|text` list."""
    if source is None:
        return None
    if not source.endswith(".list"):
        return (VOICE_DIR / source).read_text().strip()
    for line in (VOICE_DIR / source).read_text().splitlines():
        path, _, _, text = line.split("|", 3)
        if path == clip:
            return text.strip()
    raise BenchError(f"no transcript for {clip} in {VOICE_DIR / source}")


def bench_voice(bundle: Any, reference: str = "default") -> Any:
    import soundfile as sf

    from gpt_sovits.voice import VoicePrompt

    if reference not in REFERENCES:
        raise BenchError(f"unknown bench reference {reference!r}; choose from {sorted(REFERENCES)}")
    clip, source = REFERENCES[reference]
    audio, sr = sf.read(VOICE_DIR / clip, dtype="float32")
    return VoicePrompt.from_audio(bundle, audio, sr, _transcript(clip, source), "en")


# ------------------------------------------------------------------------------ instrumentation
class _TimedDecoder:
    """Forces the token budget and times the GPT (time inside the token iterator)."""

    def __init__(self, inner: Any, prompt_phones: int, tokens_per_phone: float, stats: "_Stats") -> None:
        self.inner, self.prompt_phones, self.per_phone, self.stats = inner, prompt_phones, tokens_per_phone, stats

    def _forced(self, request: Any, params: SamplingParams) -> SamplingParams:
        n = max(8, round(self.per_phone * (request.phones.numel() - self.prompt_phones)))
        return dataclasses.replace(params, min_new_tokens=n, max_new_tokens=n)

    def stream(self, request: Any, params: SamplingParams, should_stop: Callable[[], bool] | None = None) -> Iterator[int]:
        it = self.inner.stream(request, self._forced(request, params), should_stop)
        first = True
        while True:
            start = time.perf_counter()
            token = next(it, None)
            spent = time.perf_counter() - start
            self.stats.gpt_s += spent
            if first:
                self.stats.prefill_s.append(spent)
                first = False
            if token is None:
                return
            self.stats.tokens += 1
            yield token


class _TimedVocoder:
    def __init__(self, inner: Any, stats: "_Stats") -> None:
        self.inner, self.stats, self.cfg = inner, stats, inner.cfg

    def decode(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        start = time.perf_counter()
        audio = self.inner.decode(*args, **kwargs)
        self.stats.sovits_s += time.perf_counter() - start
        self.stats.sovits_samples += audio.shape[-1]
        return audio

    def encode_text(self, phones: torch.Tensor) -> Any:
        start = time.perf_counter()
        encoded = self.inner.encode_text(phones)
        self.stats.sovits_s += time.perf_counter() - start
        return encoded


@dataclass
class _Stats:
    gpt_s: float = 0.0
    tokens: int = 0
    prefill_s: list[float] = field(default_factory=list)
    sovits_s: float = 0.0
    sovits_samples: int = 0
    ttfc_s: list[float] = field(default_factory=list)
    stall_s: list[float] = field(default_factory=list)
    rtf: list[float] = field(default_factory=list)
    speech_s: float = 0.0
    by_lang: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    by_text: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


class PeakMemory:
    """Samples this process's resident memory (and CUDA peak) while active."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak_rss, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self.rss())

    @property
    def peak_vram(self) -> int | None:
        return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


# ------------------------------------------------------------------------------ running
class PlaybackClock:
    """A listener that starts playing at the first chunk and plays chunks back to back.

    `stall_s` sums the time it waits mid-stream because the next chunk is not there yet (an
    audible gap); zero means the stream stayed ahead of playback the whole way.
    """

    def __init__(self) -> None:
        self.play_end: float | None = None
        self.stall_s = 0.0

    def arrive(self, now: float, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.play_end is None:
            self.play_end = now + seconds
            return
        self.stall_s += max(0.0, now - self.play_end)
        self.play_end = max(self.play_end, now) + seconds


def _one_stream(synth: Any, voice: Any, text: BenchText, stats: _Stats, seed: int,
                stream: dict[str, Any] | None = None) -> None:
    from gpt_sovits.pipeline import SynthesisParams

    params = SynthesisParams(**{**(stream or {}), "text_lang": text.lang, "seed": seed})
    sr = synth.bundle.sample_rate
    start = time.perf_counter()
    first, speech = None, 0
    clock = PlaybackClock()
    for chunk in synth.stream(text.text, voice, params):
        now = time.perf_counter() - start
        clock.arrive(now, chunk.samples.size / sr)
        if chunk.meta.get("silence"):
            continue
        if first is None and chunk.samples.size:
            first = now
        speech += chunk.samples.size
    wall = time.perf_counter() - start
    seconds = speech / sr
    stats.stall_s.append(clock.stall_s)
    stats.ttfc_s.append(first if first is not None else wall)
    stats.rtf.append(wall / seconds if seconds else float("nan"))
    stats.speech_s += seconds
    stats.by_lang.setdefault(text.lang, []).append((stats.ttfc_s[-1], stats.rtf[-1]))
    stats.by_text.setdefault(text.name, []).append((stats.ttfc_s[-1], stats.rtf[-1]))


def _worker(bundle: Any, backend: Any, voice: Any, texts: Sequence[BenchText], rotation: int,
            repeats: int, per_phone: float, stats: _Stats, stream: dict[str, Any] | None = None) -> None:
    from gpt_sovits.pipeline import Synthesizer

    synth = Synthesizer(bundle, backend=backend)
    prompt_phones = 0 if voice.prompt_phones is None else voice.prompt_phones.numel()
    synth.decoder = _TimedDecoder(synth.decoder, prompt_phones, per_phone, stats)
    synth.vocoder = _TimedVocoder(synth.vocoder, stats)
    order = list(texts[rotation % len(texts):]) + list(texts[: rotation % len(texts)])
    for rep in range(repeats):
        for i, text in enumerate(order):
            _one_stream(synth, voice, text, stats, seed=1000 * rep + i, stream=stream)


def run_config(bundle: Any, backend: Any, voice: Any, texts: Sequence[BenchText], concurrency: int,
               repeats: int, per_phone: float, stream: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `concurrency` streaming workers over the texts; returns the metrics of this config."""
    stats = [_Stats() for _ in range(concurrency)]
    with PeakMemory() as mem:
        start = time.perf_counter()
        threads = [threading.Thread(target=_worker, args=(bundle, backend, voice, texts, i, repeats, per_phone, s, stream))
                   for i, s in enumerate(stats)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    return _summarise(stats, wall, mem, bundle.sample_rate)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def _summarise(stats: list[_Stats], wall: float, mem: PeakMemory, sr: int) -> dict[str, Any]:
    ttfc = [x for s in stats for x in s.ttfc_s]
    rtf = [x for s in stats for x in s.rtf]
    prefill = [x for s in stats for x in s.prefill_s]
    stall = [x for s in stats for x in s.stall_s]
    tokens, gpt_s = sum(s.tokens for s in stats), sum(s.gpt_s for s in stats)
    speech = sum(s.speech_s for s in stats)
    sov_audio, sov_s = sum(s.sovits_samples for s in stats) / sr, sum(s.sovits_s for s in stats)
    langs: dict[str, list[tuple[float, float]]] = {}
    names: dict[str, list[tuple[float, float]]] = {}
    for s in stats:
        for lang, rows in s.by_lang.items():
            langs.setdefault(lang, []).extend(rows)
        for name, rows in s.by_text.items():
            names.setdefault(name, []).extend(rows)
    vram = mem.peak_vram
    return {
        "requests": len(ttfc),
        "ttfc_p50_ms": round(1000 * _pct(ttfc, 0.5), 1),
        "ttfc_p95_ms": round(1000 * _pct(ttfc, 0.95), 1),
        "stall_p50_ms": round(1000 * _pct(stall, 0.5), 1),
        "stall_max_ms": round(1000 * max(stall), 1) if stall else None,
        "rtf_p50": round(_pct(rtf, 0.5), 3),
        "rtf_mean": round(statistics.fmean(rtf), 3) if rtf else None,
        "gpt_tokens_per_s": round(tokens / gpt_s, 1) if gpt_s else None,
        "gpt_tokens_per_s_total": round(tokens / wall, 1),
        "prefill_p50_ms": round(1000 * _pct(prefill, 0.5), 1),
        "sovits_audio_s_per_s": round(sov_audio / sov_s, 2) if sov_s else None,
        "sovits_net_audio_s_per_s": round(speech / sov_s, 2) if sov_s else None,
        "speech_seconds": round(speech, 2),
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(mem.peak_rss / 2**20, 1),
        "peak_vram_mb": round(vram / 2**20, 1) if vram is not None else None,
        "by_lang": _by_key(langs),
        "by_text": _by_key(names),
    }


def _by_key(groups: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    """Per language or per text: p50 of (time to first chunk, RTF) over its requests."""
    return {key: {"ttfc_p50_ms": round(1000 * _pct([r[0] for r in rows], 0.5), 1),
                  "rtf_p50": round(_pct([r[1] for r in rows], 0.5), 3)}
            for key, rows in sorted(groups.items())}


def _stream_params(options: BenchOptions) -> dict[str, Any]:
    from gpt_sovits.pipeline import SynthesisParams

    params = SynthesisParams(**options.stream)
    return {key: getattr(params, key) for key in ("first_chunk_tokens", "first_lookahead_tokens", "chunk_tokens")}


def _meta(options: BenchOptions) -> dict[str, Any]:
    import onnxruntime

    return {
        "note": "random weights: every segment decodes exactly round(tokens_per_phone * target "
                "phones) tokens (min_new_tokens = max_new_tokens), so runs are comparable",
        "tokens_per_phone": options.tokens_per_phone,
        "ssl": "2-layer random HuBERT at the SoVITS ssl width (reference path cached, not timed)",
        "bert": "2-layer random BERT at the GPT bert width (zh features are computed per request)",
        "voice": f"tests/data/voices/en_slt/{REFERENCES[options.reference][0]}"
                 + (" without a transcript (reference-free)" if REFERENCES[options.reference][1] is None
                    else " + its transcript"),
        "rtf": "wall time / seconds of speech (inserted pauses excluded)",
        "stream_params": _stream_params(options),
        "machine": f"{platform.machine()} {platform.processor() or ''} x{os.cpu_count()} cores".strip(),
        "device": options.device,
        "threads": options.threads or os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (spin)"),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def run_bench(options: BenchOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every configuration; returns {"meta": ..., "results": [...]} (JSON-ready)."""
    import tempfile

    from serving.backends import BackendUnavailableError, make_backend

    threads = options.threads or os.cpu_count() or 1
    set_threads(threads)
    by_name = {t.name: t for t in TEXTS}
    unknown = [n for n in options.texts if n not in by_name]
    if unknown:
        raise BenchError(f"unknown bench texts {unknown}; choose from {sorted(by_name)}")
    texts = [by_name[n] for n in options.texts]
    root = options.export_root or Path(tempfile.mkdtemp(prefix="gsv-bench-"))
    report: dict[str, Any] = {"meta": _meta(options), "results": []}
    for size in options.sizes:
        bundle = random_bundle(size, device=options.device)
        voice = bench_voice(bundle, options.reference)
        for text in texts:  # lazy frontend start-up (jieba dictionary, G2P tables) is not timed
            for seg in bundle.frontend.process(text.text, text.lang):
                bundle.frontend.bert_features(seg)
        for name in options.backends:
            for precision in options.precisions:
                row = {"size": size, "backend": name, "precision": precision}
                try:
                    backend = make_backend(name, bundle, precision=precision, device=options.device,
                                           export_dir=root / f"{size}-{name}-{precision}", threads=threads)
                except (BackendUnavailableError, GSVError) as exc:
                    log(f"skip {size}/{name}/{precision}: {exc}")
                    report["results"].append({**row, "skipped": str(exc)})
                    continue
                row["precision"] = backend.precision
                if getattr(backend, "vocoder_precision", None):
                    row["vocoder_precision"] = backend.vocoder_precision
                from gpt_sovits.pipeline import SynthesisParams

                backend.warmup(SynthesisParams(**options.stream))
                cap = options.max_concurrency_by_size.get(size)
                for conc in options.concurrency:
                    if cap is not None and conc > cap:
                        continue
                    result = {**row, "concurrency": conc,
                              **run_config(bundle, backend, voice, texts, conc, options.repeats,
                                           options.tokens_per_phone, options.stream)}
                    report["results"].append(result)
                    log(format_row(result))
    return report


COLUMNS = (("size", 5), ("backend", 8), ("precision", 9), ("concurrency", 4), ("ttfc_p50_ms", 9),
           ("ttfc_p95_ms", 9), ("stall_max_ms", 9), ("rtf_p50", 7), ("gpt_tokens_per_s", 8), ("prefill_p50_ms", 9),
           ("sovits_audio_s_per_s", 8), ("sovits_net_audio_s_per_s", 8), ("peak_rss_mb", 8))
HEADERS = ("size", "backend", "precision", "conc", "ttfc p50", "ttfc p95", "stall max", "RTF p50", "GPT tok/s",
           "prefill ms", "SoVITS x", "SoV net", "RSS MB")


def format_row(result: dict[str, Any]) -> str:
    return " ".join(f"{str(result.get(key, '-')):>{width}}" for key, width in COLUMNS)


def format_table(report: dict[str, Any]) -> str:
    header = " ".join(f"{h:>{w}}" for h, (_, w) in zip(HEADERS, COLUMNS))
    rows = [format_row(r) for r in report["results"] if "skipped" not in r]
    return "\n".join([header, *rows])
