"""Typed configs for dataset preparation and the two fine-tuning stages.

Each config is saved as JSON beside what it produced (`prepare_config.json` in a dataset folder,
`train_s1_config.json` / `train_s2_config.json` in a run folder), so a run can be audited and
repeated from that file alone. Defaults are the one-minute fine-tune recipe for a single
16-24 GB GPU; every field is overridable from the command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gpt_sovits.config import JsonConfig


@dataclass
class PrepareConfig(JsonConfig):
    """How raw recordings become a training dataset (`gsv prepare`)."""

    lang: str = "auto"
    """Language of transcripts that do not carry one (`.txt` files, ASR): auto, zh, en, all_zh, ..."""
    sample_rate: int = 32000
    """Rate of the stored training wavs and spectrograms (every v2-family SoVITS runs at 32 kHz)."""
    ssl_sample_rate: int = 16000
    """Rate HuBERT and the VAD consume."""
    target_min_seconds: float = 2.0
    """Slicing aims for utterances of at least this length: shorter pieces are merged with a neighbour."""
    max_seconds: float = 10.0
    """Slicing cuts audio into utterances of at most this length (at pauses)."""
    min_seconds: float = 1.0
    """Utterances shorter than this after slicing are rejected (`too_short`)."""
    hard_max_seconds: float = 20.0
    """A single transcribed sentence that cannot be cut further is kept up to this length, else rejected."""
    vad_threshold: float = 0.5
    """Silero VAD speech probability threshold."""
    min_silence_ms: int = 150
    """A pause must last this long to count as a place where the audio may be cut."""
    speech_pad_ms: int = 30
    """Silero pads every detected speech region by this much on both sides."""
    edge_pad_ms: int = 100
    """Extra context kept before/after an utterance (never past the middle of the neighbouring pause)."""
    target_dbfs: float = -20.0
    """Loudness target: RMS of the active (non-pause) part of each utterance."""
    peak_dbfs: float = -1.0
    """Ceiling on the sample peak after loudness normalisation (the gain is lowered to respect it)."""
    silence_dbfs: float = -50.0
    """Utterances whose active RMS is below this before normalisation are rejected (`silent`)."""
    clip_level: float = 0.999
    """A sample at or above this magnitude counts as clipped when it sits in a run of 3 or more."""
    max_clipped_fraction: float = 0.001
    """Utterances with more clipped samples than this fraction are rejected (`clipped`)."""
    device: str = "auto"
    """Where HuBERT/BERT/SoVITS run: auto (cuda when present), cpu or cuda[:N]."""
    asr_language: str | None = None
    """Force the ASR language (e.g. "en"); None lets the ASR model detect it."""

    def content_settings(self) -> dict:
        """The fields that change what is produced (not where it runs): a dataset made with other
        values is not resumed into."""
        data = self.to_dict()
        data.pop("device")
        return data


@dataclass
class TrainS1Config(JsonConfig):
    """GPT (text -> semantic tokens) fine-tune: teacher-forced cross-entropy (`gsv train gpt`).

    The official recipe uses ScaledAdam at an effective constant LR of 0.002 with 4-batch
    accumulation for 15 epochs (WebUI). ScaledAdam scales each update by the parameter RMS, so that
    LR is not comparable to Adam's; AdamW at 1e-4 moves the weights by a similar amount per step
    (~1e-4 per element), and the short warmup + cosine tail keeps the first steps from wrecking the
    pretrained prosody on a one-minute dataset.
    """

    epochs: int = 15
    """Passes over the (repeated, see `min_items_per_epoch`) dataset; WebUI default for GPT."""
    batch_size: int = 8
    """Utterances per step; 8 fits the 77 M GPT in well under 16 GB with mixed precision."""
    lr: float = 1e-4
    """Peak AdamW learning rate."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas (the official ScaledAdam also uses 0.9/0.95)."""
    eps: float = 1e-8
    weight_decay: float = 0.01
    """Decoupled weight decay, applied to matrices only (not to norms, biases or embeddings' alpha)."""
    warmup_steps: int = 10
    """Linear warmup from 0 to `lr`."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at lr * min_lr_ratio on the last step."""
    grad_clip: float = 1.0
    """Max global grad norm of the per-token loss (official `gradient_clip` 1.0); 0 disables."""
    dropout: float = 0.1
    """Dropout inside the GPT while training (the official code trains with 0.1 whatever the config says)."""
    min_items_per_epoch: int = 0
    """Repeat a small dataset inside one epoch until it has this many items (0 = never repeat)."""
    max_semantic_tokens: int = 54 * 25
    """Skip utterances with more semantic tokens than this (official max_sec 54 at 25 Hz)."""
    prompt_pairs: float = 0.0
    """Share of items trained after another utterance of the same speaker, in the prompted-inference
    layout (`S1Dataset`). 0 is the official recipe (single utterances only)."""
    precision: str = "auto"
    """auto (bf16 on GPUs that support it, else fp16; fp32 on CPU), fp32, fp16 or bf16."""
    seed: int = 1234
    save_every_epochs: int = 5
    """Write a resumable checkpoint every N epochs (and always at the end)."""
    save_every_steps: int = 0
    """Also write one every N steps (0 = off): an epoch can outlast the machine's session."""
    keep_checkpoints: int = 2
    """Older resumable checkpoints beyond this count are deleted."""
    log_every_steps: int = 10
    max_steps: int | None = None
    """Stop after this many optimizer steps in total (tests, quick experiments); None = run all epochs."""
    device: str = "auto"

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))  # JSON gives a list back


@dataclass
class TrainS2Config(JsonConfig):
    """SoVITS VITS-style GAN fine-tune (`gsv train sovits`), official s2.json + WebUI values."""

    epochs: int = 8
    """WebUI default for a one-minute SoVITS fine-tune."""
    batch_size: int = 8
    """floor(GPU GB / 2) in the WebUI; 8 fits a 16 GB card with fp16 and 10 s utterances."""
    lr: float = 1e-4
    """AdamW learning rate of the generator and the discriminator."""
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    lr_decay: float = 0.999875
    """ExponentialLR gamma, applied once per epoch."""
    text_low_lr_rate: float = 0.4
    """LR multiplier for enc_p.text_embedding / encoder_text / mrte (the text branch)."""
    c_mel: float = 45.0
    """Weight of the mel L1 loss."""
    c_kl: float = 1.0
    """Weight of the KL loss between posterior and flow-mapped prior."""
    grad_clip: float = 1000.0
    """Max global grad norm for G and D. The official loop only measures it; this loose bound
    exists to stop rare fp16 spikes and does not act on normal steps. 0 disables."""
    min_items_per_epoch: int = 100
    """Official rule: a dataset of n < 100 items is repeated max(2, 100 // n) times per epoch."""
    max_frames: int = 500
    """Longer utterances are cropped (randomly) to this many 50 Hz frames to bound memory."""
    precision: str = "auto"
    """auto (fp16 on GPU as official, fp32 on CPU), fp32, fp16 or bf16."""
    seed: int = 1234
    save_every_epochs: int = 4
    save_every_steps: int = 0
    """Also write a resumable checkpoint every N steps (0 = off)."""
    keep_checkpoints: int = 2
    log_every_steps: int = 10
    max_steps: int | None = None
    """Stop after this many steps in total (tests, quick experiments); None = run all epochs."""
    device: str = "auto"
    segment_frames: int | None = None
    """Latent frames decoded per training slice; None = the model's `segment_size` (32 = 20480
    samples). Smaller slices make tiny CPU runs affordable; real fine-tunes keep the default."""
    discriminator_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    """Periods of the MPD when no base discriminator is given (v2Pro adds 17 and 23). An empty
    list keeps only the scale discriminator (tiny test runs)."""
    c_adv: float = 1.0
    """Weight of the adversarial + feature-matching terms in the generator loss (official 1)."""
    adv_start_step: int = 0
    """Steps before this one train the generator on mel + KL only and skip the discriminator
    entirely (from-scratch pretraining on a CPU: reconstruction first, about twice as fast per
    step, and a discriminator cannot win against a decoder that does not yet make speech)."""
    c_stft: float = 0.0
    """Weight of a multi-resolution STFT loss (spectral convergence + log magnitude at three
    resolutions) added to the mel loss; 0 = the official recipe. The iSTFT generator learns its
    phase faster with it, since the 20 ms mel frames say little about fine timing."""
    generator: str | None = None
    """Decoder kind to train ("hifigan" or "istft"). When it differs from the base file's, the
    base's decoder is replaced by a randomly initialised one of this kind (everything else is
    kept): how our base moved from HiFi-GAN to the iSTFT generator. None = the base's own."""
    decoder_only: bool = False
    """Train only the decoder (`dec`) on the frozen posterior encoder's latents; text encoder,
    flow and posterior do not change and the KL term is skipped. For a new decoder on a trained
    S2, it is about 3x cheaper per step than the full model."""
    decoder_prior_share: float = 0.0
    """Share of steps whose latents come from the prior path (flow^-1 of a prior sample from the
    utterance's own tokens and phones, `decoder_prior_noise` x its spread), as synthesis makes
    them, instead of from the posterior encoder. With `decoder_only` only the decoder learns from
    them: the posterior of a recording is sharper than what tokens give, so a decoder that only
    saw posteriors meets unfamiliar latents at inference. Without it, those steps train text
    encoder, flow, style encoder and decoder end to end through the prior path (no KL on them),
    which teaches a from-scratch prior far faster than the KL term alone; 0 = the VITS recipe."""
    decoder_prior_noise: float = 0.5
    """Prior noise scale of those steps (synthesis uses 0.5 by default)."""

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))  # JSON gives a list back
        if not 0.0 <= self.decoder_prior_share <= 1.0:
            raise ValueError(f"decoder_prior_share must be in [0, 1]; got {self.decoder_prior_share}")
